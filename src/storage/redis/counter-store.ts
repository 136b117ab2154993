import { ReplyError } from "ioredis";
import type { RedisClient } from "./client.js";
import { RedisScripts } from "./scripts.js";
import { redisKeys, periodLabel } from "./keys.js";
import type { QuotaHash, ReservePlan } from "../../domain/enforcement/plan.js";
import type { LimitDimension } from "../../domain/tenancy/types.js";
import type {
  CounterStore,
  QuotaCounterState,
  RawReserveResult,
  ReservationRecordFields,
  ReserveOutcome,
  SettleOutcome,
  StoredReservation,
} from "../../domain/enforcement/ports.js";

/** How long an unsettled reservation record outlives its expiry: late commits within a day. */
const RECORD_KEEP_MS = 86_400_000;
/**
 * How long a settled record (committed, released, expired) stays in Redis: commit retries and
 * late commits within the hour settle there; later ones go through the Postgres archive and
 * the ledger, which answer the same. Kept a day, records cost Redis about 2 KB per request
 * per day (17 GB a day at 100 requests/s).
 */
const SETTLED_KEEP_MS = 3_600_000;

interface SettleKeys {
  q: string[];
  b: Array<[dim: string, capacity: number, key: string]>;
  c: string[];
  /** The quota/budget limits in force when reserved, for the commit's `limits` answer. */
  ql: Array<[quotaIndex: number, metric: "tok" | "usd", limit: string, dimension: string, scope: string, resetAtMs: number]>;
}

function quotaKey(tenantId: string, h: QuotaHash): string {
  const period = "day" in h.period ? periodLabel.day(h.period.day) : periodLabel.month(h.period.month);
  const s = h.scope.kind === "tenant" ? "T" : `k:${h.scope.keyId}`;
  return redisKeys.quota(tenantId, period, s);
}

const splitNums = (s: string | undefined) => (s ? s.split(",").map(Number) : []);

function parseReserve(r: string[]): RawReserveResult {
  // r = [outcome, plan, now, exp, fails, qrem, brem, bfull, crem] (the script's "OK" stripped)
  return {
    allowed: r[0] === "A",
    variant: Number(r[1]) - 1,
    nowMs: Number(r[2]),
    expiresAtMs: Number(r[3]),
    fails: r[4]
      ? r[4].split(",").map((f) => {
          const [kind, idx, wait] = f.split(":");
          return { kind: kind as RawReserveResult["fails"][number]["kind"], index: Number(idx) - 1, waitMs: Number(wait) };
        })
      : [],
    quotaRemaining: r[5] ? r[5].split(",").map((x) => BigInt(x)) : [],
    bucketRemaining: splitNums(r[6]),
    bucketFullMs: splitNums(r[7]),
    concurrencyRemaining: splitNums(r[8]),
  };
}

function parseQuotaState(s: string): Array<QuotaCounterState | null> {
  if (!s) return [];
  return s.split(",").map((part) => {
    const [tok, tokh, usd, usdh] = part.split(":");
    if (!tok) return null;
    return { tokens: BigInt(tok), heldTokens: BigInt(tokh || "0"), costNano: BigInt(usd || "0"), heldCostNano: BigInt(usdh || "0") };
  });
}

/** Quota limits in force at reserve time, as stored in the settle keys. */
export function quotaLimitsOf(settleKeys: string): StoredReservation["quotaLimits"] {
  const settle = JSON.parse(settleKeys) as SettleKeys;
  return settle.ql.map(([quotaIndex, metric, limit, dimension, scope, resetAtMs]) => ({
    quotaIndex,
    metric,
    limit: BigInt(limit),
    dimension: dimension as LimitDimension,
    scope,
    resetAt: new Date(resetAtMs),
  }));
}

function parseRecord(tenantId: string, reservationId: string, h: Record<string, string>): StoredReservation {
  return {
    id: reservationId,
    tenantId,
    keyId: h.k!,
    subject: h.sub ? h.sub : null,
    route: h.rt!,
    model: h.md!,
    inputNanoPerToken: BigInt(h.pin!),
    outputNanoPerToken: BigInt(h.pout!),
    day: h.d!,
    month: h.m!,
    state: h.st as StoredReservation["state"],
    inputTokens: Number(h.in),
    outputTokens: Number(h.out),
    costNano: BigInt(h.cost!),
    reservedAt: new Date(Number(h.at)),
    expiresAt: new Date(Number(h.exp)),
    settleKeys: h.settle!,
    quotaLimits: quotaLimitsOf(h.settle!),
  };
}

