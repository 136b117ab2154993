import { bigint, index, integer, jsonb, pgTable, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";

/**
 * Abuse controls (issue #5): anomalies with their evidence, and the aggregated audit of
 * denials and degradations. Breaker state lives in Redis (the hot path reads it there); its
 * transitions are outbox events plus audit_log entries.
 */

export const anomalies = pgTable(
  "anomalies",
  {
    id: text("id").primaryKey(), // anm_…
    kind: text("kind").$type<"VOLUME_SPIKE" | "LARGE_REQUEST" | "PROMPT_VARIANT_STORM" | "AUTH_FAILURE_BURST">().notNull(),
    tenantId: text("tenant_id"),
    keyId: text("key_id"),
    /** The client address, for failed-auth bursts per source. */
    source: text("source"),
    /** The public key prefix (never a secret), for failed-auth bursts per key prefix. */
    keyPrefix: text("key_prefix"),
    detectedAt: timestamp("detected_at", { withTimezone: true }).notNull(),
    windowStart: timestamp("window_start", { withTimezone: true }).notNull(),
    windowEnd: timestamp("window_end", { withTimezone: true }).notNull(),
    evidence: jsonb("evidence").$type<Record<string, unknown>>().notNull(),
    action: text("action").$type<"NONE" | "DEGRADE" | "SUSPEND_KEY" | "THROTTLE">().notNull(),
    actionResult: text("action_result"),
  },
  (t) => [
    index("anomalies_detected_idx").on(t.detectedAt, t.id),
    index("anomalies_tenant_detected_idx").on(t.tenantId, t.detectedAt, t.id),
    index("anomalies_kind_detected_idx").on(t.kind, t.detectedAt, t.id),
  ],
);

/**
 * Denials and degradations, one row per minute and group (caller, tenant, key or presented
 * key prefix, client address, route, model, outcome, reason) with a count. Replicas add to a
 * row (`groupKey` is the group's hash) rather than each writing their own, so a flood of
 * denials is a handful of upserts, never a write per request and never dropped.
 */
export const decisionAudit = pgTable(
  "decision_audit",
  {
    id: bigint("id", { mode: "bigint" }).primaryKey().generatedAlwaysAsIdentity(),
    minute: timestamp("minute", { withTimezone: true }).notNull(),
    groupKey: text("group_key").notNull(),
    actorKind: text("actor_kind").notNull(),
    actorId: text("actor_id").notNull(),
    tenantId: text("tenant_id"),
    keyId: text("key_id"),
    keyPrefix: text("key_prefix"),
    source: text("source"),
    route: text("route").notNull(),
    model: text("model").notNull(),
    outcome: text("outcome").$type<"DENY" | "ALLOW_DEGRADED">().notNull(),
    reason: text("reason").notNull(),
    count: integer("count").notNull(),
    inputTokens: bigint("input_tokens", { mode: "bigint" }).notNull(),
    outputTokens: bigint("output_tokens", { mode: "bigint" }).notNull(),
    lastAt: timestamp("last_at", { withTimezone: true }).notNull(),
    message: text("message").notNull(),
  },
  (t) => [
    uniqueIndex("decision_audit_group_uq").on(t.minute, t.groupKey),
    index("decision_audit_minute_idx").on(t.minute, t.id),
    index("decision_audit_tenant_minute_idx").on(t.tenantId, t.minute, t.id),
  ],
);
