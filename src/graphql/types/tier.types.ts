import { Field, GraphQLISODateTime, ID, InputType, Int, ObjectType } from "type-graphql";
import { DecimalScalar } from "../scalars.js";
import { Connection } from "./pagination.js";
import { LimitDimension, Priority } from "./enums.js";
import { formatUsd } from "../../domain/billing/money.js";
import type { LadderRung, RateLimit, RouteModelLimit, ScopeLimits, Tier } from "../../domain/tenancy/types.js";
import { anomalySettingsOf, breakerSettingsOf } from "../../domain/abuse/settings.js";
import {
  anomalySettingsView,
  breakerSettingsView,
  TierAnomalySettingsInput,
  TierAnomalySettingsType,
  TierBreakerSettingsInput,
  TierBreakerSettingsType,
} from "./abuse.types.js";
import type {
  LadderRungInput as LadderRungInputShape,
  RouteModelLimitInput as RouteModelLimitInputShape,
  ScopeLimitsInput as ScopeLimitsInputShape,
  TierInput,
} from "../../domain/tenancy/validation.js";

/*
 * Tier object and input types. Token quotas travel as decimal strings (they exceed 32-bit Int),
 * money as Decimal USD strings; the domain parses both with field-named errors.
 */

// ── output ──

@ObjectType("RateLimit", { description: "A token bucket: refills perMinute per minute and holds at most burst." })
export class RateLimitType {
  @Field(() => Int) perMinute!: number;
  @Field(() => Int, { description: "The bucket size; equals perMinute unless set otherwise." }) burst!: number;
}

@ObjectType("SubjectLimits", { description: "Limits per end user (the subject a gateway passes). Null = unlimited." })
export class SubjectLimitsType {
  @Field(() => RateLimitType, { nullable: true }) requestsPerMinute!: RateLimitType | null;
  @Field(() => RateLimitType, { nullable: true }) inputTokensPerMinute!: RateLimitType | null;
  @Field(() => RateLimitType, { nullable: true }) outputTokensPerMinute!: RateLimitType | null;
  @Field(() => Int, { nullable: true }) concurrentRequests!: number | null;
}

@ObjectType("ScopeLimits", { description: "The limits of one scope (tenant or API key). Null = unlimited on that dimension." })
export class ScopeLimitsType extends SubjectLimitsType {
  @Field(() => String, { nullable: true, description: "Tokens per tenant-local day, as a decimal integer string." })
  dailyTokens!: string | null;
  @Field(() => String, { nullable: true, description: "Tokens per tenant-local calendar month, as a decimal integer string." })
  monthlyTokens!: string | null;
  @Field(() => DecimalScalar, { nullable: true, description: "USD per tenant-local day (hard limit)." })
  dailyBudgetUsd!: string | null;
  @Field(() => DecimalScalar, { nullable: true, description: "USD per tenant-local calendar month (hard limit)." })
  monthlyBudgetUsd!: string | null;
}

@ObjectType("RouteModelLimit", { description: "Extra limits for one route and/or model (\"*\" = any)." })
export class RouteModelLimitType extends SubjectLimitsType {
  @Field(() => String) route!: string;
  @Field(() => String) model!: string;
}

@ObjectType("ModelMapping")
export class ModelMappingType {
  @Field(() => String) from!: string;
  @Field(() => String) to!: string;
}

@ObjectType("LadderRung", {
  description: "A degradation step: when usage of `of` reaches atPercent, requests are shaped by this rung; a block rung denies.",
})
export class LadderRungType {
  @Field(() => Int) atPercent!: number;
  @Field(() => LimitDimension) of!: LimitDimension;
  @Field(() => Int, { nullable: true }) maxOutputTokens!: number | null;
  @Field(() => Int, { nullable: true }) maxInputTokens!: number | null;
  @Field(() => Priority, { nullable: true }) priority!: Priority | null;
  @Field(() => [ModelMappingType]) modelMap!: ModelMappingType[];
  @Field(() => Boolean) block!: boolean;
}

