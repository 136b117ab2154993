import { createHash } from "node:crypto";
import type { Clock } from "../../lib/clock.js";
import type { Logger } from "../../lib/logger.js";
import { conflict, notFound, backendUnavailable } from "../../lib/errors.js";
import { formatUsd } from "../billing/money.js";
import type { Actor, Model, Priority } from "../tenancy/types.js";
import { buildReservePlan, precheck, type PlanVariant, type ReservePlan } from "./plan.js";
import { periodsAt } from "./periods.js";
import type { PolicyLoader } from "./policy-cache.js";
import type { ArchivedReservation, CounterStore, KeyVerifier, QuotaCounterState, RawReserveResult, ReservationArchive, StoredReservation } from "./ports.js";
import { newReservationId, tenantOfReservation } from "./reservation-id.js";
import type {
  AuthThrottle,
  CommitRequest,
  CommitResult,
  Decision,
  EnforcementObserver,
  KeyDegradation,
  LedgerWriter,
  LimitStatus,
  ReleaseResult,
  ReserveRequest,
} from "./types.js";
import { validateCommitRequest, validateReserveRequest } from "./validation.js";
import { decodeDecision, encodeDecision } from "./decision-codec.js";

/** Counters for operators (wired to Prometheus by the composition root). */
export interface EnforcementMetrics {
  decision(outcome: string, reason: string | null): void;
  failOpen(): void;
  backendError(op: string): void;
}

export interface EnforcementServiceOptions {
  keys: KeyVerifier;
  policy: PolicyLoader;
  counters: CounterStore;
  ledger: LedgerWriter;
  archive: ReservationArchive;
  clock: Clock;
  logger: Logger;
  metrics?: EnforcementMetrics;
  /** How long the store may take; a reserve script that starts later does nothing. */
  storeTimeoutMs: number;
  /**
   * Told after a commit's ledger row is durable (not for replays), synchronously and never
   * awaited: it may only note the fact, e.g. queue a quota threshold evaluation. Must not throw.
   */
  onCommitted?: (info: { tenantId: string; keyId: string; reservationId: string; overage: boolean }) => void;
  /** The global spend breaker (cached flag); open = deny all but CRITICAL. */
  globalBreakerOpen?: () => boolean;
  // ── abuse controls (src/domain/abuse), all optional and none blocking a decision ──
  /** Failed-auth throttling: one Redis read before the key lookup when the gateway passes clientAddress. */
  authThrottle?: AuthThrottle;
  /**
   * A half-open tenant breaker's trickle, from an in-process cache, for a non-CRITICAL request:
   * "DENY" refuses it, "PASS" lets it past the breaker flag the reserve script reads (it is the
   * one in N), null = no say (an OPEN breaker is that flag alone; a stale cache therefore errs
   * on the side of denying).
   */
  tenantBreakerGate?: (tenantId: string) => "DENY" | "PASS" | null;
  /** Keys an anomaly action degraded (in-process cache): their requests get tighter directives. */
  keyDegradation?: (keyId: string) => KeyDegradation | null;
  /** Told every decision and every commit; returns at once (it buffers) and never throws. */
  observer?: EnforcementObserver;
}

const PRIORITY_RANK: Record<Priority, number> = { CRITICAL: 0, NORMAL: 1, BACKGROUND: 2 };

const BACKEND_RETRY_MS = 1_000;
const CONCURRENCY_RETRY_MS = 1_000;

type Denial = Extract<Decision, { allowed: false }>;

/** Unsettled reservations a process remembers for its own commits (about 2 KB each). */
const RECENT_RESERVATIONS = 10_000;

/**
 * The hot path: checkAndReserve, commit, release and reservation expiry. One Lua script per
 * reserve decides every dimension atomically; Postgres is touched only to seed lost counters
 * and to append the ledger (durably, by group commit) on commit.
 */
