import { ArgsType, Field, Float, GraphQLISODateTime, ID, InputType, Int, ObjectType, registerEnumType } from "type-graphql";
import { GraphQLJSONObject } from "graphql-scalars";
import { DecimalScalar } from "../scalars.js";
import { Connection, PageArgs } from "./pagination.js";
import { Priority } from "./enums.js";
import { formatUsd } from "../../domain/billing/money.js";
import type { AnomalySettings, BreakerSettings } from "../../domain/tenancy/types.js";
import type { AnomalySettingsInput, BreakerSettingsInput } from "../../domain/abuse/settings.js";
import type { BreakerView } from "../../domain/abuse/breaker.service.js";
import type { Anomaly } from "../../domain/abuse/anomaly.js";
import type { AuditRecord } from "../../domain/abuse/audit.js";

/** Abuse and cost controls: breakers, anomalies, the audit trail, and the per-tier settings of the first two. */

export enum BreakerState {
  CLOSED = "CLOSED",
  OPEN = "OPEN",
  HALF_OPEN = "HALF_OPEN",
}
registerEnumType(BreakerState, {
  name: "BreakerState",
  description: "OPEN denies every non-CRITICAL request (CIRCUIT_OPEN); HALF_OPEN lets one in halfOpenOneIn through; CLOSED lets all through.",
});

export enum BreakerScope {
  TENANT = "TENANT",
  GLOBAL = "GLOBAL",
}
registerEnumType(BreakerScope, { name: "BreakerScope" });

export enum AnomalyKind {
  VOLUME_SPIKE = "VOLUME_SPIKE",
  LARGE_REQUEST = "LARGE_REQUEST",
  PROMPT_VARIANT_STORM = "PROMPT_VARIANT_STORM",
  AUTH_FAILURE_BURST = "AUTH_FAILURE_BURST",
}
registerEnumType(AnomalyKind, {
  name: "AnomalyKind",
  description:
    "VOLUME_SPIKE: a key's requests far above its usual rate. LARGE_REQUEST: a prompt far larger than the key's usual. " +
    "PROMPT_VARIANT_STORM: many distinct promptFingerprints. AUTH_FAILURE_BURST: repeated bad keys from one client address or for one key prefix.",
});

export enum AnomalyAction {
  NONE = "NONE",
  DEGRADE = "DEGRADE",
  SUSPEND_KEY = "SUSPEND_KEY",
}
registerEnumType(AnomalyAction, {
  name: "AnomalyAction",
  description: "What a tier does about a key's anomaly: record it only, degrade the key for a while, or revoke the key.",
});

export enum AnomalyActionTaken {
  NONE = "NONE",
  DEGRADE = "DEGRADE",
  SUSPEND_KEY = "SUSPEND_KEY",
  THROTTLE = "THROTTLE",
}
registerEnumType(AnomalyActionTaken, {
  name: "AnomalyActionTaken",
  description: "The tier's AnomalyAction for key anomalies; THROTTLE for failed-auth bursts (the throttle blocks the source or prefix).",
});

export enum AuditKind {
  OPERATOR = "OPERATOR",
  DENIAL = "DENIAL",
  DEGRADATION = "DEGRADATION",
  BREAKER = "BREAKER",
  ANOMALY = "ANOMALY",
  SYSTEM = "SYSTEM",
}
registerEnumType(AuditKind, {
  name: "AuditKind",
  description:
    "OPERATOR: any action by a person or service credential. DENIAL / DEGRADATION: decisions, aggregated per minute, caller, key, route, model and reason. " +
    "BREAKER: breaker transitions and operator breaker actions. ANOMALY: anomalies found. SYSTEM: other actions of the service itself.",
});

// ── per-tier settings ──

