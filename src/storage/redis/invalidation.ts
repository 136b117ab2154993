import type { Redis } from "ioredis";
import { subscribeOnEveryConnection, type RedisClient } from "./client.js";
import type { Logger } from "../../lib/logger.js";

/**
 * Cache invalidation across replicas. An operator change publishes `<kind>:<id>` on one
 * channel; every replica drops that entry from its in-process caches. A reconnected subscriber
 * drops everything (it may have missed messages), and entries also expire on their own
 * (CACHE_TTL_MS) as a last safety net.
 */
export type InvalidationKind = "tier" | "tenant" | "apiKey" | "credential" | "model" | "all";

export interface InvalidationMessage {
  kind: InvalidationKind;
  id: string;
}

export class InvalidationBus {
  private readonly listeners = new Set<(m: InvalidationMessage) => void>();
  private readonly channel: string;

  constructor(
    private readonly publisher: RedisClient,
    private readonly subscriber: Redis,
    keyPrefix: string,
    private readonly log: Logger,
  ) {
    // The prefix keeps test runs (and co-tenant deployments) from hearing each other.
    this.channel = `${keyPrefix}invalidate`;
  }

  async start(): Promise<void> {
    this.subscriber.on("message", (channel, payload) => {
      if (channel !== this.channel) return;
      try {
        const m = JSON.parse(payload) as InvalidationMessage;
        for (const l of this.listeners) l(m);
      } catch (err) {
        this.log.warn({ err }, "bad invalidation message");
      }
    });
    // Messages published while the subscriber was disconnected are lost (pub/sub keeps nothing),
    // so every reconnection drops every cached entry once the channel is subscribed again:
    // caches can then afford a long TTL without ever serving a change they missed.
    await subscribeOnEveryConnection(this.subscriber, this.channel, this.log, () => {
      this.log.info("invalidation subscriber reconnected: dropping every cached entry");
      for (const l of this.listeners) l({ kind: "all", id: "*" });
    });
  }

  onInvalidate(listener: (m: InvalidationMessage) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Tell every replica (this one included, synchronously) to drop an entry. A publish failure
   * is logged, not thrown: the change is already committed and the cache TTL bounds staleness.
   */
  async publish(kind: InvalidationKind, id: string): Promise<void> {
    const m: InvalidationMessage = { kind, id };
    for (const l of this.listeners) l(m);
    try {
      // The publisher may carry a keyPrefix; PUBLISH channels are not prefixed by ioredis.
      await this.publisher.publish(this.channel, JSON.stringify(m));
    } catch (err) {
      this.log.warn({ err, kind, id }, "invalidation publish failed; caches will expire on TTL");
    }
  }
}
