import { and, asc, eq, gt, inArray, isNull, lte, sql, type SQL } from "drizzle-orm";
import type { Db } from "./db.js";
import { outboxEvents, tenants } from "./schema/index.js";
import type { NewQuotaEvent, QuotaEvent, QuotaEventType } from "../../domain/events/types.js";
import { completeEvent, type Outbox, type OutboxRelayStore, type PublishedQuotaEvent } from "../../domain/events/outbox.js";
import type { QuotaEventReader } from "../../domain/events/quota-events.service.js";
import { systemClock, type Clock } from "../../lib/clock.js";

/** The transaction handle drizzle passes to `db.transaction` callbacks: what producers hand to `append`. */
export type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];
type Conn = Db | Tx;
type OutboxRow = typeof outboxEvents.$inferSelect;

/**
 * Serialises relays across every process on this database: the relay that assigns deliverySeq
 * holds it for the length of its transaction. Advisory locks are per database, so test
 * databases on one server do not contend.
 */
const RELAY_LOCK_KEY = 7_242_004;

function eventFromRow(r: OutboxRow): QuotaEvent {
  return {
    id: r.id,
    seq: r.seq,
    type: r.type as QuotaEventType,
    tenantId: r.tenantId,
    scope: r.scope,
    period: r.period,
    payload: r.payload,
    occurredAt: r.occurredAt,
  };
}

function publishedFromRow(r: OutboxRow): PublishedQuotaEvent {
  return { ...eventFromRow(r), deliverySeq: r.deliverySeq!, publishedAt: r.publishedAt! };
}

/** Raw-SQL rows across drivers (node-postgres and PGlite both answer `{ rows }`). */
async function rowsOf<T>(conn: Conn, query: SQL): Promise<T[]> {
  return ((await conn.execute(query)) as unknown as { rows: T[] }).rows;
}

/**
 * Inserts events on `conn` (the caller's transaction, or the pool for a standalone append).
 * An event whose id is already stored is not inserted again and the stored one is returned:
 * a producer that derives ids deterministically (e.g. from scope, period and threshold) gets
 * idempotent appends for free.
 */
export async function appendOutboxEvents(conn: Conn, events: NewQuotaEvent[], now: Date): Promise<QuotaEvent[]> {
  if (events.length === 0) return [];
  const complete = events.map((e) => completeEvent(e, now));
  const rows = complete.map(({ seq: _seq, ...e }) => e);
  const inserted = await conn.insert(outboxEvents).values(rows).onConflictDoNothing({ target: outboxEvents.id }).returning();
  // Matched by id: RETURNING promises no order, and conflicting ids return nothing.
  const byId = new Map(inserted.map((r) => [r.id, r]));
  const missing = complete.filter((e) => !byId.has(e.id)).map((e) => e.id);
  if (missing.length > 0) {
    for (const r of await conn.select().from(outboxEvents).where(inArray(outboxEvents.id, missing))) byId.set(r.id, r);
  }
  return complete.map((e) => eventFromRow(byId.get(e.id)!));
}

export class PostgresOutbox implements Outbox<Tx>, QuotaEventReader, OutboxRelayStore {
  private readonly clock: Clock;

  constructor(
    private readonly db: Db,
    opts: { clock?: Clock } = {},
  ) {
    this.clock = opts.clock ?? systemClock;
  }

  append(event: NewQuotaEvent): Promise<QuotaEvent>;
  append(tx: Tx, event: NewQuotaEvent): Promise<QuotaEvent>;
  async append(a: Tx | NewQuotaEvent, b?: NewQuotaEvent): Promise<QuotaEvent> {
    const [conn, event] = b === undefined ? [this.db, a as NewQuotaEvent] : [a as Tx, b];
    return (await appendOutboxEvents(conn, [event], this.clock.now()))[0]!;
  }

  appendMany(tx: Tx | null, events: NewQuotaEvent[]): Promise<QuotaEvent[]> {
    return appendOutboxEvents(tx ?? this.db, events, this.clock.now());
  }

  // ── reading published events ──