export class EnforcementService {
  private readonly seeding = new Map<string, Promise<void>>();
  /**
   * Reservations this process made and that were not settled yet, by id: a commit that comes
   * back to the same replica settles with what the reserve wrote and skips reading the record
   * from Redis first (one round trip, a write and a read syscall each way, of a commit's two).
   * The script still checks the record's state; a record Redis lost is handled as before.
   * Bounded: the oldest are dropped first, and a commit that misses reads Redis.
   */
  private readonly recent = new Map<string, ArchivedReservation>();

  constructor(private readonly o: EnforcementServiceOptions) {}

  private deny(reason: Denial["reason"], message: string, extra: Partial<Denial> = {}): Denial {
    const d: Denial = {
      allowed: false,
      outcome: "DENY",
      reason,
      message,
      retryAfterMs: null,
      reservation: null,
      directives: null,
      limits: [],
      tenantId: null,
      keyId: null,
      ...extra,
    };
    this.o.metrics?.decision("DENY", reason);
    return d;
  }

  /** Fail closed on a limit-store outage: never QUOTA_EXCEEDED for it, always retryable. */
  private backendDown(ids: { tenantId: string; keyId: string }, message = "the limit store is unavailable; retry shortly"): Denial {
    return this.deny("BACKEND_UNAVAILABLE", message, { retryAfterMs: BACKEND_RETRY_MS, ...ids });
  }

  async checkAndReserve(req: ReserveRequest, actor: Actor): Promise<Decision> {
    const decision = await this.reserveDecision(req, actor);
    if (this.o.observer) {
      try {
        this.o.observer.decided({ req, actor, decision });
      } catch (err) {
        this.o.logger.warn({ err: (err as Error).message }, "enforcement observer failed");
      }
    }
    return decision;
  }

  private throttled(retryAfterMs: number): Denial {
    return this.deny("RATE_LIMITED", "too many failed authentications from this client or for this key; retry later", { retryAfterMs });
  }

  /** A refused key: counted by the failed-auth throttle, which may turn the answer into RATE_LIMITED. */
  private async authFailed(req: ReserveRequest, reason: "KEY_INVALID" | "KEY_REVOKED" | "KEY_EXPIRED"): Promise<Denial> {
    if (this.o.authThrottle) {
      const blockedMs = await this.o.authThrottle.failed({ presentedKey: req.apiKey, source: req.clientAddress ?? null, reason });
      if (blockedMs > 0) return this.throttled(blockedMs);
    }
    const message = { KEY_INVALID: "the API key is not valid", KEY_REVOKED: "the API key has been revoked", KEY_EXPIRED: "the API key has expired" }[reason];
    return this.deny(reason, message);
  }

