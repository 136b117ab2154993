import { randomBytes } from "node:crypto";
import type { RedisClient } from "./client.js";
import { redisKeys } from "./keys.js";
import { AbuseScripts } from "./scripts.js";
import type { Baseline } from "../../domain/abuse/baseline.js";
import type { BreakerRecord, BreakerState } from "../../domain/abuse/breaker.js";
import type { AnomalyKind, KeyBaseline, KeyBucket } from "../../domain/abuse/anomaly.js";
import type { AbuseStore, AuthThrottleStore, BreakerIndexEntry, DegradedKey, UsageBatch } from "../../domain/abuse/ports.js";
import type { AbuseStateSource } from "../../domain/abuse/state-cache.js";

export interface RedisAbuseStoreOptions {
  /** Pub/sub channel replicas listen on for "re-read the abuse state" (prefixed like the invalidation channel). */
  channel: string;
  /** How long a closed breaker's record (its baseline) outlives the tenant's last evaluation. */
  recordKeepMs: number;
}

const num = (s: string | undefined, def = 0) => (s === undefined || s === "" ? def : Number(s));

function recordFields(r: BreakerRecord): string[] {
  return [
    "state", r.state,
    "since", String(r.since),
    "reason", r.reason,
    "manual", r.manual ? "1" : "0",
    "actor", r.actor,
    "cooldownUntil", String(r.cooldownUntil),
    "probeUntil", String(r.probeUntil),
    "probeFrom", String(r.probeFromBucket),
    "graceUntil", String(r.graceUntil),
    "ver", String(r.version),
    "blE", String(r.baseline.ewma),
    "blN", String(r.baseline.n),
    "blLast", r.baseline.last === null ? "" : String(r.baseline.last),
    "lastSpend", r.lastWindowSpendNano.toString(),
  ];
}

function parseRecord(h: Record<string, string>): BreakerRecord | null {
  if (!h.ver) return null;
  return {
    state: h.state as BreakerState,
    since: num(h.since),
    reason: h.reason ?? "",
    manual: h.manual === "1",
    actor: h.actor ?? "abuse-monitor",
    cooldownUntil: num(h.cooldownUntil),
    probeUntil: num(h.probeUntil),
    probeFromBucket: num(h.probeFrom),
    graceUntil: num(h.graceUntil),
    version: num(h.ver),
    baseline: { ewma: num(h.blE), n: num(h.blN), last: h.blLast ? Number(h.blLast) : null },
    lastWindowSpendNano: BigInt(h.lastSpend || "0"),
  };
}

const baselineFields = (p: string, b: Baseline) => [`${p}E`, String(b.ewma), `${p}N`, String(b.n), `${p}Last`, b.last === null ? "" : String(b.last)];
const parseBaseline = (p: string, h: Record<string, string>): Baseline => ({
  ewma: num(h[`${p}E`]),
  n: num(h[`${p}N`]),
  last: h[`${p}Last`] ? Number(h[`${p}Last`]) : null,
});

const scopeTag = (scope: "source" | "prefix") => (scope === "source" ? "s" : "p");

/**
 * The abuse controls' Redis state: spend and key statistics written by the hot path's
 * observer, breaker records with the deny flag the reserve script reads, baselines, anomaly
 * claims, degraded keys and the failed-auth throttle. Keys come from keys.ts; every script's
 * keys share one hash tag, so all of it runs unchanged on Redis Cluster.
 */
export class RedisAbuseStore implements AbuseStore, AuthThrottleStore, AbuseStateSource {
  private readonly scripts: AbuseScripts;

  constructor(
    private readonly redis: RedisClient,
    private readonly o: RedisAbuseStoreOptions,
  ) {
    this.scripts = new AbuseScripts(redis);
  }

  // ── usage ──

  async recordUsage(tenantId: string, batch: UsageBatch, opts: { keepMs: number }): Promise<void> {
    if (batch.spend.length === 0 && batch.keys.length === 0) return;
    const keys = [redisKeys.spend(tenantId), redisKeys.activeKeys(tenantId)];
    for (const k of batch.keys) keys.push(redisKeys.keyStats(tenantId, k.keyId), redisKeys.keyFingerprints(tenantId, k.keyId, k.bucket));
    const arg = {
      keep: opts.keepMs,
      sp: batch.spend.map((s) => [s.bucket, s.costNano.toString()]),
      k: batch.keys.map((k) => [k.keyId, k.bucket, k.requests, k.inputTokens, k.maxInputTokens, k.fingerprints]),
    };
    await Promise.all([
      this.scripts.run("spendRecord", keys, [JSON.stringify(arg)]),
      this.redis.zadd(redisKeys.abuseActiveTenants(), Date.now(), tenantId),
    ]);
  }

