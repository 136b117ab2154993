import type { ApiKey, LimitDimension, Model, ModelPrice, Priority, RateLimit, ScopeLimits, Tenant, Tier } from "../tenancy/types.js";
import type { DecisionReason, ReserveRequest } from "./types.js";
import type { Periods } from "./periods.js";

/**
 * Turns a request and the cached policy (tier, tenant, key, models) into the exact work the
 * reserve script does: which counters, which limits, which amounts under each ladder rung.
 * Pure: no I/O, so every rule here is unit-testable with plain objects.
 */

export type QuotaScope = { kind: "tenant" } | { kind: "key"; keyId: string };
export interface QuotaHash {
  period: { day: string } | { month: string };
  scope: QuotaScope;
  /** How long the counter is kept after seeding (past its period, for late commits). */
  ttlMs: number;
}
export interface QuotaCheck {
  quotaIndex: number; // into plan.quotaHashes
  metric: "tok" | "usd";
  limit: bigint;
  dimension: LimitDimension;
  scope: string;
  resetAt: Date;
}
export interface BucketCheck {
  dim: "rq" | "in" | "out";
  scopeLabel: string; // redis scope label
  ratePerMs: number;
  capacity: number;
  perMinute: number;
  dimension: LimitDimension;
  scope: string;
}
export interface ConcurrencyCheck {
  scopeLabel: string;
  limit: number;
  scope: string;
}
export interface PlanVariant {
  model: string;
  price: ModelPrice;
  inputTokens: number;
  outputTokens: number;
  maxInputTokens: number | null;
  priority: Priority;
  costNano: bigint;
  deny: { reason: Exclude<DecisionReason, "DEGRADED">; message: string } | null;
  /** Index of the ladder rung, or null for the request as asked. */
  rung: number | null;
}
export interface ReservePlan {
  tenantId: string;
  keyId: string;
  periods: Periods;
  quotaHashes: QuotaHash[];
  quotaChecks: QuotaCheck[];
  buckets: BucketCheck[];
  concurrency: ConcurrencyCheck[];
  variants: PlanVariant[];
  ladder: Array<{ dimension: LimitDimension; atPercent: number; variant: number }>;
  ttlMs: number;
  /** True when only rate and concurrency limits apply: a tier may let those fail open. */
  rateLimitsOnly: boolean;
}

export type PrecheckDenial = { reason: Exclude<DecisionReason, "DEGRADED">; message: string };

const DAY_MS = 86_400_000;

/** The tenant's effective tenant-scope limits: the tier's, replaced dimension by dimension. */
export function effectiveTenantLimits(tier: Tier, tenant: Tenant): ScopeLimits {
  return { ...tier.tenantLimits, ...tenant.limitOverrides };
}

export function effectiveKeyLimits(tier: Tier, key: ApiKey): ScopeLimits {
  const out: ScopeLimits = { ...tier.keyLimits };
  if (key.monthlyBudgetNano !== null) out.monthlyBudgetNano = key.monthlyBudgetNano;
  if (key.dailyBudgetNano !== null) out.dailyBudgetNano = key.dailyBudgetNano;
  return out;
}

const allows = (list: string[] | null, value: string) => list === null || list.includes(value);

/** Authorization checks that need no counters: route, model and tool allow-lists, priced model. */
export function precheck(req: ReserveRequest, tier: Tier, key: ApiKey, model: Model | null, now: Date): PrecheckDenial | null {
  if (!allows(tier.allowedRoutes, req.route) || !allows(key.allowedRoutes, req.route)) {
    return { reason: "ROUTE_FORBIDDEN", message: `route "${req.route}" is not allowed for this key` };
  }
  if (!allows(tier.allowedModels, req.model) || !allows(key.allowedModels, req.model)) {
    return { reason: "MODEL_FORBIDDEN", message: `model "${req.model}" is not allowed for this key` };
  }
  if (!model || priceOf(model, now) === null) {
    // An unknown or unpriced model is never free: it is refused.
    return { reason: "MODEL_FORBIDDEN", message: `model "${req.model}" is not in the price catalog` };
  }
  for (const tool of req.tools) {
    if (!allows(tier.allowedTools, tool)) return { reason: "TOOL_FORBIDDEN", message: `tool "${tool}" is not allowed for this tier` };
  }
  return null;
}

