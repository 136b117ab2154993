import type { InferSelectModel } from "drizzle-orm";
import type { apiKeys, credentials, models, modelPrices, tenants, tiers, ScopeLimitsJson, RateLimitJson, TierPolicyJson } from "./schema/index.js";
import type {
  ApiKey,
  LadderRung,
  LimitDimension,
  Model,
  Priority,
  RateLimit,
  Role,
  ScopeLimits,
  ServiceCredential,
  Tenant,
  Tier,
} from "../../domain/tenancy/types.js";

import { anomalySettingsFromJson, anomalySettingsOf, breakerSettingsFromJson, breakerSettingsOf, breakerSettingsToJson } from "../../domain/abuse/settings.js";

/** Row ↔ domain conversion at the storage edge; bigint money is a decimal string inside JSON. */
export type TierRow = InferSelectModel<typeof tiers>;
export type TenantRow = InferSelectModel<typeof tenants>;
export type ApiKeyRow = InferSelectModel<typeof apiKeys>;
export type CredentialRow = InferSelectModel<typeof credentials>;
export type ModelRow = InferSelectModel<typeof models>;
export type ModelPriceRow = InferSelectModel<typeof modelPrices>;

const rateFromJson = (r: RateLimitJson | null | undefined): RateLimit | null | undefined =>
  r === undefined ? undefined : r === null ? null : { perMinute: r.perMinute, burst: r.burst ?? null };

export function scopeLimitsFromJson(j: ScopeLimitsJson): ScopeLimits {
  const out: ScopeLimits = {};
  if (j.requestsPerMinute !== undefined) out.requestsPerMinute = rateFromJson(j.requestsPerMinute);
  if (j.inputTokensPerMinute !== undefined) out.inputTokensPerMinute = rateFromJson(j.inputTokensPerMinute);
  if (j.outputTokensPerMinute !== undefined) out.outputTokensPerMinute = rateFromJson(j.outputTokensPerMinute);
  if (j.concurrentRequests !== undefined) out.concurrentRequests = j.concurrentRequests;
  if (j.dailyTokens !== undefined) out.dailyTokens = j.dailyTokens;
  if (j.monthlyTokens !== undefined) out.monthlyTokens = j.monthlyTokens;
  if (j.dailyBudgetNano !== undefined) out.dailyBudgetNano = j.dailyBudgetNano === null ? null : BigInt(j.dailyBudgetNano);
  if (j.monthlyBudgetNano !== undefined) out.monthlyBudgetNano = j.monthlyBudgetNano === null ? null : BigInt(j.monthlyBudgetNano);
  return out;
}

export function scopeLimitsToJson(s: ScopeLimits): ScopeLimitsJson {
  const out: ScopeLimitsJson = {};
  for (const k of ["requestsPerMinute", "inputTokensPerMinute", "outputTokensPerMinute"] as const) {
    if (s[k] !== undefined) out[k] = s[k] === null ? null : { perMinute: s[k]!.perMinute, burst: s[k]!.burst ?? null };
  }
  for (const k of ["concurrentRequests", "dailyTokens", "monthlyTokens"] as const) {
    if (s[k] !== undefined) out[k] = s[k];
  }
  for (const k of ["dailyBudgetNano", "monthlyBudgetNano"] as const) {
    if (s[k] !== undefined) out[k] = s[k] === null ? null : s[k]!.toString();
  }
  return out;
}

export function tierFromRow(r: TierRow): Tier {
  const p = r.policy;
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    tenantLimits: scopeLimitsFromJson(p.tenantLimits ?? {}),
    keyLimits: scopeLimitsFromJson(p.keyLimits ?? {}),
    subjectLimits: scopeLimitsFromJson(p.subjectLimits ?? {}),
    routeModelLimits: (p.routeModelLimits ?? []).map((o) => ({
      route: o.route,
      model: o.model,
      requestsPerMinute: rateFromJson(o.requestsPerMinute),
      inputTokensPerMinute: rateFromJson(o.inputTokensPerMinute),
      outputTokensPerMinute: rateFromJson(o.outputTokensPerMinute),
      concurrentRequests: o.concurrentRequests ?? null,
    })),
    maxInputTokens: r.maxInputTokens,
    defaultMaxOutputTokens: r.defaultMaxOutputTokens,
    maxOutputTokens: r.maxOutputTokens,
    allowedRoutes: r.allowedRoutes,
    allowedModels: r.allowedModels,
    allowedTools: r.allowedTools,
    notifyAtPercent: r.notifyAtPercent,
    degradationLadder: (p.degradationLadder ?? []).map(
      (g): LadderRung => ({
        atPercent: g.atPercent,
        of: g.of as LimitDimension,
        maxOutputTokens: g.maxOutputTokens,
        maxInputTokens: g.maxInputTokens,
        priority: g.priority as Priority | null,
        modelMap: g.modelMap ?? [],
        block: g.block,
      }),
    ),
    reservationTtlSeconds: r.reservationTtlSeconds,
    routeReservationTtlSeconds: p.routeReservationTtlSeconds ?? [],
    failOpenRateLimits: r.failOpenRateLimits,
    breaker: breakerSettingsFromJson(p.breaker),
    anomaly: anomalySettingsFromJson(p.anomaly),
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}

