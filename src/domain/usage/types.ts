import type { ApiKey, LimitDimension, Tenant, Tier } from "../tenancy/types.js";

/** How a usage report is broken down. DAY and MONTH are tenant-local calendar periods. */
export type UsageGroupBy = "DAY" | "MONTH" | "KEY" | "MODEL" | "ROUTE";
export const USAGE_GROUP_BY: readonly UsageGroupBy[] = ["DAY", "MONTH", "KEY", "MODEL", "ROUTE"];

/** Ledger sums. Money is nano-USD; everything is bigint so no sum ever loses a digit. */
export interface UsageFigures {
  inputTokens: bigint;
  outputTokens: bigint;
  costNano: bigint;
  /** Committed requests (COMMIT ledger rows, any status). */
  requests: bigint;
  failedRequests: bigint;
  cancelledRequests: bigint;
  overageRequests: bigint;
  expiredReservations: bigint;
}

export const ZERO_FIGURES: UsageFigures = {
  inputTokens: 0n,
  outputTokens: 0n,
  costNano: 0n,
  requests: 0n,
  failedRequests: 0n,
  cancelledRequests: 0n,
  overageRequests: 0n,
  expiredReservations: 0n,
};

export function addFigures(a: UsageFigures, b: UsageFigures): UsageFigures {
  return {
    inputTokens: a.inputTokens + b.inputTokens,
    outputTokens: a.outputTokens + b.outputTokens,
    costNano: a.costNano + b.costNano,
    requests: a.requests + b.requests,
    failedRequests: a.failedRequests + b.failedRequests,
    cancelledRequests: a.cancelledRequests + b.cancelledRequests,
    overageRequests: a.overageRequests + b.overageRequests,
    expiredReservations: a.expiredReservations + b.expiredReservations,
  };
}

/** One group of a report: the grouping columns asked for are set, the others are null. */
export interface UsageGroup extends UsageFigures {
  day: string | null;
  month: string | null;
  keyId: string | null;
  model: string | null;
  route: string | null;
}

/** What the storage adapter answers a report from (tenant-local day strings, inclusive). */
export interface UsageReportQuery {
  tenantId: string;
  fromDay: string;
  toDay: string;
  /** Months wholly inside [fromDay, toDay] that may be read from the monthly rollup. */
  fullMonths: string[];
  groupBy: UsageGroupBy[];
}

export interface UsageReport {
  tenantId: string;
  timezone: string;
  from: Date;
  to: Date;
  fromDay: string;
  toDay: string;
  groupBy: UsageGroupBy[];
  totals: UsageFigures;
  groups: UsageGroup[];
  /** Ledger rows up to this id came from the rollups; later ones were summed from the ledger. */
  rolledUpTo: bigint;
}

/** Reads for usage reports: rollups plus the not-yet-rolled ledger tail, in one snapshot. */
export interface UsageReader {
  report(q: UsageReportQuery): Promise<{ groups: UsageGroup[]; watermark: bigint }>;
  tenant(tenantId: string): Promise<{ id: string; timezone: string } | null>;
}

// ── quota lifecycle ──

export type QuotaDimension = Extract<LimitDimension, "DAILY_TOKENS" | "MONTHLY_TOKENS" | "DAILY_BUDGET" | "MONTHLY_BUDGET">;
export const QUOTA_DIMENSIONS: readonly QuotaDimension[] = ["DAILY_TOKENS", "MONTHLY_TOKENS", "DAILY_BUDGET", "MONTHLY_BUDGET"];

export type PeriodKind = "day" | "month";
export type QuotaUnit = "tokens" | "usd";

/** Committed usage of one key in the current day and month (tenant-local). */
export interface KeyPeriodUsage {
  keyId: string;
  dayTokens: bigint;
  dayCostNano: bigint;
  monthTokens: bigint;
  monthCostNano: bigint;
}

/** One quota or budget of one scope in its current period, with the usage against it. */
export interface QuotaMeasure {
  /** "tenant" or "key:<keyId>" */
  scope: string;
  dimension: QuotaDimension;
  periodKind: PeriodKind;
  period: string;
  unit: QuotaUnit;
  /** Committed usage: tokens, or nano-USD for budgets. */
  usage: bigint;
  /** null = no limit on this dimension for this scope. */
  limit: bigint | null;
}

export interface TenantPeriodState {
  tenantId: string;
  timezone: string;
  day: string;
  month: string;
  dayEndsAt: Date;
  monthEndsAt: Date;
}

