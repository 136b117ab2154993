import type { Clock } from "../../lib/clock.js";
import type { Logger } from "../../lib/logger.js";
import { badInput, conflict, forbidden, notFound } from "../../lib/errors.js";
import { isIdOf } from "../../lib/ids.js";
import { formatUsd } from "../billing/money.js";
import type { PolicyLoader } from "../enforcement/policy-cache.js";
import type { NewQuotaEvent } from "../events/types.js";
import { canSeeTenant } from "../tenancy/access.js";
import type { Actor, BreakerSettings } from "../tenancy/types.js";
import type { AuditEntry } from "./audit.js";
import { alphaFor, baselineMean, bucketOf, seededBaseline } from "./baseline.js";
import {
  SYSTEM_ACTOR_ID,
  closedRecord,
  closeManually,
  evaluateBreaker,
  eventTypeOf,
  figuresFor,
  openManually,
  windowBuckets,
  type BreakerFigures,
  type BreakerRecord,
  type BreakerTransition,
} from "./breaker.js";
import type { AbuseRepository, AbuseStore } from "./ports.js";
import { breakerSettingsOf } from "./settings.js";

export { SYSTEM_ACTOR_ID };

/** A breaker as operators see it. */
export interface BreakerView {
  scope: "TENANT" | "GLOBAL";
  tenantId: string | null;
  record: BreakerRecord;
  figures: BreakerFigures;
  settings: BreakerSettings;
}

export interface BreakerServiceOptions {
  store: AbuseStore;
  repo: AbuseRepository;
  /** The hot path's cached tenants and tiers. */
  policy: PolicyLoader;
  clock: Clock;
  logger: Logger;
  /** Length of one spend bucket (ABUSE_BUCKET_SECONDS). */
  bucketMs: number;
  /** The global breaker's settings (config). */
  global: BreakerSettings;
  /** Called after any transition this process made, so its own cache need not wait for pub/sub. */
  onStateChanged?: () => void;
}

const MAX_REASON = 500;
const GLOBAL = "global";

/**
 * Spend circuit breakers per tenant and one global breaker: evaluation (called by the abuse
 * job), operator open/close, and reads. Every transition becomes one `breaker.*` outbox event
 * and one audit entry, written together in one Postgres transaction after the Redis state
 * changed (Redis is where the hot path reads it; the event cannot be in that transaction).
 */
export class BreakerService {
  constructor(private readonly o: BreakerServiceOptions) {}

  private windowMsOf(s: BreakerSettings): number {
    return windowBuckets(s.windowSeconds, this.o.bucketMs) * this.o.bucketMs;
  }

  /** Spend buckets are kept for the longest window anyone reads them over. */
  private keepBuckets(s: BreakerSettings): number {
    return Math.max(windowBuckets(s.windowSeconds, this.o.bucketMs), windowBuckets(this.o.global.windowSeconds, this.o.bucketMs));
  }