/** The columns of a tier row derived from the domain object (id and timestamps excluded). */
export function tierToRow(t: Omit<Tier, "id" | "createdAt" | "updatedAt">): Omit<TierRow, "id" | "createdAt" | "updatedAt"> {
  const policy: TierPolicyJson = {
    tenantLimits: scopeLimitsToJson(t.tenantLimits),
    keyLimits: scopeLimitsToJson(t.keyLimits),
    subjectLimits: scopeLimitsToJson(t.subjectLimits),
    routeModelLimits: t.routeModelLimits.map((o) => ({
      route: o.route,
      model: o.model,
      ...scopeLimitsToJson({
        requestsPerMinute: o.requestsPerMinute,
        inputTokensPerMinute: o.inputTokensPerMinute,
        outputTokensPerMinute: o.outputTokensPerMinute,
        concurrentRequests: o.concurrentRequests,
      }),
    })),
    degradationLadder: t.degradationLadder.map((g) => ({ ...g, modelMap: g.modelMap })),
    routeReservationTtlSeconds: t.routeReservationTtlSeconds,
    breaker: breakerSettingsToJson(breakerSettingsOf(t)),
    anomaly: anomalySettingsOf(t),
  };
  return {
    name: t.name,
    description: t.description,
    policy,
    maxInputTokens: t.maxInputTokens,
    defaultMaxOutputTokens: t.defaultMaxOutputTokens,
    maxOutputTokens: t.maxOutputTokens,
    allowedRoutes: t.allowedRoutes,
    allowedModels: t.allowedModels,
    allowedTools: t.allowedTools,
    notifyAtPercent: t.notifyAtPercent,
    reservationTtlSeconds: t.reservationTtlSeconds,
    failOpenRateLimits: t.failOpenRateLimits,
  };
}

export function tenantFromRow(r: TenantRow): Tenant {
  return {
    id: r.id,
    name: r.name,
    tierId: r.tierId,
    timezone: r.timezone,
    status: r.status,
    limitOverrides: scopeLimitsFromJson(r.limitOverrides ?? {}),
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}

/** A null override (lift the tier's limit) survives as JSON null; an absent one stays absent. */
export function tenantToRow(t: Tenant): TenantRow {
  return {
    id: t.id,
    name: t.name,
    tierId: t.tierId,
    timezone: t.timezone,
    status: t.status,
    limitOverrides: scopeLimitsToJson(t.limitOverrides),
    createdAt: t.createdAt,
    updatedAt: t.updatedAt,
  };
}

export function apiKeyFromRow(r: ApiKeyRow): ApiKey {
  return {
    id: r.id,
    tenantId: r.tenantId,
    name: r.name,
    prefix: r.prefix,
    status: r.status,
    expiresAt: r.expiresAt,
    monthlyBudgetNano: r.monthlyBudgetNano,
    dailyBudgetNano: r.dailyBudgetNano,
    allowedRoutes: r.allowedRoutes,
    allowedModels: r.allowedModels,
    rotatedFromId: r.rotatedFromId,
    createdAt: r.createdAt,
    revokedAt: r.revokedAt,
  };
}

export function credentialFromRow(r: CredentialRow): ServiceCredential {
  return {
    id: r.id,
    role: r.role as Role,
    tenantId: r.tenantId,
    name: r.name,
    status: r.status,
    createdAt: r.createdAt,
    revokedAt: r.revokedAt,
  };
}

/** `prices` may be in any order; the model lists them newest effectiveFrom first. */
export function modelFromRows(r: ModelRow, prices: ModelPriceRow[]): Model {
  return {
    name: r.name,
    contextWindow: r.contextWindow,
    downgradeTo: r.downgradeTo,
    prices: prices
      .map((p) => ({ inputNano: p.inputNanoPerToken, outputNano: p.outputNanoPerToken, effectiveFrom: p.effectiveFrom }))
      .sort((a, b) => b.effectiveFrom.getTime() - a.effectiveFrom.getTime()),
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}

/** The price in force at `at`: the newest whose effectiveFrom is not after it. */
export function priceAt(model: Model, at: Date) {
  return model.prices.find((p) => p.effectiveFrom.getTime() <= at.getTime()) ?? null;
}