  private async reserveDecision(req: ReserveRequest, actor: Actor): Promise<Decision> {
    validateReserveRequest(req);
    const now = this.o.clock.now();
    // A client address that keeps failing is refused before its key costs a lookup.
    if (this.o.authThrottle && req.clientAddress) {
      const blockedMs = await this.o.authThrottle.sourceBlockedMs(req.clientAddress);
      if (blockedMs > 0) return this.throttled(blockedMs);
    }
    const verdict = await this.o.keys.verify(req.apiKey, now);
    if (!verdict.ok) return this.authFailed(req, verdict.reason);
    const key = verdict.key;
    // A gateway bound to one tenant cannot spend another tenant's keys.
    if (actor.tenantId !== null && actor.tenantId !== key.tenantId) return this.authFailed(req, "KEY_INVALID");
    const ids = { tenantId: key.tenantId, keyId: key.id };

    const tenant = await this.o.policy.tenant(key.tenantId);
    if (!tenant) return this.authFailed(req, "KEY_INVALID");
    if (tenant.status !== "ACTIVE") return this.deny("TENANT_SUSPENDED", "the tenant is suspended", ids);
    const tier = await this.o.policy.tier(tenant.tierId);
    if (!tier) throw new Error(`tenant ${tenant.id} references missing tier ${tenant.tierId}`);
    const model = await this.o.policy.model(req.model);
    const pre = precheck(req, tier, key, model, now);
    if (pre) return this.deny(pre.reason, pre.message, ids);
    // An anomaly action may have degraded this key: plan the request with its tighter directives
    // (the idempotency fingerprint below still covers the request as the gateway sent it).
    const degradation = this.o.keyDegradation?.(key.id) ?? null;
    const effective: ReserveRequest = degradation
      ? Object.assign({}, req, {
          maxOutputTokens: Math.min(req.maxOutputTokens ?? tier.defaultMaxOutputTokens, degradation.maxOutputTokens),
          priority: PRIORITY_RANK[degradation.priority] > PRIORITY_RANK[req.priority] ? degradation.priority : req.priority,
        })
      : req;

    const targets = new Set<string>();
    for (const rung of tier.degradationLadder) for (const m of rung.modelMap) if (m.to !== req.model) targets.add(m.to);
    const models = new Map<string, Model>();
    for (const name of targets) {
      const m = await this.o.policy.model(name);
      if (m) models.set(name, m);
    }
    const periods = periodsAt(now, tenant.timezone);
    const plan = buildReservePlan({ req: effective, tier, tenant, key, model: model!, models, periods, now });

    if (effective.priority !== "CRITICAL" && this.o.globalBreakerOpen?.()) {
      return this.deny("CIRCUIT_OPEN", "the global spend circuit breaker is open: only CRITICAL requests pass", ids);
    }
    let passBreaker = effective.priority === "CRITICAL";
    if (!passBreaker) {
      const gate = this.o.tenantBreakerGate?.(tenant.id) ?? null;
      if (gate === "DENY") return this.deny("CIRCUIT_OPEN", "the tenant's spend circuit breaker is half-open: only a trickle of non-CRITICAL requests passes", ids);
      passBreaker = gate === "PASS";
    }

    const reservationId = newReservationId(tenant.id);
    const idempotency = req.idempotencyKey
      ? { keyHash: sha256(req.idempotencyKey), fingerprint: sha256(JSON.stringify([key.id, req.route, req.model, req.inputTokens, req.maxOutputTokens, req.subject, req.priority, [...req.tools].sort()])) }
      : null;
    const record = { tenantId: tenant.id, keyId: key.id, subject: req.subject, route: req.route, day: periods.day, month: periods.month };
    const settleKeys = this.o.counters.settleKeysFor(plan);

    for (let attempt = 0; attempt < 3; attempt++) {
      let outcome;
      try {
        const deadlineMs = this.o.clock.now().getTime() + this.o.storeTimeoutMs;
        outcome = await this.o.counters.reserve(plan, reservationId, { idempotency, critical: passBreaker, record, settleKeys, deadlineMs });
      } catch (err) {
        if (!this.o.counters.isUnavailable(err)) throw err;
        this.o.metrics?.backendError("reserve");
        this.o.logger.warn({ err: (err as Error).message, tenantId: tenant.id }, "reserve: Redis unavailable");
        if (tier.failOpenRateLimits && plan.rateLimitsOnly) return this.failOpen(plan, reservationId, record, settleKeys, ids);
        return this.backendDown(ids);
      }
      switch (outcome.kind) {
        case "late":
          this.o.metrics?.backendError("reserve");
          return this.backendDown(ids, "the limit store answered too late; retry shortly");
        case "conflict":
          throw conflict("idempotencyKey was already used with a different request", { field: "input.idempotencyKey" });
        case "seed":
          try {
            await this.seed(plan, outcome.missing);
          } catch (err) {
            if (!this.o.counters.isUnavailable(err)) throw err;
            return this.backendDown(ids);
          }
          continue;
        case "replay":
          return outcome.rendered ? decodeDecision(outcome.rendered) : this.decide(plan, outcome.result, reservationId, ids, degradation);
        case "result": {
          const decision = this.decide(plan, outcome.result, reservationId, ids, degradation);
          if (decision.allowed) {
            this.o.counters.registerSweepTenant(tenant.id).catch((err) => this.o.logger.warn({ err }, "sweep registration failed"));
            const v = plan.variants[outcome.result.variant]!;
            const entry = archiveEntry(
              record,
              reservationId,
              v,
              settleKeys,
              { reservedAt: new Date(outcome.result.nowMs), expiresAt: new Date(outcome.result.expiresAtMs), failOpen: false },
              plan.quotaChecks,
            );
            this.o.archive.record(entry);
            this.remember(entry);
          }
          if (idempotency) {
            await this.o.counters
              .storeRendered(tenant.id, idempotency.keyHash, encodeDecision(decision))
              .catch((err) => this.o.logger.warn({ err }, "could not store rendered decision; replays rebuild it"));
          }
          return decision;
        }
      }
    }
    throw backendUnavailable("quota counters could not be seeded; retry shortly");
  }