export function priceOf(model: Model, at: Date): ModelPrice | null {
  return model.prices.find((p) => p.effectiveFrom.getTime() <= at.getTime()) ?? null;
}

const minOf = (...xs: Array<number | null | undefined>): number | null => {
  const v = xs.filter((x): x is number => typeof x === "number");
  return v.length ? Math.min(...v) : null;
};

function variant(
  req: ReserveRequest,
  tier: Tier,
  model: Model,
  price: ModelPrice,
  opts: { maxOutputTokens: number | null; maxInputTokens: number | null; priority: Priority | null; rung: number | null },
): PlanVariant {
  const requestedOut = req.maxOutputTokens ?? tier.defaultMaxOutputTokens;
  let out = minOf(requestedOut, tier.maxOutputTokens, opts.maxOutputTokens)!;
  const maxIn = minOf(tier.maxInputTokens, opts.maxInputTokens);
  let deny: PlanVariant["deny"] = null;
  if (maxIn !== null && req.inputTokens > maxIn) {
    deny = { reason: "PROMPT_TOO_LARGE", message: `inputTokens ${req.inputTokens} exceeds the limit of ${maxIn}` };
  } else if (req.inputTokens > model.contextWindow) {
    deny = { reason: "PROMPT_TOO_LARGE", message: `inputTokens ${req.inputTokens} exceeds ${model.name}'s context window of ${model.contextWindow}` };
  } else {
    out = Math.min(out, model.contextWindow - req.inputTokens);
  }
  return {
    model: model.name,
    price,
    inputTokens: req.inputTokens,
    outputTokens: out,
    maxInputTokens: maxIn,
    priority: opts.priority ?? req.priority,
    costNano: BigInt(req.inputTokens) * price.inputNano + BigInt(out) * price.outputNano,
    deny,
    rung: opts.rung,
  };
}

const QUOTA_DIMENSIONS = [
  ["dailyTokens", "DAILY_TOKENS", "tok", "d"],
  ["monthlyTokens", "MONTHLY_TOKENS", "tok", "m"],
  ["dailyBudgetNano", "DAILY_BUDGET", "usd", "d"],
  ["monthlyBudgetNano", "MONTHLY_BUDGET", "usd", "m"],
] as const;

const RATE_DIMENSIONS = [
  ["requestsPerMinute", "REQUESTS_PER_MINUTE", "rq"],
  ["inputTokensPerMinute", "INPUT_TOKENS_PER_MINUTE", "in"],
  ["outputTokensPerMinute", "OUTPUT_TOKENS_PER_MINUTE", "out"],
] as const;

function bucketsOf(
  limits: Partial<Record<"requestsPerMinute" | "inputTokensPerMinute" | "outputTokensPerMinute", RateLimit | null | undefined>>,
  scopeLabel: string,
  scope: string,
): BucketCheck[] {
  const out: BucketCheck[] = [];
  for (const [field, dimension, dim] of RATE_DIMENSIONS) {
    const r = limits[field];
    if (!r) continue;
    out.push({ dim, scopeLabel, ratePerMs: r.perMinute / 60_000, capacity: r.burst ?? r.perMinute, perMinute: r.perMinute, dimension, scope });
  }
  return out;
}

export interface PlanInput {
  req: ReserveRequest;
  tier: Tier;
  tenant: Tenant;
  key: ApiKey;
  model: Model;
  /** Other models a ladder rung may map to (by name). */
  models: Map<string, Model>;
  periods: Periods;
  now: Date;
}