/** The enforcement counters in Redis, driven by one Lua script per operation. */
export class RedisCounterStore implements CounterStore {
  private readonly scripts: RedisScripts;
  private readonly registered = new Map<string, number>();

  constructor(private readonly redis: RedisClient) {
    this.scripts = new RedisScripts(redis);
  }

  isUnavailable(err: unknown): boolean {
    // A reply error is Redis answering "no" (a script bug, OOM under noeviction is the
    // exception: it means the store cannot take writes, so it counts as unavailable).
    if (err instanceof ReplyError) return /^(OOM|LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|READONLY)/.test((err as Error).message);
    return true;
  }

  settleKeysFor(plan: ReservePlan): string {
    const t = plan.tenantId;
    const bKeys = plan.buckets.map((b) => redisKeys.bucket(t, b.dim, b.scopeLabel));
    const settle: SettleKeys = {
      q: plan.quotaHashes.map((h) => quotaKey(t, h)),
      b: plan.buckets.map((b, i) => [b.dim, b.capacity, bKeys[i]!]),
      c: plan.concurrency.map((c) => redisKeys.concurrency(t, c.scopeLabel)),
      ql: plan.quotaChecks.map((c) => [c.quotaIndex, c.metric, c.limit.toString(), c.dimension, c.scope, c.resetAt.getTime()]),
    };
    return JSON.stringify(settle);
  }

  async reserve(
    plan: ReservePlan,
    reservationId: string,
    opts: { idempotency: { keyHash: string; fingerprint: string } | null; critical: boolean; record: ReservationRecordFields; settleKeys: string; deadlineMs: number },
  ): Promise<ReserveOutcome> {
    const t = plan.tenantId;
    const idemHash = opts.idempotency?.keyHash ?? "-";
    const settle = JSON.parse(opts.settleKeys) as SettleKeys;
    const qKeys = settle.q;
    const bKeys = settle.b.map((b) => b[2]);
    const cKeys = settle.c;
    const keys = [
      redisKeys.idempotency(t, idemHash),
      redisKeys.idempotencyRendered(t, idemHash),
      redisKeys.reservation(t, reservationId),
      redisKeys.reservationExpiry(t),
      redisKeys.breaker(t),
      ...qKeys,
      ...bKeys,
      ...cKeys,
    ];
    const rec = opts.record;
    const spec = {
      rid: reservationId,
      ttl: plan.ttlMs,
      keep: RECORD_KEEP_MS,
      idem: opts.idempotency ? 1 : 0,
      fp: opts.idempotency?.fingerprint ?? "",
      dl: opts.deadlineMs,
      crit: opts.critical ? 1 : 0,
      nq: qKeys.length,
      // Limits travel as JSON numbers: exact, because budgets are capped at 2^53 nano-USD.
      qc: plan.quotaChecks.map((c) => [c.quotaIndex + 1, c.metric, Number(c.limit), c.dimension]),
      b: plan.buckets.map((b) => [b.ratePerMs, b.capacity, b.dim]),
      c: plan.concurrency.map((c) => c.limit),
      plans: plan.variants.map((v) => [
        v.inputTokens, v.outputTokens, Number(v.costNano), v.deny ? 1 : 0, v.model, v.price.inputNano.toString(), v.price.outputNano.toString(),
      ]),
      lad: plan.ladder.map((l) => [l.dimension, l.atPercent, l.variant + 1]),
      rec: [
        "tid", rec.tenantId, "k", rec.keyId, "sub", rec.subject ?? "", "rt", rec.route, "d", rec.day, "m", rec.month,
      ],
      settle: opts.settleKeys,
    };
    const reply = await this.scripts.run("reserve", keys, [JSON.stringify(spec)]);
    switch (reply[0]) {
      case "OK":
        return { kind: "result", result: parseReserve(reply.slice(1)) };
      case "REPLAY": {
        const stored = JSON.parse(reply[1]!) as { r: string[] };
        return { kind: "replay", result: parseReserve(stored.r), rendered: reply[2] ? reply[2] : null };
      }
      case "CONFLICT":
        return { kind: "conflict" };
      case "SEED":
        return { kind: "seed", missing: reply.slice(1).map((i) => Number(i) - 1) };
      case "LATE":
        return { kind: "late" };
      default:
        throw new Error(`unexpected reserve reply ${String(reply[0])}`);
    }
  }

