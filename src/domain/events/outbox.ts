import type { NewQuotaEvent, QuotaEvent, QuotaEventType } from "./types.js";
import { badInput } from "../../lib/errors.js";
import { isIdOf, newId } from "../../lib/ids.js";

/**
 * The outbox port every event producer writes through (thresholds, degradation, sweeper,
 * reconciliation, key revocation, breakers, anomalies).
 *
 * Write the event in the SAME transaction as its cause, `append(tx, event)`: then the event
 * exists exactly when the change does, and the relay delivers it at least once. `append(event)`
 * (its own transaction) is for causes that are not a database change of ours, e.g. a Redis
 * breaker tripping. `Tx` is the storage adapter's transaction handle (drizzle's `tx` for the
 * Postgres adapter); the domain never looks inside it.
 */
export interface Outbox<Tx = unknown> {
  append(event: NewQuotaEvent): Promise<QuotaEvent>;
  append(tx: Tx, event: NewQuotaEvent): Promise<QuotaEvent>;
  appendMany(tx: Tx | null, events: NewQuotaEvent[]): Promise<QuotaEvent[]>;
}

export const QUOTA_EVENT_TYPES: readonly QuotaEventType[] = [
  "threshold.crossed",
  "threshold.resolved",
  "degradation.applied",
  "degradation.lifted",
  "budget.exhausted",
  "reservation.expired",
  "usage.overage",
  "period.rolled",
  "key.revoked",
  "breaker.opened",
  "breaker.closed",
  "anomaly.detected",
];

export function isQuotaEventType(v: string): v is QuotaEventType {
  return (QUOTA_EVENT_TYPES as readonly string[]).includes(v);
}

/** A published event: what subscribers, webhooks and `quotaEvents` see. */
export interface PublishedQuotaEvent extends QuotaEvent {
  /**
   * The replay cursor. Assigned by the relay, gap-free and in publication order, so a reader
   * paging `deliverySeq > after` never steps over an event that commits later (see schema/events.ts).
   */
  deliverySeq: bigint;
  publishedAt: Date;
}

const MAX_PAYLOAD_BYTES = 64 * 1024;

/**
 * Payload values as JSON can carry them: bigint (nano-USD, token totals) as decimal strings,
 * Dates as ISO-8601. Anything JSON cannot represent exactly is refused rather than silently
 * mangled (a NaN figure on a bill is worse than an error at the producer).
 */
export function toJsonValue(v: unknown, path: string): unknown {
  if (v === null || typeof v === "string" || typeof v === "boolean") return v;
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw badInput(path, "must be a finite number");
    return v;
  }
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Date) {
    if (Number.isNaN(v.getTime())) throw badInput(path, "is an invalid date");
    return v.toISOString();
  }
  if (Array.isArray(v)) return v.map((x, i) => toJsonValue(x, `${path}[${i}]`));
  if (typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (x !== undefined) out[k] = toJsonValue(x, `${path}.${k}`);
    }
    return out;
  }
  throw badInput(path, `cannot be stored in an event (${typeof v})`);
}

/**
 * Checks and completes a producer's event: known type, well-formed id (a producer may choose it,
 * e.g. deterministically, to make its own retries idempotent), JSON-safe payload. Throws
 * BAD_USER_INPUT naming the field: a producer bug, surfaced in its transaction, not at delivery.
 */
export function completeEvent(e: NewQuotaEvent, now: Date): QuotaEvent & { seq: 0n } {
  if (!isQuotaEventType(e.type)) throw badInput("event.type", `unknown event type "${e.type}"`);
  const id = e.id ?? newId("event");
  if (!isIdOf("event", id)) throw badInput("event.id", "must be an evt_… id");
  if (e.tenantId !== null && !isIdOf("tenant", e.tenantId)) throw badInput("event.tenantId", "must be a tenant id or null");
  const payload = toJsonValue(e.payload ?? {}, "event.payload") as Record<string, unknown>;
  if (Buffer.byteLength(JSON.stringify(payload)) > MAX_PAYLOAD_BYTES) {
    throw badInput("event.payload", `must be at most ${MAX_PAYLOAD_BYTES} bytes of JSON`);
  }
  return {
    id,
    seq: 0n,
    type: e.type,
    tenantId: e.tenantId,
    scope: e.scope ?? null,
    period: e.period ?? null,
    payload,
    occurredAt: e.occurredAt ?? now,
  };
}

/**
 * The opaque replay cursor of an event: base64url of its decimal deliverySeq, the same wrapping
 * as every other cursor of the API (src/graphql/types/pagination.ts), so a cursor taken from a
 * webhook body, a subscription or a page works as `quotaEvents(after:)` alike.
 */
export function eventCursor(deliverySeq: bigint): string {
  return Buffer.from(deliverySeq.toString(), "utf8").toString("base64url");
}

/** The JSON shape of an event everywhere it leaves the service (webhook `data`, pub/sub). */
export interface QuotaEventJson {
  id: string;
  type: string;
  tenantId: string | null;
  scope: string | null;
  period: string | null;
  occurredAt: string;
  cursor: string;
  payload: Record<string, unknown>;
}

export function quotaEventJson(e: PublishedQuotaEvent): QuotaEventJson {
  return {
    id: e.id,
    type: e.type,
    tenantId: e.tenantId,
    scope: e.scope,
    period: e.period,
    occurredAt: e.occurredAt.toISOString(),
    cursor: eventCursor(e.deliverySeq),
    payload: e.payload,
  };
}

/** What the relay needs from storage. Implemented by src/storage/postgres/outbox.repository.ts. */
export interface OutboxRelayStore {
  /** Cheap check, so an idle relay costs one indexed probe per tick. */
  hasUnpublished(): Promise<boolean>;
  /**
   * Publishes up to `limit` of the oldest unpublished events in one transaction, under a lock
   * only one relay holds at a time: assigns their deliverySeq, marks them published and creates
   * their webhook deliveries. Null when another relay holds the lock right now.
   */
  publishBatch(limit: number): Promise<{ events: PublishedQuotaEvent[]; deliveries: number } | null>;
}

/** Fan-out of published events to every replica's subscriptions (Redis pub/sub adapter). */
export interface QuotaEventPublisher {
  publish(events: PublishedQuotaEvent[]): Promise<void>;
}
