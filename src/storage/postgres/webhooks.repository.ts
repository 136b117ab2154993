import { and, asc, desc, eq, gt, inArray, lt, ne, sql, type SQL } from "drizzle-orm";
import type { Db } from "./db.js";
import { tenants, webhookAttempts, webhookDeliveries, webhookEndpoints } from "./schema/index.js";
import type { QuotaEventType } from "../../domain/events/types.js";
import type { WebhookRepository } from "../../domain/events/webhooks.service.js";
import type {
  WebhookAttempt,
  WebhookAttemptOutcome,
  WebhookDelivery,
  WebhookDeliveryStatus,
  WebhookEndpoint,
  WebhookEndpointStatus,
} from "../../domain/events/webhooks.types.js";
import type { AttemptResult, ClaimedDelivery, WebhookDeliveryStore } from "../../domain/events/webhook-delivery.js";

type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];
type Conn = Db | Tx;
type EndpointRow = typeof webhookEndpoints.$inferSelect;
type DeliveryRow = typeof webhookDeliveries.$inferSelect;
type AttemptRow = typeof webhookAttempts.$inferSelect;

/** Error texts are the receiver's words or a network message: bounded before they are stored. */
const MAX_ERROR_LENGTH = 1_000;
const clip = (s: string | null) => (s === null ? null : s.length > MAX_ERROR_LENGTH ? `${s.slice(0, MAX_ERROR_LENGTH - 1)}…` : s);

