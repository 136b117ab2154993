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
  /** The global breaker's state record (hash; read by replicas and cached, never inside a tenant script). */
  globalBreaker: () => `{g:breaker}:state`,

  // ── abuse controls (src/domain/abuse) ──
  /** Committed spend per time bucket: hash bucket index → nano-USD. */
  spend: (tenantId: string) => `${tag(tenantId)}:sp`,
  /** The tenant breaker's state record and spend baseline (hash). */
  breakerState: (tenantId: string) => `${tag(tenantId)}:brk`,
  /** One key's traffic per bucket: hash "<bucket>:r|t|m|f" (requests, prompt tokens, largest prompt, has fingerprints). */
  keyStats: (tenantId: string, keyId: string) => `${tag(tenantId)}:ks:${keyId}`,
  /** One key's prompt fingerprints in one bucket (HyperLogLog). */
  keyFingerprints: (tenantId: string, keyId: string, bucket: number) => `${tag(tenantId)}:kf:${keyId}:${bucket}`,
  /** The tenant's keys by the last bucket they were seen in (zset keyId → bucket). */
  activeKeys: (tenantId: string) => `${tag(tenantId)}:kact`,
  /** One key's learned baselines (hash). */
  keyBaseline: (tenantId: string, keyId: string) => `${tag(tenantId)}:kb:${keyId}`,
  /** Present while an anomaly of this kind for this key was already reported this window. */
  anomalyClaim: (tenantId: string, keyId: string, kind: string) => `${tag(tenantId)}:anm:${keyId}:${kind}`,
  /** Tenants with recent usage (global zset tenantId → last flush ms): what the abuse job evaluates. */
  abuseActiveTenants: () => `abuse:active`,
  /** Tenant breakers that are not closed (global hash tenantId → "STATE:halfOpenOneIn"), cached by replicas. */
  breakerIndex: () => `abuse:breakers`,
  /** Keys an anomaly action degraded (global hash keyId → JSON), cached by replicas. */
  degradedKeys: () => `abuse:degraded`,
  /** A lease so one abuse evaluator runs at a time. */
  abuseLease: (name: string) => `abuse:lease:${name}`,
  /**
   * Failed authentications of one client address ("s") or key prefix ("p"): the window's
   * counter and the block marker share a hash tag (one script touches both). Not tenant data.
   */
  authFailures: (scope: "s" | "p", id: string) => `{af:${scope}:${id}}:n`,
  authBlock: (scope: "s" | "p", id: string) => `{af:${scope}:${id}}:blk`,
};

export const periodLabel = {
  day: (day: string) => `d:${day}`,
  month: (month: string) => `m:${month}`,
};
