import type { Clock } from "../../lib/clock.js";
import type { Logger } from "../../lib/logger.js";
import type { Decision, EnforcementObserver, ReserveRequest } from "../enforcement/types.js";
import type { Actor } from "../tenancy/types.js";
import type { DecisionAuditGroup, DecisionAuditSink } from "./audit.js";
import { publicKeyPrefix } from "./auth-throttle.js";
import { bucketOf } from "./baseline.js";
import type { AbuseStore, UsageBatch } from "./ports.js";

export interface UsageObserverOptions {
  store: AbuseStore;
  audit: DecisionAuditSink;
  clock: Clock;
  logger: Logger;
  bucketMs: number;
  apiKeyPrefix: string;
  /** How long usage buckets are kept in Redis without an evaluator trimming them. */
  keepMs: number;
  /** Bound on buffered groups while the stores are unreachable; beyond it the oldest are dropped (and counted). */
  maxBuffered?: number;
  /** Distinct fingerprints kept per key and bucket between flushes (a storm needs no more to be seen). */
  maxFingerprintsPerFlush?: number;
}

interface KeyAgg {
  tenantId: string;
  keyId: string;
  bucket: number;
  requests: number;
  inputTokens: number;
  maxInputTokens: number;
  fingerprints: Set<string>;
}

const MINUTE_MS = 60_000;
/** Tenants whose usage is being written to Redis at once during a flush. */
const FLUSH_LANES = 4;

/**
 * The hot path's observer: buffers in memory, flushes every second or so, never awaits
 * anything on the request's behalf.
 *
 * - Denials and degradations become audit aggregates (count per minute, caller, tenant, key,
 *   route, model and reason), so a flood of denials costs one upsert per group and flush
 *   instead of a Postgres write each, and none is dropped.
 * - Each verified key's requests, prompt sizes and prompt fingerprints per time bucket, and
 *   each tenant's committed spend per bucket, go to Redis in one script call per tenant: the
 *   abuse job evaluates breakers and anomalies from there.
 *
 * A failed flush keeps its data for the next one (bounded by `maxBuffered`).
 */
export class UsageObserver implements EnforcementObserver {
  private audit = new Map<string, DecisionAuditGroup>();
  private keys = new Map<string, KeyAgg>();
  private spend = new Map<string, { tenantId: string; bucket: number; costNano: bigint }>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  /** Groups dropped because the buffer was full (stores unreachable for long). */
  dropped = 0;

  constructor(private readonly o: UsageObserverOptions) {}

  decided(e: { req: ReserveRequest; actor: Actor; decision: Decision }): void {
    const { req, actor, decision: d } = e;
    const now = this.o.clock.now().getTime();
    if (d.outcome !== "ALLOW") {
      const minute = Math.floor(now / MINUTE_MS) * MINUTE_MS;
      const keyPrefix = d.keyId ? null : publicKeyPrefix(req.apiKey, this.o.apiKeyPrefix);
      const reason = d.reason ?? (d.outcome === "ALLOW_DEGRADED" ? "DEGRADED" : "UNKNOWN");
      const source = req.clientAddress ?? null;
      const k = JSON.stringify([minute, actor.kind, actor.id, d.tenantId, d.keyId, keyPrefix, source, req.route, req.model, d.outcome, reason]);
      const outTokens = d.reservation ? d.reservation.outputTokens : (req.maxOutputTokens ?? 0);
      const g = this.audit.get(k);
      if (g) {
        g.count++;
        g.inputTokens += BigInt(req.inputTokens);
        g.outputTokens += BigInt(outTokens);
        g.lastAt = new Date(now);
        g.message = d.message ?? "";
      } else if (this.room()) {
        this.audit.set(k, {
          minute: new Date(minute),
          actorKind: actor.kind,
          actorId: actor.id,
          tenantId: d.tenantId,
          keyId: d.keyId,
          keyPrefix,
          source,
          route: req.route,
          model: req.model,
          outcome: d.outcome,
          reason,
          count: 1,
          inputTokens: BigInt(req.inputTokens),
          outputTokens: BigInt(outTokens),
          lastAt: new Date(now),
          message: d.message ?? "",
        });
      }
    }
    // Statistics only for keys that verified: a made-up key must not build anyone's baseline.
    if (d.tenantId !== null && d.keyId !== null) {
      const bucket = bucketOf(now, this.o.bucketMs);
      const k = `${d.tenantId}|${d.keyId}|${bucket}`;
      let a = this.keys.get(k);
      if (!a) {
        if (!this.room()) return;
        a = { tenantId: d.tenantId, keyId: d.keyId, bucket, requests: 0, inputTokens: 0, maxInputTokens: 0, fingerprints: new Set() };
        this.keys.set(k, a);
      }
      a.requests++;
      a.inputTokens += req.inputTokens;
      a.maxInputTokens = Math.max(a.maxInputTokens, req.inputTokens);
      if (req.promptFingerprint && a.fingerprints.size < (this.o.maxFingerprintsPerFlush ?? 2_000)) a.fingerprints.add(req.promptFingerprint);
    }
  }