export function buildReservePlan(p: PlanInput): ReservePlan {
  const { req, tier, tenant, key, periods } = p;
  const tenantLimits = effectiveTenantLimits(tier, tenant);
  const keyLimits = effectiveKeyLimits(tier, key);

  // Four counter hashes always exist (tenant/key × day/month): they carry the usage the ladder,
  // thresholds and limits read, whether or not a limit is set on them.
  const dayTtl = 3 * DAY_MS;
  const monthTtl = 35 * DAY_MS;
  const quotaHashes: QuotaHash[] = [
    { period: { day: periods.day }, scope: { kind: "tenant" }, ttlMs: dayTtl },
    { period: { day: periods.day }, scope: { kind: "key", keyId: key.id }, ttlMs: dayTtl },
    { period: { month: periods.month }, scope: { kind: "tenant" }, ttlMs: monthTtl },
    { period: { month: periods.month }, scope: { kind: "key", keyId: key.id }, ttlMs: monthTtl },
  ];
  const quotaChecks: QuotaCheck[] = [];
  for (const [scopeIdx, limits, scopeName] of [
    [0, tenantLimits, "tenant"],
    [1, keyLimits, `key:${key.id}`],
  ] as const) {
    for (const [field, dimension, metric, period] of QUOTA_DIMENSIONS) {
      const v = limits[field];
      if (v === null || v === undefined) continue;
      quotaChecks.push({
        quotaIndex: (period === "d" ? 0 : 2) + scopeIdx,
        metric,
        limit: BigInt(v),
        dimension,
        scope: scopeName,
        resetAt: period === "d" ? periods.dayEndsAt : periods.monthEndsAt,
      });
    }
  }

  const buckets: BucketCheck[] = [
    ...bucketsOf(tenantLimits, "T", "tenant"),
    ...bucketsOf(keyLimits, `k:${key.id}`, `key:${key.id}`),
  ];
  const concurrency: ConcurrencyCheck[] = [];
  if (tenantLimits.concurrentRequests) concurrency.push({ scopeLabel: "T", limit: tenantLimits.concurrentRequests, scope: "tenant" });
  if (keyLimits.concurrentRequests) concurrency.push({ scopeLabel: `k:${key.id}`, limit: keyLimits.concurrentRequests, scope: `key:${key.id}` });
  if (req.subject !== null) {
    const label = `s:${req.subject}`;
    buckets.push(...bucketsOf(tier.subjectLimits, label, `subject:${req.subject}`));
    if (tier.subjectLimits.concurrentRequests) concurrency.push({ scopeLabel: label, limit: tier.subjectLimits.concurrentRequests, scope: `subject:${req.subject}` });
  }
  tier.routeModelLimits.forEach((rule, i) => {
    if ((rule.route !== "*" && rule.route !== req.route) || (rule.model !== "*" && rule.model !== req.model)) return;
    const label = `rm:${i}`;
    const scopeName = `route:${rule.route} model:${rule.model}`;
    buckets.push(...bucketsOf(rule, label, scopeName));
    if (rule.concurrentRequests) concurrency.push({ scopeLabel: label, limit: rule.concurrentRequests, scope: scopeName });
  });

  const basePrice = priceOf(p.model, p.now)!;
  const variants: PlanVariant[] = [variant(req, tier, p.model, basePrice, { maxOutputTokens: null, maxInputTokens: null, priority: null, rung: null })];
  const ladder: ReservePlan["ladder"] = [];
  tier.degradationLadder.forEach((rung, i) => {
    // A rung on a dimension with no limit can never be reached: skip it.
    if (!quotaChecks.some((c) => c.dimension === rung.of)) return;
    const mapped = rung.modelMap.find((m) => m.from === req.model || m.from === "*")?.to ?? req.model;
    const model = mapped === req.model ? p.model : p.models.get(mapped);
    const price = model ? priceOf(model, p.now) : null;
    let v: PlanVariant;
    if (!model || !price) {
      v = Object.assign({}, variants[0]!, { rung: i, deny: { reason: "MODEL_FORBIDDEN" as const, message: `degraded model "${mapped}" is not in the price catalog` } });
    } else {
      v = variant(req, tier, model, price, { maxOutputTokens: rung.maxOutputTokens, maxInputTokens: rung.maxInputTokens, priority: rung.priority, rung: i });
    }
    if (rung.block) {
      const budget = rung.of === "DAILY_BUDGET" || rung.of === "MONTHLY_BUDGET";
      v = Object.assign({}, v, {
        deny: {
          reason: budget ? ("BUDGET_EXCEEDED" as const) : ("QUOTA_EXCEEDED" as const),
          message: `usage reached ${rung.atPercent}% of ${rung.of}: the degradation ladder blocks further requests this period`,
        },
      });
    }
    variants.push(v);
    ladder.push({ dimension: rung.of, atPercent: rung.atPercent, variant: variants.length - 1 });
  });

  const routeTtl = tier.routeReservationTtlSeconds.find((r) => r.route === req.route)?.seconds;
  return {
    tenantId: tenant.id,
    keyId: key.id,
    periods,
    quotaHashes,
    quotaChecks,
    buckets,
    concurrency,
    variants,
    ladder,
    ttlMs: (routeTtl ?? tier.reservationTtlSeconds) * 1000,
    rateLimitsOnly: quotaChecks.length === 0,
  };
}
