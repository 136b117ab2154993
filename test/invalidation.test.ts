import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { pino } from "pino";
import { InvalidationBus, type InvalidationMessage } from "../src/storage/redis/invalidation.js";
import { createSubscriberRedis } from "../src/storage/redis/client.js";
import { startPrivateRedis, type PrivateRedis } from "./support/redis-server.js";

/** Pub/sub keeps nothing for a disconnected subscriber: a reconnection must flush every cache. */
describe("invalidation bus", () => {
  let server: PrivateRedis;
  let publisher: Redis;
  let subscriber: Redis;
  let bus: InvalidationBus;
  const seen: InvalidationMessage[] = [];

  beforeAll(async () => {
    server = await startPrivateRedis();
    publisher = new Redis(server.url, { maxRetriesPerRequest: null });
    // As the service makes it: ioredis's own resubscription off, the bus resubscribes itself.
    subscriber = createSubscriberRedis({ url: server.url, clusterNodes: [], keyPrefix: "", commandTimeoutMs: 100 });
    bus = new InvalidationBus(publisher, subscriber, "inv-test:", pino({ level: "silent" }));
    bus.onInvalidate((m) => seen.push(m));
    await bus.start();
  });
  afterAll(async () => {
    publisher?.disconnect();
    subscriber?.disconnect();
    await server?.stop();
  });

  it("delivers a published change to the subscriber", async () => {
    const other = new InvalidationBus(publisher, new Redis(server.url), "inv-test:", pino({ level: "silent" }));
    await other.publish("apiKey", "key_abc");
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.filter((m) => m.kind === "apiKey" && m.id === "key_abc")).toHaveLength(1);
  });

  it("tells every listener to drop everything after the subscriber reconnects", async () => {
    seen.length = 0;
    await server.stop();
    await server.start();
    const deadline = Date.now() + 10_000;
    while (!seen.some((m) => m.kind === "all") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(seen.filter((m) => m.kind === "all")).toHaveLength(1);
    // Subscribed again: a change published now arrives.
    const other = new InvalidationBus(publisher, new Redis(server.url), "inv-test:", pino({ level: "silent" }));
    await other.publish("tenant", "ten_after");
    while (!seen.some((m) => m.id === "ten_after") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(seen.filter((m) => m.kind === "tenant" && m.id === "ten_after")).toHaveLength(1);
  });

  it("a subscriber closed while it resubscribes leaves no unhandled rejection", async () => {
    // A replica stopping just as Redis comes back: its subscriber closes with the SUBSCRIBE of
    // the reconnection in flight. ioredis's own resubscription had no handler for that.
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => void unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    const sub = createSubscriberRedis({ url: server.url, clusterNodes: [], keyPrefix: "", commandTimeoutMs: 100 });
    try {
      await new InvalidationBus(publisher, sub, "inv-test-2:", pino({ level: "silent" })).start();
      // Closed at once, before Redis can answer the SUBSCRIBE: as when the process goes away.
      sub.once("ready", () => {
        sub.disconnect();
        (sub as unknown as { stream: { destroy(): void } }).stream.destroy();
      });
      await server.stop();
      await server.start();
      const deadline = Date.now() + 10_000;
      while (sub.status !== "end" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(sub.status).toBe("end");
      await new Promise((r) => setTimeout(r, 100));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
      sub.disconnect();
    }
  });
});