  /**
   * Re-create lost counters from the ledger (set-if-absent), so a flush never opens the gate.
   * Concurrent requests that find the same counters missing share one seeding (a new day
   * would otherwise send every in-flight request of a tenant to Postgres at once).
   */
  private seed(plan: ReservePlan, missing: number[]): Promise<void> {
    const flightKey = `${plan.tenantId}|${missing.map((i) => JSON.stringify(plan.quotaHashes[i])).join("|")}`;
    const pending = this.seeding.get(flightKey);
    if (pending) return pending;
    const run = (async () => {
      const hashes = await Promise.all(
        missing.map(async (i) => {
          const hash = plan.quotaHashes[i]!;
          const totals = await this.o.ledger.totals({ tenantId: plan.tenantId, keyId: hash.scope.kind === "key" ? hash.scope.keyId : null, period: hash.period });
          return { hash, tokens: totals.tokens, costNano: totals.costNano };
        }),
      );
      await this.o.counters.seed(plan.tenantId, hashes);
    })().finally(() => this.seeding.delete(flightKey));
    this.seeding.set(flightKey, run);
    return run;
  }

  /**
   * Redis is down and the tier lets its pure rate limits fail open: allow, counted, and archive
   * the reservation in Postgres (awaited: it is the only copy) so its commit is still recorded.
   */
  private async failOpen(
    plan: ReservePlan,
    reservationId: string,
    record: { tenantId: string; keyId: string; subject: string | null; route: string; day: string; month: string },
    settleKeys: string,
    ids: { tenantId: string; keyId: string },
  ): Promise<Decision> {
    const v = plan.variants[0]!;
    if (v.deny) return this.deny(v.deny.reason, v.deny.message, ids);
    const now = this.o.clock.now();
    const expiresAt = new Date(now.getTime() + plan.ttlMs);
    try {
      await this.o.archive.recordNow(archiveEntry(record, reservationId, v, settleKeys, { reservedAt: now, expiresAt, failOpen: true }));
    } catch (err) {
      this.o.logger.warn({ err }, "fail-open reservation could not be archived; failing closed");
      return this.backendDown(ids);
    }
    this.o.metrics?.failOpen();
    this.o.metrics?.decision("ALLOW", null);
    return {
      allowed: true,
      outcome: "ALLOW",
      reason: null,
      message: "rate limits could not be checked (limit store unavailable); this tier fails open",
      retryAfterMs: null,
      reservation: { id: reservationId, expiresAt, inputTokens: v.inputTokens, outputTokens: v.outputTokens, costNano: v.costNano },
      directives: { model: v.model, maxInputTokens: v.maxInputTokens, maxOutputTokens: v.outputTokens, priority: v.priority },
      limits: [],
      ...ids,
    };
  }

