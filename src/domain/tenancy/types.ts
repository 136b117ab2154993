/**
 * The tenancy domain model. Pure types: storage maps rows to these, GraphQL maps these to
 * its object types. Money is bigint nano-USD here; token counts are JS numbers (safe integers).
 */

export type Role = "ADMIN" | "TENANT_ADMIN" | "GATEWAY" | "BILLING";
export const ROLES: readonly Role[] = ["ADMIN", "TENANT_ADMIN", "GATEWAY", "BILLING"];

export type Priority = "CRITICAL" | "NORMAL" | "BACKGROUND";

export type LimitDimension =
  | "REQUESTS_PER_MINUTE"
  | "INPUT_TOKENS_PER_MINUTE"
  | "OUTPUT_TOKENS_PER_MINUTE"
  | "CONCURRENT_REQUESTS"
  | "DAILY_TOKENS"
  | "MONTHLY_TOKENS"
  | "DAILY_BUDGET"
  | "MONTHLY_BUDGET";

/** A token bucket: refills `perMinute` per minute, holds at most `burst` (default `perMinute`). */
export interface RateLimit {
  perMinute: number;
  burst: number | null;
}

/** The limits that can apply to one scope. `null`/absent = unlimited on that dimension. */
export interface ScopeLimits {
  requestsPerMinute?: RateLimit | null;
  inputTokensPerMinute?: RateLimit | null;
  outputTokensPerMinute?: RateLimit | null;
  concurrentRequests?: number | null;
  dailyTokens?: number | null;
  monthlyTokens?: number | null;
  dailyBudgetNano?: bigint | null;
  monthlyBudgetNano?: bigint | null;
}

/** Extra rate/concurrency limits for one route and/or model (either may be "*"). */
export interface RouteModelLimit {
  route: string; // "*" = any route
  model: string; // "*" = any model
  requestsPerMinute?: RateLimit | null;
  inputTokensPerMinute?: RateLimit | null;
  outputTokensPerMinute?: RateLimit | null;
  concurrentRequests?: number | null;
}

export interface ModelMapping {
  from: string;
  to: string;
}

/**
 * A rung of the degradation ladder. When usage of `of` (a quota or budget dimension, the
 * tightest of tenant and key scope) reaches `atPercent`, requests are shaped by this rung;
 * the highest rung reached wins. A `block` rung denies.
 */
export interface LadderRung {
  atPercent: number;
  of: LimitDimension;
  maxOutputTokens: number | null;
  maxInputTokens: number | null;
  priority: Priority | null;
  modelMap: ModelMapping[];
  block: boolean;
}

export interface Tier {
  id: string;
  name: string;
  description: string | null;
  tenantLimits: ScopeLimits;
  keyLimits: ScopeLimits;
  /** Per end-user (the `subject` a gateway passes) rate limits. */
  subjectLimits: Pick<ScopeLimits, "requestsPerMinute" | "inputTokensPerMinute" | "outputTokensPerMinute" | "concurrentRequests">;
  routeModelLimits: RouteModelLimit[];
  /** Prompt-size cap; null = the model's context window only. */
  maxInputTokens: number | null;
  /** Output reserved when the request names none. */
  defaultMaxOutputTokens: number;
  /** Hard cap on any request's output. */
  maxOutputTokens: number;
  allowedRoutes: string[] | null; // null = all
  allowedModels: string[] | null;
  allowedTools: string[] | null;
  notifyAtPercent: number[];
  degradationLadder: LadderRung[];
  reservationTtlSeconds: number;
  /** Per-route TTL overrides (seconds). */
  routeReservationTtlSeconds: { route: string; seconds: number }[];
  /** Pure rate limits may fail open when Redis is unreachable; quotas and budgets never do. */
  failOpenRateLimits: boolean;
  /** Spend circuit breaker settings (src/domain/abuse); absent = the defaults there. */
  breaker?: BreakerSettings;
  /** Anomaly thresholds and the action taken on one (src/domain/abuse); absent = the defaults there. */
  anomaly?: AnomalySettings;
  createdAt: Date;
  updatedAt: Date;
}

/**
 * When a tenant's spend rate trips its circuit breaker: spend over the last `windowSeconds`
 * reaches `multiplier` times the tenant's own baseline for such a window (and at least
 * `minSpendNano`). Open denies all but CRITICAL; after `cooldownSeconds` it is half-open and
 * lets one request in `halfOpenOneIn` through; it closes when the rate is back below the bar.
 * The baseline is an exponentially weighted mean with time constant `baselineSeconds`.
 */
export interface BreakerSettings {
  enabled: boolean;
  multiplier: number;
  windowSeconds: number;
  minSpendNano: bigint;
  cooldownSeconds: number;
  halfOpenOneIn: number;
  baselineSeconds: number;
}

export type AnomalyAction = "NONE" | "DEGRADE" | "SUSPEND_KEY";

/**
 * Per-key anomaly thresholds, each a multiple of the key's own baseline with an absolute floor
 * (a brand-new key has no baseline), and what to do when one is found.
 */
export interface AnomalySettings {
  action: AnomalyAction;
  /** The window volume and prompt variants are counted over. */
  windowSeconds: number;
  volumeMultiplier: number;
  minRequests: number;
  sizeMultiplier: number;
  minInputTokens: number;
  /** Requests a key must have made before its usual size is trusted. */
  minSamples: number;
  variantMultiplier: number;
  minVariants: number;
  /** DEGRADE: the key's requests get at most this output and this priority for degradeSeconds. */
  degradeMaxOutputTokens: number;
  degradePriority: Priority;
  degradeSeconds: number;
  baselineSeconds: number;
}

export type TenantStatus = "ACTIVE" | "SUSPENDED";

export interface Tenant {
  id: string;
  name: string;
  tierId: string;
  timezone: string;
  status: TenantStatus;
  /** Replaces the tier's tenant-scope limits dimension by dimension. */
  limitOverrides: ScopeLimits;
  createdAt: Date;
  updatedAt: Date;
}

export type ApiKeyStatus = "ACTIVE" | "REVOKED";

export interface ApiKey {
  id: string;
  tenantId: string;
  name: string;
  /** The public part shown in listings (e.g. "llm_key_AbC…"), never the secret. */
  prefix: string;
  status: ApiKeyStatus;
  expiresAt: Date | null;
  monthlyBudgetNano: bigint | null;
  dailyBudgetNano: bigint | null;
  allowedRoutes: string[] | null;
  allowedModels: string[] | null;
  rotatedFromId: string | null;
  createdAt: Date;
  revokedAt: Date | null;
}

export interface ServiceCredential {
  id: string;
  role: Role;
  tenantId: string | null;
  name: string;
  status: ApiKeyStatus;
  createdAt: Date;
  revokedAt: Date | null;
}

export interface ModelPrice {
  inputNano: bigint; // per token
  outputNano: bigint; // per token
  effectiveFrom: Date;
}

export interface Model {
  name: string;
  contextWindow: number;
  downgradeTo: string | null;
  /** Price history, newest effectiveFrom first. */
  prices: ModelPrice[];
  createdAt: Date;
  updatedAt: Date;
}

/** The authenticated caller of the GraphQL API. */
export interface Actor {
  /** "system": the service itself (a background job acting on a policy an operator chose). */
  kind: "credential" | "jwt" | "bootstrap" | "system";
  id: string;
  role: Role;
  /** Set for TENANT_ADMIN (always) and for tenant-bound GATEWAY/BILLING credentials. */
  tenantId: string | null;
  name: string;
}
