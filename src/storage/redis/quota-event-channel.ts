import type { Redis } from "ioredis";
import { subscribeOnEveryConnection, type RedisClient } from "./client.js";
import type { Logger } from "../../lib/logger.js";
import type { PublishedQuotaEvent, QuotaEventPublisher } from "../../domain/events/outbox.js";
import type { QuotaEventSource } from "../../domain/events/event-feed.js";
import type { QuotaEventType } from "../../domain/events/types.js";

/**
 * Published quota events across replicas: the relay PUBLISHes each committed batch as one
 * message; every replica's feed receives it. Pub/sub is at most once, which is fine here: the
 * feed notices a missed batch by the gap in deliverySeq and reads it from Postgres.
 *
 * One channel for every tenant (a replica's feed filters per subscriber), named after the
 * configured key prefix like the invalidation channel, so test runs and co-tenant deployments
 * sharing a Redis do not hear each other.
 */

interface WireEvent {
  id: string;
  seq: string;
  deliverySeq: string;
  type: string;
  tenantId: string | null;
  scope: string | null;
  period: string | null;
  payload: Record<string, unknown>;
  occurredAt: string;
  publishedAt: string;
}

function toWire(e: PublishedQuotaEvent): WireEvent {
  return {
    id: e.id,
    seq: e.seq.toString(),
    deliverySeq: e.deliverySeq.toString(),
    type: e.type,
    tenantId: e.tenantId,
    scope: e.scope,
    period: e.period,
    payload: e.payload,
    occurredAt: e.occurredAt.toISOString(),
    publishedAt: e.publishedAt.toISOString(),
  };
}

function fromWire(w: WireEvent): PublishedQuotaEvent {
  if (typeof w.id !== "string" || !/^\d+$/.test(w.deliverySeq) || !/^\d+$/.test(w.seq)) throw new Error("malformed event message");
  return {
    id: w.id,
    seq: BigInt(w.seq),
    deliverySeq: BigInt(w.deliverySeq),
    type: w.type as QuotaEventType,
    tenantId: w.tenantId ?? null,
    scope: w.scope ?? null,
    period: w.period ?? null,
    payload: w.payload ?? {},
    occurredAt: new Date(w.occurredAt),
    publishedAt: new Date(w.publishedAt),
  };
}

export class RedisQuotaEventChannel implements QuotaEventPublisher, QuotaEventSource {
  private readonly channel: string;
  private readonly listeners = new Set<(events: PublishedQuotaEvent[]) => void>();
  private readonly onMessage = (channel: string, message: string) => {
    if (channel !== this.channel) return;
    let events: PublishedQuotaEvent[];
    try {
      events = (JSON.parse(message) as WireEvent[]).map(fromWire);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "ignoring a malformed quota event message");
      return;
    }
    for (const l of this.listeners) l(events);
  };

  constructor(
    private readonly publisher: RedisClient,
    private readonly subscriber: Redis,
    keyPrefix: string,
    private readonly log: Logger,
  ) {
    this.channel = `${keyPrefix}quota-events`;
  }

  async start(): Promise<void> {
    this.subscriber.on("message", this.onMessage);
    // A batch published while disconnected is missed here; the feed finds the deliverySeq gap.
    await subscribeOnEveryConnection(this.subscriber, this.channel, this.log);
  }

  async stop(): Promise<void> {
    this.subscriber.off("message", this.onMessage);
    this.listeners.clear();
  }

  onEvents(listener: (events: PublishedQuotaEvent[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async publish(events: PublishedQuotaEvent[]): Promise<void> {
    if (events.length === 0) return;
    // PUBLISH channels are not prefixed by ioredis' keyPrefix; the prefix is in the name.
    await this.publisher.publish(this.channel, JSON.stringify(events.map(toWire)));
  }
}
