import type { Clock } from "../../lib/clock.js";
import type { Logger } from "../../lib/logger.js";
import { newId } from "../../lib/ids.js";
import { notFound } from "../../lib/errors.js";
import type { PolicyLoader } from "../enforcement/policy-cache.js";
import type { NewQuotaEvent } from "../events/types.js";
import { canSeeTenant } from "../tenancy/access.js";
import type { Actor, AnomalySettings, Tenant, Tier } from "../tenancy/types.js";
import {
  detectKeyAnomalies,
  emptyKeyBaseline,
  keyWindowBuckets,
  learnKeyBaseline,
  type Anomaly,
  type DetectedAnomaly,
} from "./anomaly.js";
import type { AuditEntry } from "./audit.js";
import { bucketOf } from "./baseline.js";
import { SYSTEM_ACTOR_ID } from "./breaker.service.js";
import type { AbuseRepository, AbuseStore, AnomalyQuery } from "./ports.js";
import { anomalySettingsOf } from "./settings.js";

/** The actor background actions are taken as (its audit entries say "system"). */
export const SYSTEM_ACTOR: Actor = { kind: "system", id: SYSTEM_ACTOR_ID, role: "ADMIN", tenantId: null, name: "abuse monitor" };

/** A failed-authentication burst reported by the throttle the moment it blocks a source or prefix. */
export interface AuthFailureBurst {
  scope: "source" | "prefix";
  /** The client address or the public key prefix. */
  id: string;
  failures: number;
  windowMs: number;
  blockMs: number;
  /** The key the prefix names (key_…), when the prefix is shaped like one of ours. */
  keyId: string | null;
}

export interface AnomalyServiceOptions {
  store: AbuseStore;
  repo: AbuseRepository;
  policy: PolicyLoader;
  /** SUSPEND_KEY revokes through the API key service (audited, invalidated on every replica). */
  keys: { revoke(actor: Actor, id: string): Promise<unknown> };
  clock: Clock;
  logger: Logger;
  bucketMs: number;
  onStateChanged?: () => void;
}

/**
 * Finds anomalies in the per-key statistics the hot path buffers into Redis, stores each with
 * its evidence (one Postgres transaction: row, `anomaly.detected` event, audit entry), and takes
 * the action the key's tier chose: NONE, DEGRADE (tighter directives for a while) or
 * SUSPEND_KEY (the key is revoked). Failed-auth bursts come from the throttle instead.
 */
export class AnomalyService {
  constructor(private readonly o: AnomalyServiceOptions) {}

  /** Evaluates every key of `tenant` active within its anomaly window. Returns how many anomalies were new. */
  async evaluateTenant(tenant: Tenant, tier: Tier, now: number): Promise<number> {
    const s = anomalySettingsOf(tier);
    const W = keyWindowBuckets(s, this.o.bucketMs);
    const cur = bucketOf(now, this.o.bucketMs);
    let found = 0;
    for (const keyId of await this.o.store.activeKeys(tenant.id, cur - W)) {
      const { buckets, windowVariants, baseline } = await this.o.store.loadKeyWindow(tenant.id, keyId, cur - W + 1, cur);
      const before = baseline ?? emptyKeyBaseline();
      const window = { buckets, windowVariants, bucketMs: this.o.bucketMs, current: cur };
      for (const d of detectKeyAnomalies(before, s, window)) {
        // One anomaly per key, kind and window: the same spike is not reported every run.
        if (!(await this.o.store.claimAnomaly(tenant.id, keyId, d.kind, W * this.o.bucketMs))) continue;
        found++;
        await this.raise(tenant, keyId, d, s, now, W);
      }
      const learned = learnKeyBaseline(before, s, window);
      const trimBelow = Math.min((learned.requests.last ?? cur - 1) + 1, cur - W + 1);
      await this.o.store.saveKeyBaseline(tenant.id, keyId, learned, trimBelow, Math.max(2 * W * this.o.bucketMs, s.baselineSeconds * 1000));
    }
    return found;
  }

  private async raise(tenant: Tenant, keyId: string, d: DetectedAnomaly, s: AnomalySettings, now: number, W: number): Promise<void> {
    const anomaly: Anomaly = {
      id: newId("anomaly"),
      kind: d.kind,
      tenantId: tenant.id,
      keyId,
      source: null,
      keyPrefix: null,
      detectedAt: new Date(now),
      windowStart: new Date((bucketOf(now, this.o.bucketMs) - W + 1) * this.o.bucketMs),
      windowEnd: new Date(now),
      evidence: d.evidence,
      action: s.action,
      actionResult: null,
    };
    await this.persist(anomaly);
    let result: string;
    try {
      result = await this.act(anomaly, s, now);
    } catch (err) {
      result = `failed: ${(err as Error).message}`;
      this.o.logger.error({ err: (err as Error).message, anomalyId: anomaly.id }, "anomaly action failed");
    }
    await this.o.repo.setAnomalyActionResult(anomaly.id, result);
  }

