import { sql } from "drizzle-orm";
import { bigint, index, integer, pgTable, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";
import { tenants } from "./tenancy.js";

/**
 * Webhook endpoints, their deliveries and every attempt (Standard Webhooks).
 *
 * Secrets are stored sealed (AES-256-GCM, key derived from WEBHOOK_SECRET_KEY, the endpoint id
 * as associated data), never in plain text: the signer needs the secret itself, so a hash would
 * not do. During a rotation the previous secret stays until `previous_secret_expires_at` and
 * both sign. A deleted endpoint keeps its row (deliveries and attempts refer to it) but loses
 * its secrets.
 */
export const webhookEndpoints = pgTable(
  "webhook_endpoints",
  {
    id: text("id").primaryKey(), // wh_…
    /** Null: every tenant's events (ADMIN only). */
    tenantId: text("tenant_id").references(() => tenants.id),
    url: text("url").notNull(),
    /** Null: every event type. */
    eventTypes: text("event_types").array(),
    /** ACTIVE | DISABLED (e.g. the receiver answered 410 Gone) | DELETED */
    status: text("status").notNull().default("ACTIVE"),
    disabledReason: text("disabled_reason"),
    secretSealed: text("secret_sealed"),
    previousSecretSealed: text("previous_secret_sealed"),
    previousSecretExpiresAt: timestamp("previous_secret_expires_at", { withTimezone: true }),
    secretRotatedAt: timestamp("secret_rotated_at", { withTimezone: true }),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("webhook_endpoints_tenant_idx").on(t.tenantId, t.id)],
);

/**
 * One event for one endpoint. Created by the outbox relay in the transaction that publishes the
 * event (so every matching endpoint gets exactly one delivery row), then attempted until
 * DELIVERED, FAILED (attempts exhausted or 410) or CANCELLED (endpoint disabled or deleted).
 *
 * A worker claims a due delivery by pushing `next_attempt_at` past its attempt deadline: if the
 * worker dies mid-attempt the row simply becomes due again, and another worker re-sends it with
 * the same webhook-id. `lease_token` tells a late result from a worker whose claim was taken over.
 */
export const webhookDeliveries = pgTable(
  "webhook_deliveries",
  {
    seq: bigint("seq", { mode: "bigint" }).notNull().generatedAlwaysAsIdentity(),
    id: text("id").primaryKey(), // whd_…
    endpointId: text("endpoint_id")
      .notNull()
      .references(() => webhookEndpoints.id),
    /** The outbox event id (evt_…), sent as webhook-id. */
    eventId: text("event_id").notNull(),
    eventType: text("event_type").notNull(),
    /** PENDING | DELIVERED | FAILED | CANCELLED */
    status: text("status").notNull().default("PENDING"),
    attemptCount: integer("attempt_count").notNull().default(0),
    nextAttemptAt: timestamp("next_attempt_at", { withTimezone: true }).notNull().defaultNow(),
    leaseToken: text("lease_token"),
    lastStatusCode: integer("last_status_code"),
    lastError: text("last_error"),
    deliveredAt: timestamp("delivered_at", { withTimezone: true }),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex("webhook_deliveries_endpoint_event_idx").on(t.endpointId, t.eventId),
    uniqueIndex("webhook_deliveries_seq_idx").on(t.seq),
    index("webhook_deliveries_endpoint_seq_idx").on(t.endpointId, t.seq),
    index("webhook_deliveries_due_idx").on(t.nextAttemptAt).where(sql`status = 'PENDING'`),
  ],
);

/**
 * Every attempt, written when it starts (so an attempt cut short by a crash is visible too) and
 * completed with its result.
 */
export const webhookAttempts = pgTable(
  "webhook_attempts",
  {
    id: bigint("id", { mode: "bigint" }).primaryKey().generatedAlwaysAsIdentity(),
    deliveryId: text("delivery_id")
      .notNull()
      .references(() => webhookDeliveries.id),
    attempt: integer("attempt").notNull(),
    startedAt: timestamp("started_at", { withTimezone: true }).notNull(),
    /** When the claim lapses: an attempt still STARTED after this was interrupted. */
    deadlineAt: timestamp("deadline_at", { withTimezone: true }).notNull(),
    finishedAt: timestamp("finished_at", { withTimezone: true }),
    durationMs: integer("duration_ms"),
    statusCode: integer("status_code"),
    error: text("error"),
    /** STARTED | SUCCEEDED | FAILED | GONE */
    outcome: text("outcome").notNull().default("STARTED"),
    /** When the next attempt is due after this one failed; null when none follows. */
    nextAttemptAt: timestamp("next_attempt_at", { withTimezone: true }),
  },
  (t) => [uniqueIndex("webhook_attempts_delivery_attempt_idx").on(t.deliveryId, t.attempt)],
);