  /**
   * A tenant seen for the first time (or whose Redis state was lost) starts from its ledger:
   * the spend before the current window, averaged over the time it covers, is its baseline.
   * A brand-new tenant has none, and only the minimum spend guards it. (The global breaker is
   * seeded from the tenants' baselines instead: see evaluateGlobal.)
   */
  private async seeded(tenantId: string | null, s: BreakerSettings, now: number): Promise<BreakerRecord> {
    const rec = closedRecord(now);
    if (tenantId === null) return rec;
    const W = windowBuckets(s.windowSeconds, this.o.bucketMs);
    const cur = bucketOf(now, this.o.bucketMs);
    const to = (cur - W + 1) * this.o.bucketMs;
    const from = to - s.baselineSeconds * 1000;
    try {
      const { costNano, firstAt } = await this.o.repo.ledgerSpend(tenantId, new Date(from), new Date(to));
      if (firstAt && costNano > 0n) {
        const spanBuckets = Math.floor((to - Math.max(from, firstAt.getTime())) / this.o.bucketMs);
        // Less than a window of history says nothing about "usual".
        if (spanBuckets >= W) {
          const mean = Number(costNano) / spanBuckets;
          rec.baseline = seededBaseline(mean, spanBuckets, alphaFor(this.o.bucketMs, s.baselineSeconds), cur - W);
          return rec;
        }
      }
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message, tenantId }, "breaker baseline could not be seeded from the ledger");
    }
    rec.baseline = { ewma: 0, n: 0, last: null };
    return rec;
  }

  /**
   * Evaluates one tenant's breaker. Returns the tenant's spend buckets as read (before any
   * trimming) and its baseline per bucket, so the caller can add them up for the global
   * breaker, or null when the tenant is gone.
   */
  async evaluateTenant(tenantId: string, now: number): Promise<{ spend: Map<number, bigint>; baselinePerBucket: number } | null> {
    const tenant = await this.o.policy.tenant(tenantId);
    if (!tenant) return null;
    const tier = await this.o.policy.tier(tenant.tierId);
    if (!tier) return null;
    const s = breakerSettingsOf(tier);
    let firstSpend: Map<number, bigint> | null = null;
    for (let attempt = 0; attempt < 3; attempt++) {
      const { record, spend } = await this.o.store.loadBreaker(tenantId);
      firstSpend ??= spend;
      const current = record ?? (await this.seeded(tenantId, s, now));
      const ev = evaluateBreaker(current, s, { buckets: spend, bucketMs: this.o.bucketMs }, now);
      const next = { ...ev.next, version: current.version + 1 };
      const cur = bucketOf(now, this.o.bucketMs);
      const learnedThrough = next.baseline.last ?? cur - 1;
      const trimBelow = Math.min(learnedThrough + 1, cur - this.keepBuckets(s) + 1);
      if (!(await this.o.store.applyBreaker(tenantId, record ? record.version : null, next, trimBelow))) continue;
      if (ev.transition) await this.transitioned(tenantId, ev.transition, ev.figures, s);
      return { spend: firstSpend, baselinePerBucket: baselineMean(next.baseline, alphaFor(this.o.bucketMs, s.baselineSeconds)) };
    }
    this.o.logger.warn({ tenantId }, "breaker evaluation lost three races in a row; next run retries");
    return { spend: firstSpend!, baselinePerBucket: 0 };
  }

  /**
   * The global breaker over the sum of every active tenant's spend buckets. A global baseline
   * never learned (first run, or lost with Redis) starts as the sum of the tenants' baselines
   * (`seedPerBucket`): no scan of the whole ledger, and no false trip of a busy deployment
   * just because Redis forgot what busy looks like.
   */
  async evaluateGlobal(spend: Map<number, bigint>, now: number, seedPerBucket = 0): Promise<void> {
    const s = this.o.global;
    const alpha = alphaFor(this.o.bucketMs, s.baselineSeconds);
    const W = windowBuckets(s.windowSeconds, this.o.bucketMs);
    for (let attempt = 0; attempt < 3; attempt++) {
      const record = await this.o.store.loadGlobalBreaker();
      let current = record ?? closedRecord(now);
      if (current.baseline.last === null && current.baseline.n === 0 && seedPerBucket > 0) {
        // Weighted like one time constant of history: new buckets move it at the usual pace.
        const buckets = Math.max(W, Math.ceil((s.baselineSeconds * 1000) / this.o.bucketMs));
        current = { ...current, baseline: seededBaseline(seedPerBucket, buckets, alpha, bucketOf(now, this.o.bucketMs) - W) };
      }
      const ev = evaluateBreaker(current, s, { buckets: spend, bucketMs: this.o.bucketMs }, now);
      if (!(await this.o.store.applyGlobalBreaker(record ? record.version : null, { ...ev.next, version: current.version + 1 }))) continue;
      if (ev.transition) await this.transitioned(null, ev.transition, ev.figures, s);
      return;
    }
  }

  private async transitioned(tenantId: string | null, t: BreakerTransition, f: BreakerFigures, s: BreakerSettings, operator?: Actor): Promise<void> {
    if (tenantId !== null) {
      await this.o.store.indexBreaker(tenantId, t.to === "CLOSED" ? null : { state: t.to, halfOpenOneIn: s.halfOpenOneIn });
    } else {
      await this.o.store.publishStateChanged();
    }
    this.o.onStateChanged?.();
    const payload = {
      scope: tenantId === null ? "global" : "tenant",
      from: t.from,
      state: t.to,
      reason: t.reason,
      manual: t.manual,
      actor: t.actor,
      windowSeconds: s.windowSeconds,
      windowSpendUsd: formatUsd(f.windowSpendNano),
      thresholdUsd: formatUsd(f.thresholdNano),
      baselineUsdPerWindow: formatUsd(f.baselinePerWindowNano),
      ...(f.projectedNano !== null ? { projectedUsd: formatUsd(f.projectedNano) } : {}),
      ...(t.to === "HALF_OPEN" ? { halfOpenOneIn: s.halfOpenOneIn } : {}),
    };
    const event: NewQuotaEvent = {
      type: eventTypeOf(t),
      tenantId,
      scope: tenantId === null ? "global" : "tenant",
      period: null,
      payload,
    };
    const audit: AuditEntry = {
      actor: operator ? { kind: operator.kind, id: operator.id } : { kind: "system", id: SYSTEM_ACTOR_ID },
      action: `breaker.${t.to === "OPEN" ? "opened" : t.to === "HALF_OPEN" ? "half_opened" : "closed"}`,
      tenantId,
      targetType: "breaker",
      targetId: tenantId ?? GLOBAL,
      details: payload,
    };
    try {
      await this.o.repo.recordBreakerTransition(event, audit);
    } catch (err) {
      // The breaker already acts (Redis); a lost event is logged loudly rather than undoing it.
      this.o.logger.error({ err: (err as Error).message, tenantId, transition: t }, "breaker transition event/audit could not be written");
      throw err;
    }
  }

  // ── operators ──

  private async tenantSettings(tenantId: string): Promise<BreakerSettings> {
    if (!isIdOf("tenant", tenantId)) throw notFound("tenant", tenantId);
    const tenant = await this.o.policy.tenant(tenantId);
    if (!tenant) throw notFound("tenant", tenantId);
    const tier = await this.o.policy.tier(tenant.tierId);
    if (!tier) throw notFound("tenant", tenantId);
    return breakerSettingsOf(tier);
  }

  private static reasonOf(reason: string): string {
    const r = reason.trim();
    if (r.length === 0 || r.length > MAX_REASON) throw badInput("reason", `must be 1 to ${MAX_REASON} characters`);
    if (/\p{Cc}/u.test(r)) throw badInput("reason", "must not contain control characters");
    return r;
  }

  /** Opens a tenant's breaker by hand: it stays open until an operator closes it. */
  async open(actor: Actor, tenantId: string, reason: string): Promise<BreakerView> {
    assertAdmin(actor);
    const why = BreakerService.reasonOf(reason);
    const s = await this.tenantSettings(tenantId);
    return this.manual(actor, tenantId, s, (rec, now) => openManually(rec, now, why, actor.id));
  }

  async close(actor: Actor, tenantId: string): Promise<BreakerView> {
    assertAdmin(actor);
    const s = await this.tenantSettings(tenantId);
    return this.manual(actor, tenantId, s, (rec, now) => closeManually(rec, now, actor.id, this.windowMsOf(s)));
  }

  async openGlobal(actor: Actor, reason: string): Promise<BreakerView> {
    assertAdmin(actor);
    const why = BreakerService.reasonOf(reason);
    return this.manual(actor, null, this.o.global, (rec, now) => openManually(rec, now, why, actor.id));
  }

  async closeGlobal(actor: Actor): Promise<BreakerView> {
    assertAdmin(actor);
    return this.manual(actor, null, this.o.global, (rec, now) => closeManually(rec, now, actor.id, this.windowMsOf(this.o.global)));
  }

  private async manual(
    actor: Actor,
    tenantId: string | null,
    s: BreakerSettings,
    change: (rec: BreakerRecord, now: number) => { next: BreakerRecord; transition: BreakerTransition | null },
  ): Promise<BreakerView> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const now = this.o.clock.now().getTime();
      const loaded = tenantId === null ? { record: await this.o.store.loadGlobalBreaker(), spend: new Map<number, bigint>() } : await this.o.store.loadBreaker(tenantId);
      const current = loaded.record ?? (await this.seeded(tenantId, s, now));
      const { next, transition } = change(current, now);
      const stored = { ...next, version: current.version + 1 };
      const ok =
        tenantId === null
          ? await this.o.store.applyGlobalBreaker(loaded.record ? loaded.record.version : null, stored)
          : await this.o.store.applyBreaker(tenantId, loaded.record ? loaded.record.version : null, stored, null);
      if (!ok) continue;
      const figures = figuresFor(stored, s, { buckets: loaded.spend, bucketMs: this.o.bucketMs }, now);
      if (transition) {
        await this.transitioned(tenantId, transition, figures, s, actor);
      } else {
        // No state change (already so), but an operator action is always on the record.
        await this.o.repo.recordAudit({
          actor: { kind: actor.kind, id: actor.id },
          action: stored.state === "OPEN" ? "breaker.open" : "breaker.close",
          tenantId,
          targetType: "breaker",
          targetId: tenantId ?? GLOBAL,
          details: { state: stored.state, unchanged: true, ...(stored.state === "OPEN" ? { reason: stored.reason } : {}) },
        });
      }
      return { scope: tenantId === null ? "GLOBAL" : "TENANT", tenantId, record: stored, figures, settings: s };
    }
    throw conflict("the breaker changed concurrently five times in a row; retry");
  }

  // ── reads ──

  async tenantBreaker(actor: Actor, tenantId: string): Promise<BreakerView> {
    if (!canSeeTenant(actor, tenantId)) throw notFound("tenant", tenantId);
    const s = await this.tenantSettings(tenantId);
    const now = this.o.clock.now().getTime();
    const { record, spend } = await this.o.store.loadBreaker(tenantId);
    const rec = record ?? (await this.seeded(tenantId, s, now));
    return { scope: "TENANT", tenantId, record: rec, figures: figuresFor(rec, s, { buckets: spend, bucketMs: this.o.bucketMs }, now), settings: s };
  }

  /**
   * The global breaker. Its spend is the sum over every tenant, which only the evaluator adds
   * up: the window spend shown is the one its last run saw.
   */
  async globalBreaker(): Promise<BreakerView> {
    const now = this.o.clock.now().getTime();
    const rec = (await this.o.store.loadGlobalBreaker()) ?? closedRecord(now);
    const figures = figuresFor(rec, this.o.global, { buckets: new Map(), bucketMs: this.o.bucketMs }, now);
    return { scope: "GLOBAL", tenantId: null, record: rec, figures: { ...figures, windowSpendNano: rec.lastWindowSpendNano }, settings: this.o.global };
  }

  /** Every tenant breaker that is not closed. */
  async openBreakers(actor: Actor): Promise<BreakerView[]> {
    assertAdmin(actor);
    const index = await this.o.store.breakerIndex();
    const out: BreakerView[] = [];
    for (const tenantId of [...index.keys()].sort()) {
      try {
        const v = await this.tenantBreaker(actor, tenantId);
        if (v.record.state !== "CLOSED") out.push(v);
      } catch {
        // A tenant deleted since: nothing to show.
      }
    }
    return out;
  }
}

function assertAdmin(actor: Actor): void {
  if (actor.role !== "ADMIN") throw forbidden(`role ${actor.role} may not operate circuit breakers`);
}
