import { bigint, boolean, customType, index, integer, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";

/**
 * Text compared byte by byte (COLLATE "C"), for the rollup tables' key columns. Their primary
 * keys are five text columns that every rollup batch inserts or updates in key order and that a
 * rebuild joins on; under the database's default collation each comparison goes through the
 * locale (glibc's C.UTF-8 or an ICU locale). The keys are identifiers, dates and model names,
 * for which byte order is the only order anyone reads; for UTF-8 it is code point order, which is
 * C.UTF-8's too. Measured (migration 0009): a full rebuild of 700,000 ledger rows 3,935 → 3,539
 * ms, into empty rollups 3,794 → 3,190 ms (medians of 5 alternated bench runs); incremental
 * batches in a lab (backend CPU, a fresh database per run, 6 alternated runs) 1,032 → 966 ms per
 * 100,000 rows when each is a new rollup row and 497 → 441 ms for a day's traffic, 950–1,240 →
 * 850–870 ms on a database whose default is ICU en-US. In the bench's own incremental runs the
 * change is within their noise. Comparisons with the ledger's default-collation columns take
 * "C" (a column's explicit collation wins over the default), so joins and unions still work.
 */
const keyText = customType<{ data: string; driverData: string }>({ dataType: () => 'text COLLATE "C"' });

/**
 * Usage rollups and the persistent quota lifecycle (issue 4, part A). Everything here is
 * derived from the usage ledger, which stays the source of truth: the rollups can be rebuilt
 * from it at any time, and reconciliation sets Redis counters back to it.
 */

/** The figures one rollup row sums. Token and money sums are bigint (nano-USD for money). */
const figures = {
  inputTokens: bigint("input_tokens", { mode: "bigint" }).notNull(),
  outputTokens: bigint("output_tokens", { mode: "bigint" }).notNull(),
  costNano: bigint("cost_nano", { mode: "bigint" }).notNull(),
  /** COMMIT rows (every status). */
  requests: bigint("requests", { mode: "bigint" }).notNull(),
  failedRequests: bigint("failed_requests", { mode: "bigint" }).notNull(),
  cancelledRequests: bigint("cancelled_requests", { mode: "bigint" }).notNull(),
  /** COMMIT rows whose actual usage exceeded the reservation (charged in full). */
  overageRequests: bigint("overage_requests", { mode: "bigint" }).notNull(),
  /** EXPIRY rows: reservations whose holds the sweeper returned. */
  expiredReservations: bigint("expired_reservations", { mode: "bigint" }).notNull(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
};

/**
 * Ledger sums per tenant-local day. The primary key leads with (tenant, day) so a tenant's
 * date range is one index range scan. `period_month` is the month the day belongs to.
 * Both rollup tables have fillfactor 80 (migration 0007: pgTable cannot declare it), so the
 * rollup's in-place updates stay HOT.
 */
export const usageDaily = pgTable(
  "usage_daily",
  {
    tenantId: keyText("tenant_id").notNull(),
    periodDay: keyText("period_day").notNull(),
    periodMonth: keyText("period_month").notNull(),
    keyId: keyText("key_id").notNull(),
    model: keyText("model").notNull(),
    route: keyText("route").notNull(),
    ...figures,
  },
  (t) => [primaryKey({ name: "usage_daily_pk", columns: [t.tenantId, t.periodDay, t.keyId, t.model, t.route] })],
);

/** Ledger sums per tenant-local month. */
export const usageMonthly = pgTable(
  "usage_monthly",
  {
    tenantId: keyText("tenant_id").notNull(),
    periodMonth: keyText("period_month").notNull(),
    keyId: keyText("key_id").notNull(),
    model: keyText("model").notNull(),
    route: keyText("route").notNull(),
    ...figures,
  },
  (t) => [primaryKey({ name: "usage_monthly_pk", columns: [t.tenantId, t.periodMonth, t.keyId, t.model, t.route] })],
);

/**
 * How far the rollups have read the ledger. Every ledger row with id <= `watermark` is in the
 * rollups exactly once; every row above it is not (the "tail"). The watermark only moves
 * in the same transaction as the rollup upserts, and only up to `safeHorizon`: an id below
 * which no ledger insert can still be in flight (see usage-rollups.ts for why ids alone are
 * not enough).
 */
export const usageRollupState = pgTable("usage_rollup_state", {
  name: text("name").primaryKey(),
  watermark: bigint("watermark", { mode: "bigint" }).notNull(),
  safeHorizon: bigint("safe_horizon", { mode: "bigint" }).notNull(),
  rowsRolled: bigint("rows_rolled", { mode: "bigint" }).notNull(),
  rebuiltAt: timestamp("rebuilt_at", { withTimezone: true }),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * One row per (tenant, scope, dimension, period, kind, threshold): the primary key is what
 * makes `threshold.crossed` (kind NOTIFY) and `budget.exhausted` (kind EXHAUSTED, threshold 100)
 * exactly-once. Crossing is an insert-or-nothing (or a RESOLVED → CROSSED flip after a raised
 * limit was crossed again) in the same transaction as its outbox row.
 */
export const quotaThresholdState = pgTable(
  "quota_threshold_state",
  {
    tenantId: text("tenant_id").notNull(),
    /** "tenant" or "key:<keyId>" */
    scope: text("scope").notNull(),
    /** DAILY_TOKENS | MONTHLY_TOKENS | DAILY_BUDGET | MONTHLY_BUDGET */
    dimension: text("dimension").notNull(),
    /** Tenant-local "YYYY-MM-DD" (daily dimensions) or "YYYY-MM" (monthly). */
    period: text("period").notNull(),
    kind: text("kind").$type<"NOTIFY" | "EXHAUSTED">().notNull(),
    thresholdPercent: integer("threshold_percent").notNull(),
    state: text("state").$type<"CROSSED" | "RESOLVED">().notNull(),
    /** How many times this threshold was crossed in the period (again after a raised limit). */
    crossings: integer("crossings").notNull(),
    /** Usage and limit when last crossed: tokens, or nano-USD for budgets. */
    usage: bigint("usage", { mode: "bigint" }).notNull(),
    limitValue: bigint("limit_value", { mode: "bigint" }).notNull(),
    crossedAt: timestamp("crossed_at", { withTimezone: true }).notNull(),
    resolvedAt: timestamp("resolved_at", { withTimezone: true }),
    resolution: text("resolution"),
  },
  (t) => [
    primaryKey({ name: "quota_threshold_state_pk", columns: [t.tenantId, t.scope, t.dimension, t.period, t.kind, t.thresholdPercent] }),
    index("quota_threshold_open_idx").on(t.tenantId, t.state),
  ],
);

/**
 * The ladder rung each tenant (scope "tenant") or key (scope "key:<id>") is on, and why.
 * A row exists only while a rung applies; lifting deletes it (the history keeps the story).
 */
export const quotaDegradationState = pgTable(
  "quota_degradation_state",
  {
    tenantId: text("tenant_id").notNull(),
    scope: text("scope").notNull(),
    /** Index into the tier's degradationLadder when applied. */
    rung: integer("rung").notNull(),
    dimension: text("dimension").notNull(),
    atPercent: integer("at_percent").notNull(),
    blocking: boolean("blocking").notNull(),
    period: text("period").notNull(),
    usage: bigint("usage", { mode: "bigint" }).notNull(),
    limitValue: bigint("limit_value", { mode: "bigint" }).notNull(),
    reason: text("reason").notNull(),
    appliedAt: timestamp("applied_at", { withTimezone: true }).notNull(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull(),
  },
  (t) => [primaryKey({ name: "quota_degradation_state_pk", columns: [t.tenantId, t.scope] })],
);

/** Every rung change, applied or lifted, with the figures that caused it. Append-only. */
export const quotaDegradationHistory = pgTable(
  "quota_degradation_history",
  {
    id: bigint("id", { mode: "bigint" }).primaryKey().generatedAlwaysAsIdentity(),
    tenantId: text("tenant_id").notNull(),
    scope: text("scope").notNull(),
    action: text("action").$type<"APPLIED" | "LIFTED">().notNull(),
    fromRung: integer("from_rung"),
    toRung: integer("to_rung"),
    dimension: text("dimension").notNull(),
    atPercent: integer("at_percent").notNull(),
    period: text("period").notNull(),
    usage: bigint("usage", { mode: "bigint" }).notNull(),
    limitValue: bigint("limit_value", { mode: "bigint" }),
    reason: text("reason").notNull(),
    eventId: text("event_id").notNull(),
    at: timestamp("at", { withTimezone: true }).notNull(),
  },
  (t) => [index("quota_degradation_history_tenant_idx").on(t.tenantId, t.id)],
);

/**
 * The tenant-local day and month the quota lifecycle last saw for each tenant. A period reset
 * is the conditional move of this row from the old period to the new one, so `period.rolled`
 * is emitted once however many evaluators notice midnight together.
 */
export const quotaTenantPeriods = pgTable(
  "quota_tenant_periods",
  {
    tenantId: text("tenant_id").primaryKey(),
    timezone: text("timezone").notNull(),
    day: text("day").notNull(),
    month: text("month").notNull(),
    /** The next local midnight: the scan finds tenants due for a reset with this index. */
    dayEndsAt: timestamp("day_ends_at", { withTimezone: true }).notNull(),
    monthEndsAt: timestamp("month_ends_at", { withTimezone: true }).notNull(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull(),
  },
  (t) => [index("quota_tenant_periods_day_ends_idx").on(t.dayEndsAt)],
);

/** Drift between Redis quota counters and the ledger, found (and repaired) by reconciliation. */
export const usageCounterDrift = pgTable(
  "usage_counter_drift",
  {
    id: bigint("id", { mode: "bigint" }).primaryKey().generatedAlwaysAsIdentity(),
    tenantId: text("tenant_id").notNull(),
    scope: text("scope").notNull(),
    period: text("period").notNull(),
    periodKind: text("period_kind").$type<"day" | "month">().notNull(),
    redisTokens: bigint("redis_tokens", { mode: "bigint" }).notNull(),
    ledgerTokens: bigint("ledger_tokens", { mode: "bigint" }).notNull(),
    redisCostNano: bigint("redis_cost_nano", { mode: "bigint" }).notNull(),
    ledgerCostNano: bigint("ledger_cost_nano", { mode: "bigint" }).notNull(),
    /** redis − ledger: positive means Redis counted usage the ledger does not have. */
    tokenDrift: bigint("token_drift", { mode: "bigint" }).notNull(),
    costDriftNano: bigint("cost_drift_nano", { mode: "bigint" }).notNull(),
    repaired: boolean("repaired").notNull(),
    foundAt: timestamp("found_at", { withTimezone: true }).notNull(),
  },
  (t) => [index("usage_counter_drift_tenant_idx").on(t.tenantId, t.id)],
);
