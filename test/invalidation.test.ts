import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { pino } from "pino";
import { InvalidationBus, type InvalidationMessage } from "../src/storage/redis/invalidation.js";
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
    subscriber = new Redis(server.url, { maxRetriesPerRequest: null, retryStrategy: () => 50 });
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
  });
});
