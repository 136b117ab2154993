import { bigint, boolean, index, pgTable, text, timestamp, unique } from "drizzle-orm/pg-core";

/**
 * The usage ledger: the source of truth for billing. Append-only (a trigger in the migration
 * refuses UPDATE and DELETE). One COMMIT row per committed reservation and at most one EXPIRY
 * row when a reservation's holds were returned by the sweeper; a late commit after expiry is
 * still a COMMIT row, so no usage is ever dropped.
 * `periodDay`/`periodMonth` are the tenant-local periods the reservation counted against:
 * the Redis quota counters for a period are re-seeded from exactly these rows.
 */
export const usageLedger = pgTable(
  "usage_ledger",
  {
    id: bigint("id", { mode: "bigint" }).primaryKey().generatedAlwaysAsIdentity(),
    reservationId: text("reservation_id").notNull(),
    entry: text("entry").$type<"COMMIT" | "EXPIRY">().notNull(),
    tenantId: text("tenant_id").notNull(),
    keyId: text("key_id").notNull(),
    subject: text("subject"),
    route: text("route").notNull(),
    model: text("model").notNull(),
    status: text("status").$type<"SUCCEEDED" | "FAILED" | "CANCELLED" | "EXPIRED">().notNull(),
    inputTokens: bigint("input_tokens", { mode: "bigint" }).notNull(),
    outputTokens: bigint("output_tokens", { mode: "bigint" }).notNull(),
    reservedInputTokens: bigint("reserved_input_tokens", { mode: "bigint" }).notNull(),
    reservedOutputTokens: bigint("reserved_output_tokens", { mode: "bigint" }).notNull(),
    costNano: bigint("cost_nano", { mode: "bigint" }).notNull(),
    overage: boolean("overage").notNull().default(false),
    periodDay: text("period_day").notNull(),
    periodMonth: text("period_month").notNull(),
    reservedAt: timestamp("reserved_at", { withTimezone: true }).notNull(),
    recordedAt: timestamp("recorded_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    unique("usage_ledger_reservation_entry_uq").on(t.reservationId, t.entry),
    index("usage_ledger_tenant_month_idx").on(t.tenantId, t.periodMonth),
    index("usage_ledger_tenant_day_idx").on(t.tenantId, t.periodDay),
  ],
);

/**
 * Reservations, written behind the hot path (batched, never awaited by checkAndReserve).
 * They let a commit settle a reservation whose Redis record was lost (flush, failover,
 * or a fail-open decision taken while Redis was down), so no usage is lost.
 */
export const reservations = pgTable(
  "reservations",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull(),
    keyId: text("key_id").notNull(),
    subject: text("subject"),
    route: text("route").notNull(),
    model: text("model").notNull(),
    inputTokens: bigint("input_tokens", { mode: "bigint" }).notNull(),
    outputTokens: bigint("output_tokens", { mode: "bigint" }).notNull(),
    costNano: bigint("cost_nano", { mode: "bigint" }).notNull(),
    inputNanoPerToken: bigint("input_nano_per_token", { mode: "bigint" }).notNull(),
    outputNanoPerToken: bigint("output_nano_per_token", { mode: "bigint" }).notNull(),
    periodDay: text("period_day").notNull(),
    periodMonth: text("period_month").notNull(),
    failOpen: boolean("fail_open").notNull().default(false),
    /** Which Redis counters the reservation holds (opaque to Postgres), to settle it after a flush. */
    settle: text("settle").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull(),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
  },
  (t) => [index("reservations_expires_idx").on(t.expiresAt), index("reservations_created_idx").on(t.createdAt)],
);
