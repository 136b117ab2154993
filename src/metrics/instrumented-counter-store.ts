import type { CounterStore } from "../domain/enforcement/ports.js";
import type { RedisErrorKind, ServiceMetrics } from "./service-metrics.js";

/**
 * The counter store with its failures counted by kind. The enforcement service only learns
 * "unavailable or not"; an operator needs to tell a slow Redis (timeouts, scripts that ran past
 * their deadline) from a dead one (connection errors) from a script fault (reply errors).
 * Successful calls cost one extra await; nothing is timed on the success path.
 */
export function classifyRedisError(err: unknown): RedisErrorKind {
  const e = err as { name?: string; message?: string } | null;
  if (e?.name === "ReplyError") return "reply";
  if (typeof e?.message === "string" && /timed out/i.test(e.message)) return "timeout";
  return "connection";
}

export function instrumentCounterStore(inner: CounterStore, metrics: Pick<ServiceMetrics, "redisError">): CounterStore {
  const count = (op: string) => (err: unknown): never => {
    metrics.redisError(op, classifyRedisError(err));
    throw err;
  };
  return {
    isUnavailable: (err) => inner.isUnavailable(err),
    settleKeysFor: (plan) => inner.settleKeysFor(plan),
    async reserve(plan, reservationId, opts) {
      const out = await inner.reserve(plan, reservationId, opts).catch(count("reserve"));
      if (out.kind === "late") metrics.redisError("reserve", "late");
      return out;
    },
    restore: (r) => inner.restore(r).catch(count("restore")),
    seed: (tenantId, hashes) => inner.seed(tenantId, hashes).catch(count("seed")),
    storeRendered: (tenantId, keyHash, json) => inner.storeRendered(tenantId, keyHash, json).catch(count("storeRendered")),
    loadReservation: (tenantId, id) => inner.loadReservation(tenantId, id).catch(count("loadReservation")),
    settle: (op, r, figures) => inner.settle(op, r, figures).catch(count(`settle:${op}`)),
    dueReservations: (tenantId, nowMs, limit) => inner.dueReservations(tenantId, nowMs, limit).catch(count("dueReservations")),
    sweepTenants: () => inner.sweepTenants().catch(count("sweepTenants")),
    registerSweepTenant: (tenantId) => inner.registerSweepTenant(tenantId).catch(count("registerSweepTenant")),
  };
}