@ObjectType("RouteReservationTtl")
export class RouteReservationTtlType {
  @Field(() => String) route!: string;
  @Field(() => Int) seconds!: number;
}

@ObjectType("Tier", { description: "A policy template: limits, allow-lists, thresholds and the degradation ladder tenants are placed on." })
export class TierType {
  @Field(() => ID) id!: string;
  @Field(() => String) name!: string;
  @Field(() => String, { nullable: true }) description!: string | null;
  @Field(() => ScopeLimitsType, { description: "Limits of each tenant on this tier (before its overrides)." })
  tenantLimits!: ScopeLimitsType;
  @Field(() => ScopeLimitsType, { description: "Limits of each API key of those tenants." })
  keyLimits!: ScopeLimitsType;
  @Field(() => SubjectLimitsType) subjectLimits!: SubjectLimitsType;
  @Field(() => [RouteModelLimitType]) routeModelLimits!: RouteModelLimitType[];
  @Field(() => Int, { nullable: true, description: "Prompt-size cap; null = the model's context window only." })
  maxInputTokens!: number | null;
  @Field(() => Int, { description: "Output reserved when a request names no maxOutputTokens." })
  defaultMaxOutputTokens!: number;
  @Field(() => Int, { description: "Hard cap on any request's output." })
  maxOutputTokens!: number;
  @Field(() => [String], { nullable: true, description: "Null = every route." }) allowedRoutes!: string[] | null;
  @Field(() => [String], { nullable: true, description: "Null = every priced model." }) allowedModels!: string[] | null;
  @Field(() => [String], { nullable: true, description: "Null = every tool." }) allowedTools!: string[] | null;
  @Field(() => [Int], { description: "Quota and budget percentages that emit a threshold event, ascending." })
  notifyAtPercent!: number[];
  @Field(() => [LadderRungType]) degradationLadder!: LadderRungType[];
  @Field(() => Int) reservationTtlSeconds!: number;
  @Field(() => [RouteReservationTtlType]) routeReservationTtlSeconds!: RouteReservationTtlType[];
  @Field(() => Boolean, { description: "Pure rate limits admit when Redis is unreachable; quotas and budgets never do." })
  failOpenRateLimits!: boolean;
  @Field(() => TierBreakerSettingsType, { description: "The spend circuit breaker of this tier's tenants." })
  breaker!: TierBreakerSettingsType;
  @Field(() => TierAnomalySettingsType, { description: "Anomaly thresholds for this tier's keys, and the action taken on one." })
  anomaly!: TierAnomalySettingsType;
  @Field(() => GraphQLISODateTime) createdAt!: Date;
  @Field(() => GraphQLISODateTime) updatedAt!: Date;
}

export const TierConnection = Connection("TierConnection", TierType);

// ── domain → view ──

const rateView = (r: RateLimit | null | undefined): RateLimitType | null =>
  r ? { perMinute: r.perMinute, burst: r.burst ?? r.perMinute } : null;

const usdView = (n: bigint | null | undefined): string | null => (n === null || n === undefined ? null : formatUsd(n));

export function subjectLimitsView(s: Pick<ScopeLimits, "requestsPerMinute" | "inputTokensPerMinute" | "outputTokensPerMinute" | "concurrentRequests">): SubjectLimitsType {
  return {
    requestsPerMinute: rateView(s.requestsPerMinute),
    inputTokensPerMinute: rateView(s.inputTokensPerMinute),
    outputTokensPerMinute: rateView(s.outputTokensPerMinute),
    concurrentRequests: s.concurrentRequests ?? null,
  };
}

export function scopeLimitsView(s: ScopeLimits): ScopeLimitsType {
  return {
    ...subjectLimitsView(s),
    dailyTokens: s.dailyTokens == null ? null : String(s.dailyTokens),
    monthlyTokens: s.monthlyTokens == null ? null : String(s.monthlyTokens),
    dailyBudgetUsd: usdView(s.dailyBudgetNano),
    monthlyBudgetUsd: usdView(s.monthlyBudgetNano),
  };
}

