/**
 * Every Redis key the service uses is built here, so the layout is reviewable in one place.
 *
 * All of a tenant's keys carry the hash tag `{t:<tenantId>}`: on Redis Cluster they live in
 * one slot, so one Lua script can touch all of them atomically. Scripts receive every key
 * they touch in KEYS (never built inside Lua), which is what Cluster requires.
 * The configured REDIS_KEY_PREFIX is added by ioredis, outside these names.
 */
export type QuotaPeriod = { kind: "d"; day: string } | { kind: "m"; month: string };

const tag = (tenantId: string) => `{t:${tenantId}}`;

/** Scope labels inside a tenant. Subjects and routes are caller-supplied: length-limited upstream. */
export const scope = {
  tenant: () => "T",
  key: (keyId: string) => `k:${keyId}`,
  subject: (subject: string) => `s:${subject}`,
  routeModel: (ruleIndex: number, route: string, model: string) => `rm:${ruleIndex}:${route}|${model}`,
};

export const redisKeys = {
  /** Token bucket (hash v, t) for one dimension ("rq" | "in" | "out") of one scope. */
  bucket: (tenantId: string, dim: "rq" | "in" | "out", scopeLabel: string) => `${tag(tenantId)}:tb:${dim}:${scopeLabel}`,
  /** In-flight reservations of one scope: zset resId → expiresAt ms. */
  concurrency: (tenantId: string, scopeLabel: string) => `${tag(tenantId)}:cc:${scopeLabel}`,
  /** Calendar quota/budget counters of one scope and period: hash tok, tokh, usd, usdh. */
  quota: (tenantId: string, period: string, scopeLabel: string) => `${tag(tenantId)}:q:${period}:${scopeLabel}`,
  /** One reservation's record (hash). */
  reservation: (tenantId: string, reservationId: string) => `${tag(tenantId)}:r:${reservationId}`,
  /** The tenant's reservations by expiry time, for the sweeper. */
  reservationExpiry: (tenantId: string) => `${tag(tenantId)}:rexp`,
  /** First decision for an idempotency key (raw script result) and its rendered form. */
  idempotency: (tenantId: string, keyHash: string) => `${tag(tenantId)}:idem:${keyHash}`,
  idempotencyRendered: (tenantId: string, keyHash: string) => `${tag(tenantId)}:idemj:${keyHash}`,
  /** Present while the tenant's spend circuit breaker is open (value: reason). */
  breaker: (tenantId: string) => `${tag(tenantId)}:breaker`,
  /** Tenants that may have reservations to expire (global, not tenant-tagged). */
  sweepTenants: () => `sweep:tenants`,
  /** The global breaker flag (read by replicas and cached, never inside a tenant script). */
  globalBreaker: () => `breaker:global`,
};

export const periodLabel = {
  day: (day: string) => `d:${day}`,
  month: (month: string) => `m:${month}`,
};