@ObjectType("TierBreakerSettings", {
  description: "The tier's spend circuit breaker: trips when spend over windowSeconds reaches multiplier × the tenant's usual spend for such a window, and at least minSpendUsd.",
})
export class TierBreakerSettingsType {
  @Field(() => Boolean) enabled!: boolean;
  @Field(() => Float) multiplier!: number;
  @Field(() => Int) windowSeconds!: number;
  @Field(() => DecimalScalar, { description: "Spend below this per window never trips the breaker, whatever the baseline." }) minSpendUsd!: string;
  @Field(() => Int, { description: "How long an automatically opened breaker stays open before turning half-open." }) cooldownSeconds!: number;
  @Field(() => Int, { description: "While half-open, one non-CRITICAL request in this many passes (per replica)." }) halfOpenOneIn!: number;
  @Field(() => Int, { description: "Time constant of the tenant's spend baseline (an exponentially weighted mean)." }) baselineSeconds!: number;
}

@ObjectType("TierAnomalySettings", { description: "Per-key anomaly thresholds: each a multiple of the key's own baseline with an absolute floor." })
export class TierAnomalySettingsType {
  @Field(() => AnomalyAction) action!: AnomalyAction;
  @Field(() => Int, { description: "Window requests and prompt variants are counted over." }) windowSeconds!: number;
  @Field(() => Float) volumeMultiplier!: number;
  @Field(() => Int) minRequests!: number;
  @Field(() => Float) sizeMultiplier!: number;
  @Field(() => Int) minInputTokens!: number;
  @Field(() => Int, { description: "Requests a key must have made before its usual prompt size is trusted." }) minSamples!: number;
  @Field(() => Float) variantMultiplier!: number;
  @Field(() => Int) minVariants!: number;
  @Field(() => Int) degradeMaxOutputTokens!: number;
  @Field(() => Priority) degradePriority!: Priority;
  @Field(() => Int) degradeSeconds!: number;
  @Field(() => Int) baselineSeconds!: number;
}

export const breakerSettingsView = (s: BreakerSettings): TierBreakerSettingsType => ({ ...s, minSpendUsd: formatUsd(s.minSpendNano) });
export const anomalySettingsView = (s: AnomalySettings): TierAnomalySettingsType => ({
  ...s,
  action: s.action as AnomalyAction,
  degradePriority: s.degradePriority as Priority,
});

@InputType("TierBreakerSettingsInput", { description: "Replaces the tier's breaker settings; omitted fields take their defaults." })
export class TierBreakerSettingsInput implements BreakerSettingsInput {
  @Field(() => Boolean, { nullable: true, description: "Default true." }) enabled?: boolean | null;
  @Field(() => Float, { nullable: true, description: "1 to 10000; default 3." }) multiplier?: number | null;
  @Field(() => Int, { nullable: true, description: "1 to 86400; default 600." }) windowSeconds?: number | null;
  @Field(() => DecimalScalar, { nullable: true, description: "Default 10." }) minSpendUsd?: string | null;
  @Field(() => Int, { nullable: true, description: "1 to 86400; default 600." }) cooldownSeconds?: number | null;
  @Field(() => Int, { nullable: true, description: "1 to 1000000; default 10." }) halfOpenOneIn?: number | null;
  @Field(() => Int, { nullable: true, description: "Default 604800 (7 days)." }) baselineSeconds?: number | null;
}

@InputType("TierAnomalySettingsInput", { description: "Replaces the tier's anomaly settings; omitted fields take their defaults." })
export class TierAnomalySettingsInput implements AnomalySettingsInput {
  @Field(() => AnomalyAction, { nullable: true, description: "Default NONE." }) action?: AnomalyAction | null;
  @Field(() => Int, { nullable: true, description: "Default 3600." }) windowSeconds?: number | null;
  @Field(() => Float, { nullable: true, description: "Default 100." }) volumeMultiplier?: number | null;
  @Field(() => Int, { nullable: true, description: "Default 1000." }) minRequests?: number | null;
  @Field(() => Float, { nullable: true, description: "Default 20." }) sizeMultiplier?: number | null;
  @Field(() => Int, { nullable: true, description: "Default 8000." }) minInputTokens?: number | null;
  @Field(() => Int, { nullable: true, description: "Default 100." }) minSamples?: number | null;
  @Field(() => Float, { nullable: true, description: "Default 20." }) variantMultiplier?: number | null;
  @Field(() => Int, { nullable: true, description: "Default 1000." }) minVariants?: number | null;
  @Field(() => Int, { nullable: true, description: "Default 256." }) degradeMaxOutputTokens?: number | null;
  @Field(() => Priority, { nullable: true, description: "Default BACKGROUND." }) degradePriority?: Priority | null;
  @Field(() => Int, { nullable: true, description: "Default 3600." }) degradeSeconds?: number | null;
  @Field(() => Int, { nullable: true, description: "Default 604800 (7 days)." }) baselineSeconds?: number | null;
}