  async published(q: { tenantId: string | null; after: bigint; upTo?: bigint | null; limit: number }): Promise<PublishedQuotaEvent[]> {
    const conds = [gt(outboxEvents.deliverySeq, q.after)];
    if (q.upTo !== undefined && q.upTo !== null) conds.push(lte(outboxEvents.deliverySeq, q.upTo));
    if (q.tenantId !== null) conds.push(eq(outboxEvents.tenantId, q.tenantId));
    const rows = await this.db
      .select()
      .from(outboxEvents)
      .where(and(...conds))
      .orderBy(asc(outboxEvents.deliverySeq))
      .limit(q.limit);
    return rows.map(publishedFromRow);
  }

  async lastDeliverySeq(): Promise<bigint> {
    const [r] = await this.db.select({ max: sql<string>`coalesce(max(${outboxEvents.deliverySeq}), 0)::text` }).from(outboxEvents);
    return BigInt(r!.max);
  }

  async tenantExists(tenantId: string): Promise<boolean> {
    const rows = await this.db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)).limit(1);
    return rows.length > 0;
  }

  // ── the relay ──

  async hasUnpublished(): Promise<boolean> {
    const rows = await this.db.select({ seq: outboxEvents.seq }).from(outboxEvents).where(isNull(outboxEvents.publishedAt)).limit(1);
    return rows.length > 0;
  }

  /**
   * Why deliverySeq and not `seq`: see schema/events.ts. Under the lock, each relay transaction
   * sees every earlier relay's commit (READ COMMITTED: the numbering statement's snapshot is
   * taken after the lock is granted), so `max + row_number()` continues the sequence with no
   * gap and no reuse, and a row that commits late simply gets a later number. Readers page by
   * deliverySeq and never see a number appear behind their cursor.
   *
   * The webhook deliveries are created in the same transaction: an event is published exactly
   * when each matching endpoint has its delivery row, never one without the other.
   */
  async publishBatch(limit: number): Promise<{ events: PublishedQuotaEvent[]; deliveries: number } | null> {
    return this.db.transaction(async (tx) => {
      const [lock] = await rowsOf<{ locked: boolean }>(tx, sql`SELECT pg_try_advisory_xact_lock(${RELAY_LOCK_KEY}) AS locked`);
      if (!lock?.locked) return null;
      const numbered = await rowsOf<{ seq: string }>(
        tx,
        sql`WITH pending AS (
              SELECT seq FROM outbox_events WHERE published_at IS NULL ORDER BY seq LIMIT ${limit}
            ), numbered AS (
              SELECT seq, (SELECT coalesce(max(delivery_seq), 0) FROM outbox_events) + row_number() OVER (ORDER BY seq) AS delivery_seq
              FROM pending
            )
            UPDATE outbox_events o SET delivery_seq = n.delivery_seq, published_at = now()
            FROM numbered n WHERE o.seq = n.seq
            RETURNING o.seq::text AS seq`,
      );
      if (numbered.length === 0) return { events: [], deliveries: 0 };
      const seqs = numbered.map((r) => BigInt(r.seq));
      const rows = await tx.select().from(outboxEvents).where(inArray(outboxEvents.seq, seqs)).orderBy(asc(outboxEvents.deliverySeq));
      const events = rows.map(publishedFromRow);
      const from = events[0]!.deliverySeq;
      const to = events[events.length - 1]!.deliverySeq;
      const created = await rowsOf<{ id: string }>(
        tx,
        sql`INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type)
            SELECT 'whd_' || replace(gen_random_uuid()::text, '-', ''), e.id, o.id, o.type
            FROM outbox_events o
            JOIN webhook_endpoints e
              ON e.status = 'ACTIVE'
             AND (e.tenant_id IS NULL OR e.tenant_id = o.tenant_id)
             AND (e.event_types IS NULL OR o.type = ANY (e.event_types))
            WHERE o.delivery_seq BETWEEN ${from.toString()}::bigint AND ${to.toString()}::bigint
            ORDER BY o.delivery_seq, e.id
            ON CONFLICT (endpoint_id, event_id) DO NOTHING
            RETURNING id`,
      );
      return { events, deliveries: created.length };
    });
  }
}