  async activeTenants(sinceMs: number): Promise<string[]> {
    await this.redis.zremrangebyscore(redisKeys.abuseActiveTenants(), "-inf", `(${sinceMs}`);
    const [active, breakers] = await Promise.all([this.redis.zrange(redisKeys.abuseActiveTenants(), "0", "-1"), this.redis.hkeys(redisKeys.breakerIndex())]);
    return [...new Set([...active, ...breakers])];
  }

  // ── breakers ──

  async loadBreaker(tenantId: string): Promise<{ record: BreakerRecord | null; spend: Map<number, bigint> }> {
    const [rec, sp] = await Promise.all([this.redis.hgetall(redisKeys.breakerState(tenantId)), this.redis.hgetall(redisKeys.spend(tenantId))]);
    const spend = new Map<number, bigint>();
    for (const [b, v] of Object.entries(sp)) spend.set(Number(b), BigInt(v));
    return { record: parseRecord(rec), spend };
  }

  async applyBreaker(tenantId: string, expectedVersion: number | null, next: BreakerRecord, trimBelow: number | null): Promise<boolean> {
    const r = await this.scripts.run(
      "breakerApply",
      [redisKeys.breakerState(tenantId), redisKeys.breaker(tenantId), redisKeys.spend(tenantId)],
      [
        expectedVersion === null ? "" : String(expectedVersion),
        // Half-open keeps the flag: only the trickle the replicas choose passes it.
        next.state === "CLOSED" ? "del" : "set",
        next.reason || "open",
        trimBelow === null ? "" : String(trimBelow),
        String(next.state === "CLOSED" ? this.o.recordKeepMs : 0),
        ...recordFields(next),
      ],
    );
    return Number(r) === 1;
  }

  async loadGlobalBreaker(): Promise<BreakerRecord | null> {
    return parseRecord(await this.redis.hgetall(redisKeys.globalBreaker()));
  }

  async applyGlobalBreaker(expectedVersion: number | null, next: BreakerRecord): Promise<boolean> {
    const r = await this.scripts.run("breakerApply", [redisKeys.globalBreaker()], [
      expectedVersion === null ? "" : String(expectedVersion),
      "keep",
      "",
      "",
      "0",
      ...recordFields(next),
    ]);
    return Number(r) === 1;
  }

  async indexBreaker(tenantId: string, entry: BreakerIndexEntry | null): Promise<void> {
    if (entry) await this.redis.hset(redisKeys.breakerIndex(), tenantId, `${entry.state}:${entry.halfOpenOneIn}`);
    else await this.redis.hdel(redisKeys.breakerIndex(), tenantId);
    await this.publishStateChanged();
  }

  async breakerIndex(): Promise<Map<string, BreakerIndexEntry>> {
    const h = await this.redis.hgetall(redisKeys.breakerIndex());
    const out = new Map<string, BreakerIndexEntry>();
    for (const [tenantId, v] of Object.entries(h)) {
      const [state, n] = v.split(":");
      if (state === "OPEN" || state === "HALF_OPEN") out.set(tenantId, { state, halfOpenOneIn: Number(n) || 1 });
    }
    return out;
  }

  // ── per-key statistics ──

  async activeKeys(tenantId: string, sinceBucket: number): Promise<string[]> {
    const k = redisKeys.activeKeys(tenantId);
    await this.redis.zremrangebyscore(k, "-inf", `(${sinceBucket}`);
    return this.redis.zrange(k, "0", "-1");
  }