// ── breakers ──

@ObjectType("Breaker", { description: "A spend circuit breaker (one per tenant, one global) and the figures it decides on." })
export class BreakerType {
  @Field(() => BreakerScope) scope!: BreakerScope;
  @Field(() => ID, { nullable: true }) tenantId!: string | null;
  @Field(() => BreakerState) state!: BreakerState;
  @Field(() => GraphQLISODateTime) since!: Date;
  @Field(() => String, { nullable: true }) reason!: string | null;
  @Field(() => Boolean, { description: "Opened by an operator: it stays open until an operator closes it." }) manual!: boolean;
  @Field(() => String, { description: "Who made the last change: \"abuse-monitor\" (the service) or an operator's id." }) changedBy!: string;
  @Field(() => GraphQLISODateTime, { nullable: true, description: "OPEN (automatic): when it turns half-open." }) cooldownUntil!: Date | null;
  @Field(() => GraphQLISODateTime, { nullable: true, description: "HALF_OPEN: the earliest it may close." }) probeUntil!: Date | null;
  @Field(() => DecimalScalar, { description: "Spend in the current window (the global one: as of the last evaluation)." }) windowSpendUsd!: string;
  @Field(() => DecimalScalar, { description: "The bar the window's spend is compared with." }) thresholdUsd!: string;
  @Field(() => DecimalScalar, { description: "Usual spend for a window (the learned baseline)." }) baselineUsdPerWindow!: string;
  @Field(() => TierBreakerSettingsType) settings!: TierBreakerSettingsType;
}

const FOREVER = Number.MAX_SAFE_INTEGER;

export function breakerView(v: BreakerView): BreakerType {
  const r = v.record;
  return {
    scope: v.scope as BreakerScope,
    tenantId: v.tenantId,
    state: r.state as BreakerState,
    since: new Date(r.since),
    reason: r.reason || null,
    manual: r.manual,
    changedBy: r.actor,
    cooldownUntil: r.state === "OPEN" && !r.manual && r.cooldownUntil < FOREVER ? new Date(r.cooldownUntil) : null,
    probeUntil: r.state === "HALF_OPEN" ? new Date(r.probeUntil) : null,
    windowSpendUsd: formatUsd(v.figures.windowSpendNano),
    thresholdUsd: formatUsd(v.figures.thresholdNano),
    baselineUsdPerWindow: formatUsd(v.figures.baselinePerWindowNano),
    settings: breakerSettingsView(v.settings),
  };
}

// ── anomalies ──

@ObjectType("Anomaly", { description: "Something out of the ordinary, with the figures it was found on and what was done about it." })
export class AnomalyType {
  @Field(() => ID) id!: string;
  @Field(() => AnomalyKind) kind!: AnomalyKind;
  @Field(() => ID, { nullable: true }) tenantId!: string | null;
  @Field(() => ID, { nullable: true }) keyId!: string | null;
  @Field(() => String, { nullable: true, description: "The client address (AUTH_FAILURE_BURST per source)." }) source!: string | null;
  @Field(() => String, { nullable: true, description: "The public key prefix (AUTH_FAILURE_BURST per key prefix); never a secret." }) keyPrefix!: string | null;
  @Field(() => GraphQLISODateTime) detectedAt!: Date;
  @Field(() => GraphQLISODateTime) windowStart!: Date;
  @Field(() => GraphQLISODateTime) windowEnd!: Date;
  @Field(() => GraphQLJSONObject, { description: "The figures the rule fired on (counts, baselines, bars)." }) evidence!: Record<string, unknown>;
  @Field(() => AnomalyActionTaken) action!: AnomalyActionTaken;
  @Field(() => String, { nullable: true, description: "What the action did, or why it failed." }) actionResult!: string | null;
}