const routeModelLimitView = (o: RouteModelLimit): RouteModelLimitType => ({ ...subjectLimitsView(o), route: o.route, model: o.model });

const rungView = (g: LadderRung): LadderRungType => ({
  atPercent: g.atPercent,
  of: g.of as LimitDimension,
  maxOutputTokens: g.maxOutputTokens,
  maxInputTokens: g.maxInputTokens,
  priority: g.priority as Priority | null,
  modelMap: g.modelMap.map((m) => ({ from: m.from, to: m.to })),
  block: g.block,
});

export function tierView(t: Tier): TierType {
  return {
    id: t.id,
    name: t.name,
    description: t.description,
    tenantLimits: scopeLimitsView(t.tenantLimits),
    keyLimits: scopeLimitsView(t.keyLimits),
    subjectLimits: subjectLimitsView(t.subjectLimits),
    routeModelLimits: t.routeModelLimits.map(routeModelLimitView),
    maxInputTokens: t.maxInputTokens,
    defaultMaxOutputTokens: t.defaultMaxOutputTokens,
    maxOutputTokens: t.maxOutputTokens,
    allowedRoutes: t.allowedRoutes,
    allowedModels: t.allowedModels,
    allowedTools: t.allowedTools,
    notifyAtPercent: t.notifyAtPercent,
    degradationLadder: t.degradationLadder.map(rungView),
    reservationTtlSeconds: t.reservationTtlSeconds,
    routeReservationTtlSeconds: t.routeReservationTtlSeconds.map((r) => ({ route: r.route, seconds: r.seconds })),
    failOpenRateLimits: t.failOpenRateLimits,
    breaker: breakerSettingsView(breakerSettingsOf(t)),
    anomaly: anomalySettingsView(anomalySettingsOf(t)),
    createdAt: t.createdAt,
    updatedAt: t.updatedAt,
  };
}

// ── input ──

@InputType("RateLimitInput")
export class RateLimitInput {
  @Field(() => Int) perMinute!: number;
  @Field(() => Int, { nullable: true, description: "Bucket size; default perMinute." }) burst?: number | null;
}

@InputType("SubjectLimitsInput")
export class SubjectLimitsInput {
  @Field(() => RateLimitInput, { nullable: true }) requestsPerMinute?: RateLimitInput | null;
  @Field(() => RateLimitInput, { nullable: true }) inputTokensPerMinute?: RateLimitInput | null;
  @Field(() => RateLimitInput, { nullable: true }) outputTokensPerMinute?: RateLimitInput | null;
  @Field(() => Int, { nullable: true }) concurrentRequests?: number | null;
}

@InputType("ScopeLimitsInput", {
  description:
    "Limits of one scope. In a tier, an omitted or null dimension is unlimited. In a tenant's limitOverrides, " +
    "an omitted dimension inherits the tier's and null lifts the tier's limit.",
})
export class ScopeLimitsInput extends SubjectLimitsInput implements ScopeLimitsInputShape {
  @Field(() => String, { nullable: true, description: "Decimal integer string, 1 to 10^12." }) dailyTokens?: string | null;
  @Field(() => String, { nullable: true, description: "Decimal integer string, 1 to 10^12." }) monthlyTokens?: string | null;
  @Field(() => DecimalScalar, { nullable: true }) dailyBudgetUsd?: string | null;
  @Field(() => DecimalScalar, { nullable: true }) monthlyBudgetUsd?: string | null;
}

@InputType("RouteModelLimitInput")
export class RouteModelLimitInput extends SubjectLimitsInput implements RouteModelLimitInputShape {
  @Field(() => String, { description: "A route name or \"*\"." }) route!: string;
  @Field(() => String, { description: "A model name or \"*\"." }) model!: string;
}

@InputType("ModelMappingInput")
export class ModelMappingInput {
  @Field(() => String, { description: "A model name, or \"*\" for every model." }) from!: string;
  @Field(() => String) to!: string;
}