  private limitsOf(plan: ReservePlan, r: RawReserveResult): LimitStatus[] {
    const out: LimitStatus[] = [];
    plan.quotaChecks.forEach((c, i) => {
      const rem = r.quotaRemaining[i] ?? 0n;
      const clamp = rem < 0n ? 0n : rem;
      out.push({
        dimension: c.dimension,
        scope: c.scope,
        limit: c.metric === "usd" ? formatUsd(c.limit) : c.limit.toString(),
        remaining: c.metric === "usd" ? formatUsd(clamp) : clamp.toString(),
        resetAt: c.resetAt,
      });
    });
    plan.buckets.forEach((b, i) => {
      out.push({
        dimension: b.dimension,
        scope: b.scope,
        limit: String(b.perMinute),
        remaining: String(Math.max(0, r.bucketRemaining[i] ?? 0)),
        resetAt: new Date(r.nowMs + (r.bucketFullMs[i] ?? 0)),
      });
    });
    plan.concurrency.forEach((c, i) => {
      out.push({ dimension: "CONCURRENT_REQUESTS", scope: c.scope, limit: String(c.limit), remaining: String(Math.max(0, r.concurrencyRemaining[i] ?? 0)), resetAt: null });
    });
    return out;
  }

  private decide(
    plan: ReservePlan,
    r: RawReserveResult,
    reservationId: string,
    ids: { tenantId: string; keyId: string },
    keyDegradation: KeyDegradation | null = null,
  ): Decision {
    const v: PlanVariant = plan.variants[r.variant]!;
    const limits = this.limitsOf(plan, r);
    if (r.allowed) {
      const degraded = v.rung !== null || keyDegradation !== null;
      this.o.metrics?.decision(degraded ? "ALLOW_DEGRADED" : "ALLOW", degraded ? "DEGRADED" : null);
      const rung = plan.ladder.find((l) => l.variant === r.variant);
      const why = [rung ? `usage reached ${rung.atPercent}% of ${rung.dimension}` : null, keyDegradation?.reason ?? null].filter(Boolean);
      return {
        allowed: true,
        outcome: degraded ? "ALLOW_DEGRADED" : "ALLOW",
        reason: degraded ? "DEGRADED" : null,
        message: degraded && why.length > 0 ? `degraded: ${why.join("; ")}` : null,
        retryAfterMs: null,
        reservation: { id: reservationId, expiresAt: new Date(r.expiresAtMs), inputTokens: v.inputTokens, outputTokens: v.outputTokens, costNano: v.costNano },
        directives: { model: v.model, maxInputTokens: v.maxInputTokens, maxOutputTokens: v.outputTokens, priority: v.priority as Priority },
        limits,
        ...ids,
      };
    }
    return this.bindingDenial(plan, r, v, limits, ids);
  }

  /**
   * The binding limit among those that failed: a request-shape denial (prompt size, a blocking
   * rung) or an open breaker first; otherwise the limit that takes longest to clear, since
   * waiting out a per-minute bucket is pointless when the monthly budget is gone.
   */
  private bindingDenial(plan: ReservePlan, r: RawReserveResult, v: PlanVariant, limits: LimitStatus[], ids: { tenantId: string; keyId: string }): Denial {
    const extra = { limits, ...ids };
    const planFail = r.fails.find((f) => f.kind === "plan");
    if (planFail && v.deny) {
      let retryAfterMs: number | null = null;
      const rung = plan.ladder.find((l) => l.variant === r.variant);
      if (rung && (v.deny.reason === "QUOTA_EXCEEDED" || v.deny.reason === "BUDGET_EXCEEDED")) {
        const check = plan.quotaChecks.find((c) => c.dimension === rung.dimension);
        if (check) retryAfterMs = Math.max(0, check.resetAt.getTime() - r.nowMs);
      }
      return this.deny(v.deny.reason, v.deny.message, { retryAfterMs, ...extra });
    }
    if (r.fails.some((f) => f.kind === "brk")) {
      return this.deny("CIRCUIT_OPEN", "the tenant's spend circuit breaker is open: only CRITICAL requests pass", extra);
    }
    let best: { reason: Denial["reason"]; message: string; wait: number } | null = null;
    for (const f of r.fails) {
      let cand: { reason: Denial["reason"]; message: string; wait: number };
      if (f.kind === "b") {
        const b = plan.buckets[f.index]!;
        const what = { rq: "requests", in: "input tokens", out: "output tokens" }[b.dim];
        cand =
          f.waitMs < 0
            ? { reason: "RATE_LIMITED", message: `this request needs more ${what} than the ${b.scope} bucket holds (${b.capacity})`, wait: Infinity }
            : { reason: "RATE_LIMITED", message: `${what} per minute limit of ${b.perMinute} reached for ${b.scope}`, wait: f.waitMs };
      } else if (f.kind === "c") {
        const c = plan.concurrency[f.index]!;
        cand = { reason: "CONCURRENCY_LIMITED", message: `${c.limit} concurrent requests already in flight for ${c.scope}`, wait: CONCURRENCY_RETRY_MS };
      } else if (f.kind === "q") {
        const c = plan.quotaChecks[f.index]!;
        const budget = c.metric === "usd";
        const limit = budget ? `${formatUsd(c.limit)} USD` : `${c.limit} tokens`;
        cand = {
          reason: budget ? "BUDGET_EXCEEDED" : "QUOTA_EXCEEDED",
          message: `${c.dimension} of ${limit} for ${c.scope} would be exceeded by this request`,
          wait: Math.max(0, c.resetAt.getTime() - r.nowMs),
        };
      } else continue;
      if (!best || cand.wait > best.wait) best = cand;
    }
    if (!best) return this.deny("BACKEND_UNAVAILABLE", "the limit store gave no reason for a denial", extra);
    return this.deny(best.reason, best.message, { retryAfterMs: Number.isFinite(best.wait) ? best.wait : null, ...extra });
  }