export const anomalyView = (a: Anomaly): AnomalyType => ({ ...a, kind: a.kind as AnomalyKind, action: a.action as AnomalyActionTaken });

export const AnomalyConnection = Connection("AnomalyConnection", AnomalyType);

@ArgsType()
export class AnomaliesArgs extends PageArgs {
  @Field(() => ID, { nullable: true, description: "Tenant-bound callers always see their own tenant only." }) tenantId?: string | null;
  @Field(() => AnomalyKind, { nullable: true }) kind?: AnomalyKind | null;
  @Field(() => GraphQLISODateTime, { nullable: true, description: "Detected at or after." }) from?: Date | null;
  @Field(() => GraphQLISODateTime, { nullable: true, description: "Detected before." }) to?: Date | null;
}

// ── audit trail ──

@ObjectType("AuditEntry", { description: "One entry of the audit trail. Never holds a secret." })
export class AuditEntryType {
  @Field(() => ID) id!: string;
  @Field(() => GraphQLISODateTime, { description: "When it happened (aggregated decisions: the start of their minute)." }) at!: Date;
  @Field(() => AuditKind) kind!: AuditKind;
  @Field(() => String, { description: "credential, jwt, bootstrap or system." }) actorKind!: string;
  @Field(() => String) actorId!: string;
  @Field(() => ID, { nullable: true }) tenantId!: string | null;
  @Field(() => ID, { nullable: true }) keyId!: string | null;
  @Field(() => String, { description: 'e.g. "apiKey.revoke", "breaker.opened", "decision.denied".' }) action!: string;
  @Field(() => String, { nullable: true }) targetType!: string | null;
  @Field(() => String, { nullable: true }) targetId!: string | null;
  @Field(() => String, { nullable: true }) route!: string | null;
  @Field(() => String, { nullable: true }) model!: string | null;
  @Field(() => String, { nullable: true, description: "Prompt tokens (summed over an aggregate), as a decimal string." }) inputTokens!: string | null;
  @Field(() => String, { nullable: true, description: "Output tokens asked for or reserved (summed over an aggregate)." }) outputTokens!: string | null;
  @Field(() => String, { nullable: true, description: "DENY or ALLOW_DEGRADED for decisions." }) decision!: string | null;
  @Field(() => String, { nullable: true }) reason!: string | null;
  @Field(() => Int, { description: "How many decisions this aggregate stands for (1 for everything else)." }) count!: number;
  @Field(() => String, { nullable: true, description: "The client address the gateway passed." }) source!: string | null;
  @Field(() => GraphQLJSONObject) details!: Record<string, unknown>;
}

export const auditEntryView = (r: AuditRecord): AuditEntryType => ({
  id: r.id,
  at: r.at,
  kind: r.kind as AuditKind,
  actorKind: r.actorKind,
  actorId: r.actorId,
  tenantId: r.tenantId,
  keyId: r.keyId,
  action: r.action,
  targetType: r.targetType,
  targetId: r.targetId,
  route: r.route,
  model: r.model,
  inputTokens: r.inputTokens === null ? null : r.inputTokens.toString(),
  outputTokens: r.outputTokens === null ? null : r.outputTokens.toString(),
  decision: r.decision,
  reason: r.reason,
  count: r.count,
  source: r.source,
  details: r.details,
});

export const AuditEntryConnection = Connection("AuditEntryConnection", AuditEntryType);

@ArgsType()
export class AuditLogArgs extends PageArgs {
  @Field(() => ID, { nullable: true, description: "Tenant-bound callers always see their own tenant only." }) tenantId?: string | null;
  @Field(() => AuditKind, { nullable: true }) kind?: AuditKind | null;
  @Field(() => String, { nullable: true, description: "The actor's id (a credential id, a JWT subject, \"abuse-monitor\")." }) actorId?: string | null;
  @Field(() => GraphQLISODateTime, { nullable: true, description: "At or after." }) from?: Date | null;
  @Field(() => GraphQLISODateTime, { nullable: true, description: "Before." }) to?: Date | null;
}