  private async act(a: Anomaly, s: AnomalySettings, now: number): Promise<string> {
    switch (s.action) {
      case "NONE":
        return "none: recorded only";
      case "SUSPEND_KEY":
        await this.o.keys.revoke(SYSTEM_ACTOR, a.keyId!);
        return `key ${a.keyId} revoked`;
      case "DEGRADE": {
        const until = now + s.degradeSeconds * 1000;
        const reason = `anomaly ${a.id} (${a.kind})`;
        await this.o.store.setDegraded({
          keyId: a.keyId!,
          tenantId: a.tenantId!,
          until,
          maxOutputTokens: s.degradeMaxOutputTokens,
          priority: s.degradePriority,
          anomalyId: a.id,
          reason,
        });
        await this.o.store.publishStateChanged();
        this.o.onStateChanged?.();
        const result = `degraded until ${new Date(until).toISOString()}: at most ${s.degradeMaxOutputTokens} output tokens, priority ${s.degradePriority}`;
        await this.o.repo.recordAudit({
          actor: { kind: "system", id: SYSTEM_ACTOR_ID },
          action: "apiKey.degrade",
          tenantId: a.tenantId,
          targetType: "apiKey",
          targetId: a.keyId,
          details: { anomalyId: a.id, kind: a.kind, until: new Date(until).toISOString(), maxOutputTokens: s.degradeMaxOutputTokens, priority: s.degradePriority },
        });
        return result;
      }
    }
  }

  private async persist(a: Anomaly): Promise<void> {
    const payload = {
      anomalyId: a.id,
      kind: a.kind,
      keyId: a.keyId,
      source: a.source,
      keyPrefix: a.keyPrefix,
      windowStart: a.windowStart.toISOString(),
      windowEnd: a.windowEnd.toISOString(),
      evidence: a.evidence,
      action: a.action,
    };
    const event: NewQuotaEvent = {
      type: "anomaly.detected",
      tenantId: a.tenantId,
      scope: a.keyId ? `key:${a.keyId}` : a.source ? `source:${a.source}` : a.keyPrefix ? `prefix:${a.keyPrefix}` : null,
      period: null,
      payload,
    };
    const audit: AuditEntry = {
      actor: { kind: "system", id: SYSTEM_ACTOR_ID },
      action: `anomaly.${a.kind.toLowerCase()}`,
      tenantId: a.tenantId,
      targetType: a.keyId ? "apiKey" : a.source ? "source" : "keyPrefix",
      targetId: a.keyId ?? a.source ?? a.keyPrefix,
      details: payload,
    };
    await this.o.repo.recordAnomaly(a, event, audit);
  }

  /** Called (without awaiting) by the failed-auth throttle when it blocks a source or a key prefix. */
  async recordAuthBurst(b: AuthFailureBurst): Promise<void> {
    const now = this.o.clock.now().getTime();
    let keyId: string | null = null;
    let tenantId: string | null = null;
    if (b.keyId) {
      tenantId = await this.o.repo.tenantOfKey(b.keyId);
      if (tenantId) keyId = b.keyId;
    }
    const anomaly: Anomaly = {
      id: newId("anomaly"),
      kind: "AUTH_FAILURE_BURST",
      tenantId,
      keyId,
      source: b.scope === "source" ? b.id : null,
      keyPrefix: b.scope === "prefix" ? b.id : null,
      detectedAt: new Date(now),
      windowStart: new Date(now - b.windowMs),
      windowEnd: new Date(now),
      evidence: { scope: b.scope, failures: b.failures, windowSeconds: b.windowMs / 1000, blockedSeconds: b.blockMs / 1000 },
      // The throttle already acts. Suspending the key would let anyone lock an owner out by guessing.
      action: "THROTTLE",
      actionResult: `${b.scope === "source" ? "client address" : "key prefix"} throttled for ${b.blockMs / 1000} s`,
    };
    await this.persist(anomaly);
  }

  /** Lifts degradations whose time is up. */
  async expireDegradations(now: number): Promise<number> {
    const expired = (await this.o.store.degradedKeys()).filter((d) => d.until <= now);
    if (expired.length === 0) return 0;
    await this.o.store.removeDegraded(expired.map((d) => d.keyId));
    await this.o.store.publishStateChanged();
    this.o.onStateChanged?.();
    for (const d of expired) {
      await this.o.repo.recordAudit({
        actor: { kind: "system", id: SYSTEM_ACTOR_ID },
        action: "apiKey.degrade.lifted",
        tenantId: d.tenantId,
        targetType: "apiKey",
        targetId: d.keyId,
        details: { anomalyId: d.anomalyId, until: new Date(d.until).toISOString() },
      });
    }
    return expired.length;
  }

  /** Anomalies newest first. A tenant-bound caller sees only its own tenant's; ADMIN sees all. */
  async anomalies(actor: Actor, q: AnomalyQuery, page: { first: number; after: { at: Date; id: string } | null }): Promise<Anomaly[]> {
    let tenantId = q.tenantId;
    if (actor.tenantId !== null) {
      if (tenantId !== null && !canSeeTenant(actor, tenantId)) throw notFound("tenant", tenantId);
      tenantId = actor.tenantId;
    }
    return this.o.repo.anomalies({ ...q, tenantId }, page);
  }
}