  /**
   * The reservation from Redis, or, when Redis lost it or is down, from the Postgres archive
   * (`archived` set). Unknown, malformed and other tenants' ids all read the same.
   */
  private async loadOwned(
    reservationId: string,
    actor: Actor,
    opts: { local?: boolean } = {},
  ): Promise<{ r: StoredReservation; archived: ArchivedReservation | null; redisDown: boolean; local: boolean }> {
    const tenantId = tenantOfReservation(reservationId);
    if (!tenantId || (actor.tenantId !== null && actor.tenantId !== tenantId)) throw notFound("reservation", reservationId);
    const mine = this.recent.get(reservationId);
    if (mine) {
      this.recent.delete(reservationId);
      if (opts.local) return { r: mine, archived: null, redisDown: false, local: true };
    }
    let r: StoredReservation | null = null;
    let redisDown = false;
    try {
      r = await this.o.counters.loadReservation(tenantId, reservationId);
    } catch (err) {
      if (!this.o.counters.isUnavailable(err)) throw err;
      this.o.metrics?.backendError("commit");
      redisDown = true;
    }
    if (r) return { r, archived: null, redisDown, local: false };
    const archived = await this.o.archive.find(reservationId);
    if (!archived || archived.tenantId !== tenantId) {
      if (redisDown) throw backendUnavailable("the limit store is unavailable; retry shortly");
      throw notFound("reservation", reservationId);
    }
    return { r: archived, archived, redisDown, local: false };
  }

  private remember(entry: ArchivedReservation): void {
    this.recent.set(entry.id, entry);
    if (this.recent.size > RECENT_RESERVATIONS) this.recent.delete(this.recent.keys().next().value!);
  }

  private commitLimits(r: StoredReservation, quotas: Array<QuotaCounterState | null>): LimitStatus[] {
    return r.quotaLimits.map((c) => {
      const q = quotas[c.quotaIndex];
      const used = q ? (c.metric === "tok" ? q.tokens + q.heldTokens : q.costNano + q.heldCostNano) : 0n;
      const rem = c.limit - used < 0n ? 0n : c.limit - used;
      return {
        dimension: c.dimension,
        scope: c.scope,
        limit: c.metric === "usd" ? formatUsd(c.limit) : c.limit.toString(),
        remaining: c.metric === "usd" ? formatUsd(rem) : rem.toString(),
        resetAt: c.resetAt,
      };
    });
  }

  async commit(input: CommitRequest, actor: Actor): Promise<CommitResult> {
    validateCommitRequest(input);
    return this.settleCommit(input, actor, true);
  }