export interface ThresholdKey {
  scope: string;
  dimension: QuotaDimension;
  period: string;
  kind: "NOTIFY" | "EXHAUSTED";
  thresholdPercent: number;
}

export interface ThresholdState extends ThresholdKey {
  state: "CROSSED" | "RESOLVED";
  crossings: number;
  usage: bigint;
  limit: bigint;
  crossedAt: Date;
}

export interface DegradationState {
  scope: string;
  rung: number;
  dimension: QuotaDimension;
  atPercent: number;
  blocking: boolean;
  period: string;
  usage: bigint;
  limit: bigint;
  reason: string;
  appliedAt: Date;
}

export type ThresholdResolution = "period_ended" | "limit_raised" | "limit_removed";
export type LiftReason = "period_reset" | "limit_raised" | "limit_removed" | "ladder_changed";

export interface TenantPolicy {
  tenant: Tenant;
  tier: Tier;
  /** The keys being measured (revoked ones too: their usage still counts this period). */
  keys: ApiKey[];
}

/** A quota event to write to the outbox (the id is assigned on write). */
export interface OutboxEvent {
  type: "threshold.crossed" | "threshold.resolved" | "degradation.applied" | "degradation.lifted" | "budget.exhausted" | "period.rolled" | "usage.overage" | "reservation.expired";
  tenantId: string;
  scope: string | null;
  period: string | null;
  payload: Record<string, unknown>;
  occurredAt: Date;
}

/**
 * One tenant's quota state inside one Postgres transaction that holds the tenant's evaluation
 * lock. Writes are conditional (they say whether they changed anything) so an event is written
 * only by the transaction whose write made the transition.
 */
export interface QuotaStateTx {
  /** The tenant and its tier, as the operator left them (not the hot path's cache). */
  policy(): Promise<Omit<TenantPolicy, "keys"> | null>;
  /** The tenant's keys among `ids` (only keys with usage or state are ever measured). */
  keys(ids: string[]): Promise<ApiKey[]>;
  periodState(): Promise<TenantPeriodState | null>;
  /** Insert (expected null) or move from `expected` periods; false when the row was not as expected. */
  savePeriodState(next: TenantPeriodState, expected: { day: string; month: string } | null): Promise<boolean>;
  /** Committed usage per key in the given periods: rollups plus the ledger tail, exact. */
  usage(day: string, month: string): Promise<KeyPeriodUsage[]>;
  /** Every CROSSED threshold row of the tenant (any period). */
  openThresholds(): Promise<ThresholdState[]>;
  /** Insert-or-nothing (or RESOLVED → CROSSED); returns the crossing number when this call crossed it. */
  crossThreshold(key: ThresholdKey, usage: bigint, limit: bigint, at: Date): Promise<number | null>;
  resolveThreshold(key: ThresholdKey, resolution: ThresholdResolution, at: Date): Promise<boolean>;
  degradations(): Promise<DegradationState[]>;
  /** Insert (expected null) or replace `expected` (same rung and period as read). */
  applyDegradation(next: DegradationState, expected: DegradationState | null, eventId: string): Promise<boolean>;
  liftDegradation(current: DegradationState, reason: LiftReason, usage: bigint, limit: bigint | null, eventId: string, at: Date): Promise<boolean>;
  /** Writes the event to the outbox in this transaction; `id` when it was reserved with newEventId. */
  emit(e: OutboxEvent, id?: string): Promise<string>;
  /** An event id reserved before its cause is written (history rows reference it). */
  newEventId(): string;
}

export interface QuotaStateStore {
  /** Runs `fn` in one transaction holding the tenant's evaluation lock. */
  withTenant<T>(tenantId: string, fn: (tx: QuotaStateTx) => Promise<T>): Promise<T>;
  /** Tenants whose stored tenant-local day has ended by `now` (a period reset is due). */
  tenantsDueForReset(now: Date, limit: number): Promise<string[]>;
  /** Tenants holding a crossed threshold or a rung (a raised limit may resolve them). */
  tenantsWithOpenState(limit: number): Promise<string[]>;
  /** The tenant of an API key (for invalidations that name a key). */
  tenantOfKey(keyId: string): Promise<string | null>;
  /** Tenants on a tier that the lifecycle has seen (a tier change may cross or resolve their thresholds). */
  tenantsOnTier(tierId: string): Promise<string[]>;
}
