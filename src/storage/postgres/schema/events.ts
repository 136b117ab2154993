import { sql } from "drizzle-orm";
import { bigint, index, jsonb, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/**
 * The transactional outbox. An event is inserted in the same transaction as the change that
 * caused it; a relay then publishes it (GraphQL subscriptions via Redis pub/sub, webhooks).
 * `seq` is the replay cursor for `quotaEvents(after:)`; `id` (evt_…) is the stable event id
 * receivers deduplicate on. Rows are never updated except `publishedAt` by the relay.
 */
export const outboxEvents = pgTable(
  "outbox_events",
  {
    seq: bigint("seq", { mode: "bigint" }).primaryKey().generatedAlwaysAsIdentity(),
    id: text("id").notNull().unique(),
    type: text("type").notNull(),
    tenantId: text("tenant_id"),
    /** e.g. "tenant", "key:key_…" */
    scope: text("scope"),
    /** e.g. "2026-11-21" or "2026-11" (tenant-local), when the event belongs to a period. */
    period: text("period"),
    payload: jsonb("payload").$type<Record<string, unknown>>().notNull(),
    occurredAt: timestamp("occurred_at", { withTimezone: true }).notNull().defaultNow(),
    publishedAt: timestamp("published_at", { withTimezone: true }),
  },
  (t) => [index("outbox_unpublished_idx").on(t.seq).where(sql`published_at IS NULL`), index("outbox_tenant_seq_idx").on(t.tenantId, t.seq)],
);
