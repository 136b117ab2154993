import { sql } from "drizzle-orm";
import { bigint, index, jsonb, pgTable, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";

/**
 * The transactional outbox. An event is inserted in the same transaction as the change that
 * caused it; a relay then publishes it (GraphQL subscriptions via Redis pub/sub, webhooks).
 * `id` (evt_…) is the stable event id receivers deduplicate on. Rows are never updated except
 * by the relay, which sets `publishedAt` and `deliverySeq` together.
 *
 * `seq` is insertion order only: identity values are drawn at INSERT, so concurrent transactions
 * can commit them out of order (seq 7 visible while seq 6 is still in flight), and a reader
 * paging by `seq` would step over 6 for good. The replay cursor is therefore `deliverySeq`,
 * assigned by the relay under a transaction-scoped advisory lock in the order rows become
 * visible to it: max + 1, max + 2, … with no gaps. A row without one is not yet published and
 * is not shown by `quotaEvents`.
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
    deliverySeq: bigint("delivery_seq", { mode: "bigint" }),
  },
  (t) => [
    index("outbox_unpublished_idx").on(t.seq).where(sql`published_at IS NULL`),
    index("outbox_tenant_seq_idx").on(t.tenantId, t.seq),
    uniqueIndex("outbox_delivery_seq_idx").on(t.deliverySeq),
    index("outbox_tenant_delivery_seq_idx").on(t.tenantId, t.deliverySeq),
  ],
);