  async loadKeyWindow(tenantId: string, keyId: string, fromBucket: number, toBucket: number) {
    const [stats, bl] = await Promise.all([this.redis.hgetall(redisKeys.keyStats(tenantId, keyId)), this.redis.hgetall(redisKeys.keyBaseline(tenantId, keyId))]);
    const buckets = new Map<number, KeyBucket>();
    const withFingerprints: number[] = [];
    for (const [field, v] of Object.entries(stats)) {
      const [b, x] = field.split(":");
      const bucket = Number(b);
      if (!Number.isFinite(bucket)) continue;
      let e = buckets.get(bucket);
      if (!e) buckets.set(bucket, (e = { requests: 0, inputTokens: 0, maxInputTokens: 0, variants: 0 }));
      if (x === "r") e.requests = Number(v);
      else if (x === "t") e.inputTokens = Number(v);
      else if (x === "m") e.maxInputTokens = Number(v);
      else if (x === "f") withFingerprints.push(bucket);
    }
    const baseline: KeyBaseline | null = bl.rqN
      ? { requests: parseBaseline("rq", bl), variants: parseBaseline("fp", bl), sizeTokens: num(bl.szT), sizeRequests: num(bl.szR), samples: num(bl.samples) }
      : null;
    // Per-bucket distinct counts only for completed buckets the baseline has not learned yet.
    const learnedThrough = baseline?.requests.last ?? fromBucket - 2;
    const toLearn = withFingerprints.filter((b) => b > learnedThrough && b < toBucket);
    const inWindow = withFingerprints.filter((b) => b >= fromBucket && b <= toBucket);
    const hll = (b: number) => redisKeys.keyFingerprints(tenantId, keyId, b);
    const [perBucket, windowVariants] = await Promise.all([
      Promise.all(toLearn.map((b) => this.redis.pfcount(hll(b)))),
      inWindow.length > 0 ? this.redis.pfcount(...(inWindow.map(hll) as [string, ...string[]])) : Promise.resolve(0),
    ]);
    toLearn.forEach((b, i) => (buckets.get(b)!.variants = perBucket[i]!));
    return { buckets, windowVariants, baseline };
  }

  async saveKeyBaseline(tenantId: string, keyId: string, b: KeyBaseline, trimBelow: number, keepMs: number): Promise<void> {
    const k = redisKeys.keyBaseline(tenantId, keyId);
    await this.redis.hset(k, ...baselineFields("rq", b.requests), ...baselineFields("fp", b.variants), "szT", String(b.sizeTokens), "szR", String(b.sizeRequests), "samples", String(b.samples));
    await this.redis.pexpire(k, keepMs);
    const statsKey = redisKeys.keyStats(tenantId, keyId);
    const old = (await this.redis.hkeys(statsKey)).filter((f) => Number(f.split(":")[0]) < trimBelow);
    if (old.length > 0) await this.redis.hdel(statsKey, ...old);
    // A bucket's fingerprint set goes with its statistics: kept only as long as a window needs it.
    const hlls = old.filter((f) => f.endsWith(":f")).map((f) => redisKeys.keyFingerprints(tenantId, keyId, Number(f.split(":")[0])));
    if (hlls.length > 0) await this.redis.del(...hlls);
  }

  async claimAnomaly(tenantId: string, keyId: string, kind: AnomalyKind, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(redisKeys.anomalyClaim(tenantId, keyId, kind), "1", "PX", Math.max(1, ttlMs), "NX")) === "OK";
  }

  // ── degraded keys ──

  async setDegraded(d: DegradedKey): Promise<void> {
    await this.redis.hset(redisKeys.degradedKeys(), d.keyId, JSON.stringify(d));
  }

  async degradedKeys(): Promise<DegradedKey[]> {
    const h = await this.redis.hgetall(redisKeys.degradedKeys());
    const out: DegradedKey[] = [];
    for (const v of Object.values(h)) {
      try {
        out.push(JSON.parse(v) as DegradedKey);
      } catch {
        // A malformed entry degrades nobody.
      }
    }
    return out;
  }

  async removeDegraded(keyIds: string[]): Promise<void> {
    if (keyIds.length > 0) await this.redis.hdel(redisKeys.degradedKeys(), ...keyIds);
  }

  // ── coordination ──

  async publishStateChanged(): Promise<void> {
    await this.redis.publish(this.o.channel, "1");
  }

  async tryLease(name: string, ttlMs: number): Promise<string | null> {
    const token = randomBytes(12).toString("hex");
    return (await this.redis.set(redisKeys.abuseLease(name), token, "PX", ttlMs, "NX")) === "OK" ? token : null;
  }

  async releaseLease(name: string, token: string): Promise<void> {
    await this.scripts.run("breakerLeaseRelease", [redisKeys.abuseLease(name)], [token]);
  }

  // ── failed-auth throttle ──

  async blockedMs(scope: "source" | "prefix", id: string): Promise<number> {
    const ttl = await this.redis.pttl(redisKeys.authBlock(scopeTag(scope), id));
    return ttl > 0 ? ttl : 0;
  }

  async recordFailure(scope: "source" | "prefix", id: string, opts: { windowMs: number; max: number; blockMs: number }) {
    const t = scopeTag(scope);
    const r = (await this.scripts.run("authThrottleFail", [redisKeys.authFailures(t, id), redisKeys.authBlock(t, id)], [
      String(opts.windowMs),
      String(opts.max),
      String(opts.blockMs),
    ])) as number[];
    return { failures: Number(r[0]), blockedMs: Number(r[1]), tripped: Number(r[2]) === 1 };
  }
}