@InputType("LadderRungInput")
export class LadderRungInput implements LadderRungInputShape {
  @Field(() => Int, { description: "1 to 1000; rungs of one dimension in ascending order." }) atPercent!: number;
  @Field(() => LimitDimension, { description: "DAILY_TOKENS, MONTHLY_TOKENS, DAILY_BUDGET or MONTHLY_BUDGET." }) of!: LimitDimension;
  @Field(() => Int, { nullable: true }) maxOutputTokens?: number | null;
  @Field(() => Int, { nullable: true }) maxInputTokens?: number | null;
  @Field(() => Priority, { nullable: true }) priority?: Priority | null;
  @Field(() => [ModelMappingInput], { nullable: true }) modelMap?: ModelMappingInput[] | null;
  @Field(() => Boolean, { nullable: true, description: "Deny at this rung (default false)." }) block?: boolean | null;
}

@InputType("RouteReservationTtlInput")
export class RouteReservationTtlInput {
  @Field(() => String) route!: string;
  @Field(() => Int, { description: "1 to 86400." }) seconds!: number;
}

/** Fields shared by create and update; never used alone, so never emitted as its own type. */
@InputType("TierFieldsInput")
class TierFieldsInput {
  @Field(() => String, { nullable: true }) description?: string | null;
  @Field(() => ScopeLimitsInput, { nullable: true }) tenantLimits?: ScopeLimitsInput | null;
  @Field(() => ScopeLimitsInput, { nullable: true }) keyLimits?: ScopeLimitsInput | null;
  @Field(() => SubjectLimitsInput, { nullable: true }) subjectLimits?: SubjectLimitsInput | null;
  @Field(() => [RouteModelLimitInput], { nullable: true }) routeModelLimits?: RouteModelLimitInput[] | null;
  @Field(() => Int, { nullable: true, description: "Null = no cap beyond the model's context window." }) maxInputTokens?: number | null;
  @Field(() => Int, { nullable: true, description: "Default on create: maxOutputTokens." }) defaultMaxOutputTokens?: number | null;
  @Field(() => [String], { nullable: true, description: "Null = every route." }) allowedRoutes?: string[] | null;
  @Field(() => [String], { nullable: true, description: "Null = every priced model." }) allowedModels?: string[] | null;
  @Field(() => [String], { nullable: true, description: "Null = every tool." }) allowedTools?: string[] | null;
  @Field(() => [Int], { nullable: true, description: "Default on create: [50, 80, 100]." }) notifyAtPercent?: number[] | null;
  @Field(() => [LadderRungInput], { nullable: true }) degradationLadder?: LadderRungInput[] | null;
  @Field(() => Int, { nullable: true, description: "Default on create: 600." }) reservationTtlSeconds?: number | null;
  @Field(() => [RouteReservationTtlInput], { nullable: true }) routeReservationTtlSeconds?: RouteReservationTtlInput[] | null;
  @Field(() => Boolean, { nullable: true, description: "Default on create: false." }) failOpenRateLimits?: boolean | null;
  @Field(() => TierBreakerSettingsInput, { nullable: true, description: "Replaces the breaker settings (omitted fields: defaults); null resets them." })
  breaker?: TierBreakerSettingsInput | null;
  @Field(() => TierAnomalySettingsInput, { nullable: true, description: "Replaces the anomaly settings (omitted fields: defaults); null resets them." })
  anomaly?: TierAnomalySettingsInput | null;
}

@InputType("CreateTierInput")
export class CreateTierInput extends TierFieldsInput implements TierInput {
  @Field(() => String) name!: string;
  @Field(() => Int) maxOutputTokens!: number;
}

@InputType("UpdateTierInput", { description: "Omitted fields keep their value; a given object or list replaces the old one whole." })
export class UpdateTierInput extends TierFieldsInput implements TierInput {
  @Field(() => String, { nullable: true }) name?: string | null;
  @Field(() => Int, { nullable: true }) maxOutputTokens?: number | null;
}