  /** `tryLocal`: settle from this process's own copy of the reservation when it has one. */
  private async settleCommit(input: CommitRequest, actor: Actor, tryLocal: boolean): Promise<CommitResult> {
    const { r, archived, redisDown, local } = await this.loadOwned(input.reservationId, actor, { local: tryLocal });
    const costNano = BigInt(input.inputTokens) * r.inputNanoPerToken + BigInt(input.outputTokens) * r.outputNanoPerToken;
    const figures = { inputTokens: input.inputTokens, outputTokens: input.outputTokens, costNano, status: input.status };
    if (archived) {
      // Redis lost this reservation (or is down). The ledger decides replays: a COMMIT row
      // there means this commit happened, and the re-seeded counters already include it.
      const prior = await this.o.ledger.findCommit(r.id);
      if (prior) {
        if (prior.inputTokens !== BigInt(input.inputTokens) || prior.outputTokens !== BigInt(input.outputTokens) || prior.status !== input.status) {
          throw conflict(`reservation ${r.id} was already committed with inputTokens=${prior.inputTokens} outputTokens=${prior.outputTokens} status=${prior.status}`, { field: "input" });
        }
        return { reservationId: r.id, inputTokens: input.inputTokens, outputTokens: input.outputTokens, costNano: prior.costNano, overage: prior.overage, replayed: true, limits: [] };
      }
    }
    let out: Awaited<ReturnType<CounterStore["settle"]>> | null = null;
    if (!redisDown) {
      try {
        if (archived) await this.o.counters.restore(archived);
        out = await this.o.counters.settle("commit", r, figures);
      } catch (err) {
        if (!this.o.counters.isUnavailable(err)) throw err;
        this.o.metrics?.backendError("commit");
        // Usage is never dropped: with the reservation known, the ledger row is still written;
        // reconciliation brings the Redis counters back in line with the ledger.
        if (!archived) {
          const fromArchive = await this.o.archive.find(r.id);
          if (!fromArchive) throw backendUnavailable("the limit store is unavailable; retry the commit shortly", err);
        }
      }
    }
    if (out === null) out = { kind: "applied", late: true, quotas: [] };
    // Settled from this process's own copy, but Redis no longer has the record (flushed, failed
    // over): the same commit again, the way that finds it in the archive.
    if (out.kind === "notFound" && local) return this.settleCommit(input, actor, false);
    if (out.kind === "notFound") throw notFound("reservation", input.reservationId);
    if (out.kind === "conflict") {
      throw conflict(
        `reservation ${r.id} was already committed with inputTokens=${out.inputTokens} outputTokens=${out.outputTokens} status=${out.status}`,
        { field: "input" },
      );
    }
    if (out.kind !== "applied" && out.kind !== "replay") throw new Error(`unexpected settle outcome ${out.kind}`);
    // A replay writes the same row again: ON CONFLICT makes it a no-op, and it guarantees the
    // row is durable before any caller is told the commit happened (even if the first writer died).
    const overage = input.inputTokens > r.inputTokens || input.outputTokens > r.outputTokens;
    await this.o.ledger.append({
      reservationId: r.id,
      entry: "COMMIT",
      tenantId: r.tenantId,
      keyId: r.keyId,
      subject: r.subject,
      route: r.route,
      model: r.model,
      status: input.status,
      inputTokens: BigInt(input.inputTokens),
      outputTokens: BigInt(input.outputTokens),
      reservedInputTokens: BigInt(r.inputTokens),
      reservedOutputTokens: BigInt(r.outputTokens),
      costNano,
      overage,
      periodDay: r.day,
      periodMonth: r.month,
      reservedAt: r.reservedAt,
    });
    if (out.kind !== "replay") this.notifyCommitted({ tenantId: r.tenantId, keyId: r.keyId, reservationId: r.id, overage });
    if (out.kind !== "replay" && this.o.observer) {
      try {
        this.o.observer.committed({ tenantId: r.tenantId, keyId: r.keyId, costNano });
      } catch (err) {
        this.o.logger.warn({ err: (err as Error).message }, "enforcement observer failed");
      }
    }
    return {
      reservationId: r.id,
      inputTokens: input.inputTokens,
      outputTokens: input.outputTokens,
      costNano,
      overage,
      replayed: out.kind === "replay",
      limits: this.commitLimits(r, out.quotas),
    };
  }

