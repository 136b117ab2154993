import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { startTestApp, type TestApp } from "../support/app.js";
import type { GraphQLClient } from "../support/client.js";
import { startPrivateRedis, type PrivateRedis } from "../support/redis-server.js";
import { commit, createGateway, createKey, insertModel, insertTenant, insertTier, reserve } from "../support/enforcement.js";

/** With Redis unreachable, reserves fail closed and fast; only pure rate limits may fail open. */
describe("Redis down: fail closed, fast", () => {
  let redisServer: PrivateRedis;
  let t: TestApp;
  let gw: GraphQLClient;
  let quotaKey: { secret: string };
  let rateOnlyKey: { secret: string };
  let rateOnlyTenant: string;

  beforeAll(async () => {
    redisServer = await startPrivateRedis();
    t = await startTestApp({ REDIS_URL: redisServer.url });
    await insertModel(t, "m-small", 1_000n, 2_000n);
    // A tier that opts its rate limits into fail-open, but also has a quota: quotas never fail open.
    const quotaTier = await insertTier(t, { failOpenRateLimits: true, tenantLimits: { dailyTokens: 1_000_000, requestsPerMinute: { perMinute: 100, burst: null } } });
    const rateTier = await insertTier(t, { failOpenRateLimits: true, tenantLimits: { requestsPerMinute: { perMinute: 100, burst: null } } });
    quotaKey = await createKey(t, await insertTenant(t, quotaTier));
    rateOnlyTenant = await insertTenant(t, rateTier);
    rateOnlyKey = await createKey(t, rateOnlyTenant);
    gw = await createGateway(t);
    // Warm the key and policy caches while Redis is up, as a running gateway would have.
    expect((await reserve(gw, { apiKey: quotaKey.secret })).allowed).toBe(true);
    expect((await reserve(gw, { apiKey: rateOnlyKey.secret })).allowed).toBe(true);
  });
  afterAll(async () => {
    await t?.close();
    await redisServer?.stop();
  });

  async function outageLatencies(concurrency = 20): Promise<number[]> {
    const latencies: number[] = [];
    for (let wave = 0; wave < 10; wave++) {
      const results = await Promise.all(
        Array.from({ length: concurrency }, async () => {
          const started = performance.now();
          const d = await reserve(gw, { apiKey: quotaKey.secret });
          latencies.push(performance.now() - started);
          return d;
        }),
      );
      for (const d of results) {
        expect(d).toMatchObject({ allowed: false, outcome: "DENY", reason: "BACKEND_UNAVAILABLE" });
        expect(d.retryAfterMs).toBeGreaterThan(0);
      }
    }
    return latencies.sort((a, b) => a - b);
  }

  it("a hung Redis (accepts, never answers) is cut off by the command timeout: BACKEND_UNAVAILABLE in time", async () => {
    redisServer.pause();
    try {
      // Every request here holds its HTTP exchange open for the full timeout, so waves are smaller.
      const latencies = await outageLatencies(10);
      const p99 = latencies[Math.floor(latencies.length * 0.99) - 1]!;
      console.log(`Redis hung: reserve p50=${latencies[latencies.length >> 1]!.toFixed(1)}ms p99=${p99.toFixed(1)}ms max=${latencies.at(-1)!.toFixed(1)}ms`);
      // Every request waits out the 100 ms command timeout here (a stopped server refuses at
      // once instead); the bound leaves room for a loaded two-core test machine, and proves
      // that nothing waits for the stalled server.
      expect(p99).toBeLessThan(500);
    } finally {
      redisServer.resume();
    }
    // Back to normal once it answers again.
    await new Promise((r) => setTimeout(r, 200));
    expect((await reserve(gw, { apiKey: quotaKey.secret })).allowed).toBe(true);
  });

  it("denies BACKEND_UNAVAILABLE within 250 ms at p99, never QUOTA_EXCEEDED, and nothing hangs", async () => {
    await redisServer.stop();
    const latencies = await outageLatencies();
    const p99 = latencies[Math.floor(latencies.length * 0.99) - 1]!;
    console.log(`Redis down: reserve p50=${latencies[latencies.length >> 1]!.toFixed(1)}ms p99=${p99.toFixed(1)}ms max=${latencies.at(-1)!.toFixed(1)}ms over ${latencies.length}`);
    expect(p99).toBeLessThan(250);
  });

  it("a tier with only rate limits may fail open; its usage is still recorded in the ledger", async () => {
    const d = await reserve(gw, { apiKey: rateOnlyKey.secret, inputTokens: 5, maxOutputTokens: 5 });
    expect(d).toMatchObject({ allowed: true, outcome: "ALLOW" });
    expect(d.message).toMatch(/fails open/);
    const c = await commit(gw, d.reservation.id, 5, 3);
    expect(c.errors).toBeUndefined();
    expect(c.data.commit).toMatchObject({ costUsd: "0.000011000", replayed: false });
    const rows: any = await t.app.services.db.execute(sql`select status, input_tokens, output_tokens from usage_ledger where reservation_id = ${d.reservation.id}`);
    expect(rows.rows).toEqual([{ status: "SUCCEEDED", input_tokens: "5", output_tokens: "3" }]);
    const again = await commit(gw, d.reservation.id, 5, 3);
    expect(again.data.commit.replayed).toBe(true);
  });

  it("recovers when Redis comes back", async () => {
    await redisServer.start();
    const deadline = Date.now() + 10_000;
    let d;
    do {
      d = await reserve(gw, { apiKey: quotaKey.secret });
      if (d.allowed) break;
      await new Promise((r) => setTimeout(r, 100));
    } while (Date.now() < deadline);
    expect(d.allowed).toBe(true);
  });
});