  committed(e: { tenantId: string; keyId: string; costNano: bigint }): void {
    if (e.costNano <= 0n) return;
    const bucket = bucketOf(this.o.clock.now().getTime(), this.o.bucketMs);
    const k = `${e.tenantId}|${bucket}`;
    const s = this.spend.get(k);
    if (s) s.costNano += e.costNano;
    else if (this.room()) this.spend.set(k, { tenantId: e.tenantId, bucket, costNano: e.costNano });
  }

  private room(): boolean {
    const max = this.o.maxBuffered ?? 200_000;
    if (this.audit.size + this.keys.size + this.spend.size < max) return true;
    this.dropped++;
    if (this.dropped === 1 || this.dropped % 10_000 === 0) this.o.logger.error({ dropped: this.dropped }, "abuse observer buffer full: observations dropped");
    return false;
  }

  start(intervalMs: number): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.flush().catch((err) => this.o.logger.warn({ err: (err as Error).message }, "abuse observer flush failed"));
    }, intervalMs);
    this.timer.unref();
  }

  /** Stops the timer and flushes what is buffered. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush().catch((err) => this.o.logger.warn({ err: (err as Error).message }, "final abuse observer flush failed"));
  }

  /** Writes everything buffered so far; concurrent calls share one flush. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing.catch(() => undefined);
    this.flushing = this.flushOnce().finally(() => (this.flushing = null));
    return this.flushing;
  }

  private async flushOnce(): Promise<void> {
    const audit = this.audit;
    const keys = this.keys;
    const spend = this.spend;
    this.audit = new Map();
    this.keys = new Map();
    this.spend = new Map();

    const batches = new Map<string, UsageBatch>();
    const batchOf = (tenantId: string) => {
      let b = batches.get(tenantId);
      if (!b) batches.set(tenantId, (b = { spend: [], keys: [] }));
      return b;
    };
    for (const s of spend.values()) batchOf(s.tenantId).spend.push({ bucket: s.bucket, costNano: s.costNano });
    for (const a of keys.values()) {
      batchOf(a.tenantId).keys.push({ keyId: a.keyId, bucket: a.bucket, requests: a.requests, inputTokens: a.inputTokens, maxInputTokens: a.maxInputTokens, fingerprints: [...a.fingerprints] });
    }
    const errors: unknown[] = [];
    // A few tenants at a time, not all at once: the scripts share Redis (and its connection)
    // with reserves, and a burst of hundreds of them once a second queued every reserve issued
    // meanwhile behind all of them. A handful in flight keeps the flush pipelined while a
    // reserve waits behind at most that many scripts.
    const pending = [...batches];
    let next = 0;
    const lane = async () => {
      while (next < pending.length) {
        const [tenantId, batch] = pending[next++]!;
        try {
          await this.o.store.recordUsage(tenantId, batch, { keepMs: this.o.keepMs });
        } catch (err) {
          errors.push(err);
          this.requeue(tenantId, batch);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(FLUSH_LANES, pending.length) }, lane));
    if (audit.size > 0) {
      try {
        await this.o.audit.add([...audit.values()]);
      } catch (err) {
        errors.push(err);
        for (const [k, g] of audit) {
          const cur = this.audit.get(k);
          if (!cur) {
            if (this.room()) this.audit.set(k, g);
          } else {
            cur.count += g.count;
            cur.inputTokens += g.inputTokens;
            cur.outputTokens += g.outputTokens;
          }
        }
      }
    }
    if (errors.length > 0) throw errors[0];
  }

  private requeue(tenantId: string, batch: UsageBatch): void {
    for (const s of batch.spend) {
      const k = `${tenantId}|${s.bucket}`;
      const cur = this.spend.get(k);
      if (cur) cur.costNano += s.costNano;
      else if (this.room()) this.spend.set(k, { tenantId, bucket: s.bucket, costNano: s.costNano });
    }
    for (const a of batch.keys) {
      const k = `${tenantId}|${a.keyId}|${a.bucket}`;
      const cur = this.keys.get(k);
      if (cur) {
        cur.requests += a.requests;
        cur.inputTokens += a.inputTokens;
        cur.maxInputTokens = Math.max(cur.maxInputTokens, a.maxInputTokens);
        for (const f of a.fingerprints) cur.fingerprints.add(f);
      } else if (this.room()) {
        this.keys.set(k, { tenantId, keyId: a.keyId, bucket: a.bucket, requests: a.requests, inputTokens: a.inputTokens, maxInputTokens: a.maxInputTokens, fingerprints: new Set(a.fingerprints) });
      }
    }
  }
}