  private notifyCommitted(info: { tenantId: string; keyId: string; reservationId: string; overage: boolean }): void {
    if (!this.o.onCommitted) return;
    try {
      this.o.onCommitted(info);
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message }, "onCommitted hook failed");
    }
  }

  async release(reservationId: string, actor: Actor): Promise<ReleaseResult> {
    if (typeof reservationId !== "string" || reservationId.length > 128) throw notFound("reservation", String(reservationId).slice(0, 128));
    const { r, archived, redisDown } = await this.loadOwned(reservationId, actor);
    // A reservation Redis lost holds nothing any more: there is nothing to return.
    if (archived) {
      if (redisDown) throw backendUnavailable("the limit store is unavailable; retry the release shortly");
      return { reservationId, released: false };
    }
    let out;
    try {
      out = await this.o.counters.settle("release", r);
    } catch (err) {
      if (!this.o.counters.isUnavailable(err)) throw err;
      throw backendUnavailable("the limit store is unavailable; retry the release shortly", err);
    }
    if (out.kind === "notFound") throw notFound("reservation", reservationId);
    return { reservationId, released: out.kind === "released" };
  }

  /**
   * Return the holds of reservations past their TTL, exactly once even with several sweepers
   * (the script's state transition decides), and write an EXPIRED ledger row for each.
   */
  async sweepExpired(opts: { perTenant?: number } = {}): Promise<number> {
    const nowMs = this.o.clock.now().getTime();
    let expired = 0;
    for (const tenantId of await this.o.counters.sweepTenants()) {
      const ids = await this.o.counters.dueReservations(tenantId, nowMs, opts.perTenant ?? 500);
      for (const id of ids) {
        const r = await this.o.counters.loadReservation(tenantId, id);
        if (!r) continue;
        const out = await this.o.counters.settle("expire", r);
        if (out.kind !== "expired") continue;
        expired++;
        await this.o.ledger.append({
          reservationId: r.id,
          entry: "EXPIRY",
          tenantId: r.tenantId,
          keyId: r.keyId,
          subject: r.subject,
          route: r.route,
          model: r.model,
          status: "EXPIRED",
          inputTokens: 0n,
          outputTokens: 0n,
          reservedInputTokens: BigInt(r.inputTokens),
          reservedOutputTokens: BigInt(r.outputTokens),
          costNano: 0n,
          overage: false,
          periodDay: r.day,
          periodMonth: r.month,
          reservedAt: r.reservedAt,
        });
      }
    }
    return expired;
  }
}

/** The archive's copy of a reservation: the chosen variant's model, price and holds. */
export function archiveEntry(
  record: { tenantId: string; keyId: string; subject: string | null; route: string; day: string; month: string },
  id: string,
  v: PlanVariant,
  settleKeys: string,
  at: { reservedAt: Date; expiresAt: Date; failOpen: boolean },
  quotaLimits: StoredReservation["quotaLimits"] = [],
): ArchivedReservation {
  // Spelled out, not `{ ...record, id, … }`: V8 11 (Node 20) gives every object made by a
  // leading spread followed by more properties a map of its own (test/ops/object-shapes.test.ts).
  return {
    tenantId: record.tenantId,
    keyId: record.keyId,
    subject: record.subject,
    route: record.route,
    day: record.day,
    month: record.month,
    id,
    model: v.model,
    inputNanoPerToken: v.price.inputNano,
    outputNanoPerToken: v.price.outputNano,
    state: "R",
    inputTokens: v.inputTokens,
    outputTokens: v.outputTokens,
    costNano: v.costNano,
    settleKeys,
    quotaLimits,
    reservedAt: at.reservedAt,
    expiresAt: at.expiresAt,
    failOpen: at.failOpen,
  };
}

function sha256(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}