  async seed(tenantId: string, hashes: Array<{ hash: QuotaHash; tokens: bigint; costNano: bigint }>): Promise<void> {
    if (hashes.length === 0) return;
    await this.scripts.run(
      "seed",
      hashes.map((h) => quotaKey(tenantId, h.hash)),
      [JSON.stringify(hashes.map((h) => [h.tokens.toString(), h.costNano.toString(), h.hash.ttlMs]))],
    );
  }

  async restore(r: StoredReservation): Promise<void> {
    const ttlMs = Math.max(60_000, r.expiresAt.getTime() + RECORD_KEEP_MS - Date.now());
    const fields: Record<string, string> = {
      st: "E", tid: r.tenantId, k: r.keyId, sub: r.subject ?? "", rt: r.route, md: r.model,
      pin: r.inputNanoPerToken.toString(), pout: r.outputNanoPerToken.toString(), d: r.day, m: r.month,
      in: String(r.inputTokens), out: String(r.outputTokens), cost: r.costNano.toString(),
      exp: String(r.expiresAt.getTime()), at: String(r.reservedAt.getTime()), settle: r.settleKeys, restored: "1",
    };
    await this.scripts.run("restore", [redisKeys.reservation(r.tenantId, r.id)], [String(ttlMs), ...Object.entries(fields).flat()]);
  }

  async storeRendered(tenantId: string, keyHash: string, json: string): Promise<void> {
    await this.redis.set(redisKeys.idempotencyRendered(tenantId, keyHash), json, "PX", 86_400_000, "NX");
  }

  async loadReservation(tenantId: string, reservationId: string): Promise<StoredReservation | null> {
    const h = await this.redis.hgetall(redisKeys.reservation(tenantId, reservationId));
    if (!h.st || h.tid !== tenantId) return null;
    return parseRecord(tenantId, reservationId, h);
  }

  async settle(
    op: "commit" | "release" | "expire",
    r: StoredReservation,
    figures?: { inputTokens: number; outputTokens: number; costNano: bigint; status: string },
  ): Promise<SettleOutcome> {
    const s = JSON.parse(r.settleKeys) as SettleKeys;
    const keys = [redisKeys.reservation(r.tenantId, r.id), redisKeys.reservationExpiry(r.tenantId), ...s.q, ...s.b.map((b) => b[2]), ...s.c];
    const arg = {
      op,
      rid: r.id,
      nq: s.q.length,
      b: s.b.map((b) => [b[0], b[1]]),
      nc: s.c.length,
      in: figures?.inputTokens ?? 0,
      out: figures?.outputTokens ?? 0,
      cost: figures ? Number(figures.costNano) : 0,
      status: figures?.status ?? "",
      keep: SETTLED_KEEP_MS,
    };
    const reply = await this.scripts.run("settle", keys, [JSON.stringify(arg)]);
    switch (reply[0]) {
      case "NOTFOUND":
        return { kind: "notFound" };
      case "APPLIED":
        return { kind: "applied", late: reply[1] === "1", quotas: parseQuotaState(reply[2] ?? "") };
      case "REPLAY":
        return {
          kind: "replay",
          inputTokens: Number(reply[1]),
          outputTokens: Number(reply[2]),
          costNano: BigInt(reply[3]!),
          status: reply[4]!,
          quotas: parseQuotaState(reply[5] ?? ""),
        };
      case "CONFLICT":
        return { kind: "conflict", inputTokens: Number(reply[1]), outputTokens: Number(reply[2]), status: reply[4]! };
      case "RELEASED":
        return { kind: "released" };
      case "EXPIRED":
        return { kind: "expired" };
      case "NOOP":
        return { kind: "noop", state: reply[1] ?? "" };
      default:
        throw new Error(`unexpected settle reply ${String(reply[0])}`);
    }
  }

  async dueReservations(tenantId: string, nowMs: number, limit: number): Promise<string[]> {
    return this.redis.zrangebyscore(redisKeys.reservationExpiry(tenantId), "-inf", nowMs, "LIMIT", 0, limit);
  }

  async sweepTenants(): Promise<string[]> {
    return this.redis.smembers(redisKeys.sweepTenants());
  }

  /** Registers a tenant for sweeping, at most once a minute per process (it is a set: idempotent). */
  async registerSweepTenant(tenantId: string): Promise<void> {
    const last = this.registered.get(tenantId) ?? 0;
    if (Date.now() - last < 60_000) return;
    this.registered.set(tenantId, Date.now());
    await this.redis.sadd(redisKeys.sweepTenants(), tenantId);
  }
}