function endpointFromRow(r: EndpointRow): WebhookEndpoint {
  return {
    id: r.id,
    tenantId: r.tenantId,
    url: r.url,
    eventTypes: (r.eventTypes as QuotaEventType[] | null) ?? null,
    status: r.status as WebhookEndpointStatus,
    disabledReason: r.disabledReason,
    secretRotatedAt: r.secretRotatedAt,
    previousSecretExpiresAt: r.previousSecretSealed === null ? null : r.previousSecretExpiresAt,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}

function attemptFromRow(r: AttemptRow): WebhookAttempt {
  return {
    attempt: r.attempt,
    startedAt: r.startedAt,
    deadlineAt: r.deadlineAt,
    finishedAt: r.finishedAt,
    durationMs: r.durationMs,
    statusCode: r.statusCode,
    error: r.error,
    outcome: r.outcome as WebhookAttemptOutcome,
    nextAttemptAt: r.nextAttemptAt,
  };
}

function deliveryFromRow(r: DeliveryRow, attempts: WebhookAttempt[]): WebhookDelivery {
  return {
    id: r.id,
    seq: r.seq,
    endpointId: r.endpointId,
    eventId: r.eventId,
    eventType: r.eventType,
    status: r.status as WebhookDeliveryStatus,
    attemptCount: r.attemptCount,
    nextAttemptAt: r.status === "PENDING" ? r.nextAttemptAt : null,
    lastStatusCode: r.lastStatusCode,
    lastError: r.lastError,
    deliveredAt: r.deliveredAt,
    createdAt: r.createdAt,
    attempts,
  };
}

async function rowsOf<T>(conn: Conn, query: SQL): Promise<T[]> {
  return ((await conn.execute(query)) as unknown as { rows: T[] }).rows;
}

const asDate = (v: Date | string) => (v instanceof Date ? v : new Date(v));
const asObject = (v: unknown) => (typeof v === "string" ? (JSON.parse(v) as Record<string, unknown>) : (v as Record<string, unknown>));

interface ClaimRow {
  delivery_id: string;
  endpoint_id: string;
  attempt: number;
  started_at: Date | string;
  deadline_at: Date | string;
  url: string;
  secret_sealed: string | null;
  previous_secret_sealed: string | null;
  event_id: string;
  event_seq: string;
  event_type: string;
  tenant_id: string | null;
  scope: string | null;
  period: string | null;
  payload: unknown;
  occurred_at: Date | string;
  published_at: Date | string;
  delivery_seq: string;
}

export class PostgresWebhookRepository implements WebhookRepository, WebhookDeliveryStore {
  constructor(private readonly db: Db) {}

  // ── endpoints ──

  async tenantExists(tenantId: string): Promise<boolean> {
    const rows = await this.db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)).limit(1);
    return rows.length > 0;
  }

  async insert(e: WebhookEndpoint, sealedSecret: string): Promise<WebhookEndpoint> {
    const [row] = await this.db
      .insert(webhookEndpoints)
      .values({
        id: e.id,
        tenantId: e.tenantId,
        url: e.url,
        eventTypes: e.eventTypes,
        status: e.status,
        secretSealed: sealedSecret,
        createdAt: e.createdAt,
        updatedAt: e.updatedAt,
      })
      .returning();
    return endpointFromRow(row!);
  }

  async findById(id: string): Promise<WebhookEndpoint | null> {
    const [row] = await this.db.select().from(webhookEndpoints).where(eq(webhookEndpoints.id, id)).limit(1);
    return row ? endpointFromRow(row) : null;
  }

  async rotateSecret(id: string, sealedSecret: string, previousExpiresAt: Date | null, at: Date): Promise<WebhookEndpoint | null> {
    const [row] = await this.db
      .update(webhookEndpoints)
      .set({
        // The statement reads the row before writing it: the old current secret becomes previous.
        previousSecretSealed: previousExpiresAt === null ? null : sql`${webhookEndpoints.secretSealed}`,
        previousSecretExpiresAt: previousExpiresAt,
        secretSealed: sealedSecret,
        secretRotatedAt: at,
        updatedAt: at,
      })
      .where(and(eq(webhookEndpoints.id, id), ne(webhookEndpoints.status, "DELETED")))
      .returning();
    return row ? endpointFromRow(row) : null;
  }

  async markDeleted(id: string, at: Date): Promise<WebhookEndpoint | null> {
    return this.db.transaction(async (tx) => {
      const [row] = await tx
        .update(webhookEndpoints)
        .set({ status: "DELETED", secretSealed: null, previousSecretSealed: null, previousSecretExpiresAt: null, updatedAt: at })
        .where(and(eq(webhookEndpoints.id, id), ne(webhookEndpoints.status, "DELETED")))
        .returning();
      if (!row) return null;
      await tx
        .update(webhookDeliveries)
        .set({ status: "CANCELLED", lastError: "endpoint deleted", leaseToken: null, updatedAt: at })
        .where(and(eq(webhookDeliveries.endpointId, id), eq(webhookDeliveries.status, "PENDING")));
      return endpointFromRow(row);
    });
  }

  async list(q: { tenantId: string | null; afterId: string | null; limit: number }): Promise<WebhookEndpoint[]> {
    const conds = [ne(webhookEndpoints.status, "DELETED")];
    if (q.tenantId !== null) conds.push(eq(webhookEndpoints.tenantId, q.tenantId));
    if (q.afterId !== null) conds.push(gt(webhookEndpoints.id, q.afterId));
    const rows = await this.db
      .select()
      .from(webhookEndpoints)
      .where(and(...conds))
      .orderBy(asc(webhookEndpoints.id))
      .limit(q.limit);
    return rows.map(endpointFromRow);
  }

  async deliveries(endpointId: string, beforeSeq: bigint | null, limit: number): Promise<WebhookDelivery[]> {
    const conds = [eq(webhookDeliveries.endpointId, endpointId)];
    if (beforeSeq !== null) conds.push(lt(webhookDeliveries.seq, beforeSeq));
    const rows = await this.db
      .select()
      .from(webhookDeliveries)
      .where(and(...conds))
      .orderBy(desc(webhookDeliveries.seq))
      .limit(limit);
    if (rows.length === 0) return [];
    const attempts = await this.db
      .select()
      .from(webhookAttempts)
      .where(inArray(webhookAttempts.deliveryId, rows.map((r) => r.id)))
      .orderBy(asc(webhookAttempts.deliveryId), asc(webhookAttempts.attempt));
    const byDelivery = new Map<string, WebhookAttempt[]>();
    for (const a of attempts) {
      const list = byDelivery.get(a.deliveryId) ?? [];
      list.push(attemptFromRow(a));
      byDelivery.set(a.deliveryId, list);
    }
    return rows.map((r) => deliveryFromRow(r, byDelivery.get(r.id) ?? []));
  }

  // ── delivery (the dispatcher's store) ──

  /**
   * Claims due deliveries with SKIP LOCKED (workers never wait for each other, never take the
   * same row), pushes each one's next_attempt_at to the claim deadline, and logs the attempt as
   * STARTED, all in one transaction. A claim is thus also the crash recovery: if this worker
   * dies, the row is due again at the deadline and the next claim re-sends it.
   */
  async claimDue(q: { limit: number; leaseMs: number; leaseToken: string }): Promise<ClaimedDelivery[]> {
    return this.db.transaction(async (tx) => {
      const rows = await rowsOf<ClaimRow>(
        tx,
        sql`WITH due AS (
              SELECT d.id FROM webhook_deliveries d
              JOIN webhook_endpoints e ON e.id = d.endpoint_id
              WHERE d.status = 'PENDING' AND d.next_attempt_at <= now() AND e.status = 'ACTIVE'
              ORDER BY d.next_attempt_at
              LIMIT ${q.limit}
              FOR UPDATE OF d SKIP LOCKED
            )
            UPDATE webhook_deliveries d
               SET attempt_count = d.attempt_count + 1,
                   next_attempt_at = now() + ${q.leaseMs} * interval '1 millisecond',
                   lease_token = ${q.leaseToken},
                   updated_at = now()
              FROM due, webhook_endpoints e, outbox_events o
             WHERE d.id = due.id AND e.id = d.endpoint_id AND o.id = d.event_id
         RETURNING d.id AS delivery_id, d.endpoint_id, d.attempt_count AS attempt, now() AS started_at,
                   d.next_attempt_at AS deadline_at, e.url, e.secret_sealed,
                   CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret_sealed END AS previous_secret_sealed,
                   o.id AS event_id, o.seq::text AS event_seq, o.type AS event_type, o.tenant_id, o.scope, o.period,
                   o.payload, o.occurred_at, o.published_at, o.delivery_seq::text AS delivery_seq`,
      );
      if (rows.length === 0) return [];
      await tx.insert(webhookAttempts).values(
        rows.map((r) => ({ deliveryId: r.delivery_id, attempt: Number(r.attempt), startedAt: asDate(r.started_at), deadlineAt: asDate(r.deadline_at) })),
      );
      return rows.map(
        (r): ClaimedDelivery => ({
          deliveryId: r.delivery_id,
          endpointId: r.endpoint_id,
          url: r.url,
          attempt: Number(r.attempt),
          leaseToken: q.leaseToken,
          startedAt: asDate(r.started_at),
          deadlineAt: asDate(r.deadline_at),
          // Only ACTIVE endpoints are claimed, and only DELETED ones lose their secret.
          secretSealed: r.secret_sealed ?? "",
          previousSecretSealed: r.previous_secret_sealed,
          event: {
            id: r.event_id,
            seq: BigInt(r.event_seq),
            type: r.event_type as QuotaEventType,
            tenantId: r.tenant_id,
            scope: r.scope,
            period: r.period,
            payload: asObject(r.payload),
            occurredAt: asDate(r.occurred_at),
            publishedAt: asDate(r.published_at),
            deliverySeq: BigInt(r.delivery_seq),
          },
        }),
      );
    });
  }

  private finishAttempt(tx: Tx, c: ClaimedDelivery, r: AttemptResult, outcome: WebhookAttemptOutcome, nextAttemptAt: SQL | null) {
    return tx
      .update(webhookAttempts)
      .set({
        finishedAt: sql`now()`,
        durationMs: Math.round(r.durationMs),
        statusCode: r.statusCode,
        error: clip(r.error),
        outcome,
        nextAttemptAt,
      })
      .where(and(eq(webhookAttempts.deliveryId, c.deliveryId), eq(webhookAttempts.attempt, c.attempt)));
  }

  async succeeded(c: ClaimedDelivery, r: AttemptResult): Promise<void> {
    await this.db.transaction(async (tx) => {
      await this.finishAttempt(tx, c, r, "SUCCEEDED", null);
      // A success counts even if this worker's claim was taken over meanwhile: the receiver has it.
      await tx
        .update(webhookDeliveries)
        .set({ status: "DELIVERED", deliveredAt: sql`now()`, lastStatusCode: r.statusCode, lastError: null, leaseToken: null, updatedAt: sql`now()` })
        .where(and(eq(webhookDeliveries.id, c.deliveryId), eq(webhookDeliveries.status, "PENDING")));
    });
  }

  async failed(c: ClaimedDelivery, r: AttemptResult, retryInMs: number | null): Promise<void> {
    await this.db.transaction(async (tx) => {
      const next = retryInMs === null ? null : sql`now() + ${Math.round(retryInMs)} * interval '1 millisecond'`;
      await this.finishAttempt(tx, c, r, "FAILED", next);
      // Only the current claim reschedules: a result that arrives after another worker took the
      // delivery over must not move that worker's schedule.
      await tx
        .update(webhookDeliveries)
        .set({
          lastStatusCode: r.statusCode,
          lastError: clip(r.error),
          leaseToken: null,
          updatedAt: sql`now()`,
          ...(next === null ? { status: "FAILED" } : { nextAttemptAt: next }),
        })
        .where(and(eq(webhookDeliveries.id, c.deliveryId), eq(webhookDeliveries.status, "PENDING"), eq(webhookDeliveries.leaseToken, c.leaseToken)));
    });
  }

  async gone(c: ClaimedDelivery, r: AttemptResult): Promise<void> {
    await this.db.transaction(async (tx) => {
      await this.finishAttempt(tx, c, r, "GONE", null);
      await tx
        .update(webhookEndpoints)
        .set({ status: "DISABLED", disabledReason: "the receiver answered 410 Gone", updatedAt: sql`now()` })
        .where(and(eq(webhookEndpoints.id, c.endpointId), eq(webhookEndpoints.status, "ACTIVE")));
      await tx
        .update(webhookDeliveries)
        .set({ status: "FAILED", lastStatusCode: r.statusCode, lastError: clip(r.error) ?? "410 Gone", leaseToken: null, updatedAt: sql`now()` })
        .where(and(eq(webhookDeliveries.id, c.deliveryId), eq(webhookDeliveries.status, "PENDING")));
      await tx
        .update(webhookDeliveries)
        .set({ status: "CANCELLED", lastError: "endpoint disabled: the receiver answered 410 Gone", leaseToken: null, updatedAt: sql`now()` })
        .where(and(eq(webhookDeliveries.endpointId, c.endpointId), eq(webhookDeliveries.status, "PENDING")));
    });
  }
}
