import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { sql } from "drizzle-orm";
import { startTestApp, type TestApp } from "../support/app.js";
import type { GraphQLClient } from "../support/client.js";
import { startPrivateRedis, type PrivateRedis } from "../support/redis-server.js";
import { commit, createGateway, createKey, insertModel, insertTenant, insertTier, reserve } from "../support/enforcement.js";
import { compose, type App } from "../../src/compose.js";
import { loadConfig } from "../../src/config/config.js";
import { periodsAt } from "../../src/domain/enforcement/periods.js";

/** Invariants that need Redis to be flushed or raced: run on a private redis-server. */
describe("durability and all-or-nothing", () => {
  let redisServer: PrivateRedis;
  let t: TestApp;
  let gw: GraphQLClient;
  let raw: Redis;
  let tierId: string;

  beforeAll(async () => {
    redisServer = await startPrivateRedis();
    t = await startTestApp({ REDIS_URL: redisServer.url, REDIS_COMMAND_TIMEOUT_MS: "2000" });
    raw = new Redis(redisServer.url);
    await insertModel(t, "m-small", 1_000n, 2_000n);
    tierId = await insertTier(t, { defaultMaxOutputTokens: 10, reservationTtlSeconds: 600, routeReservationTtlSeconds: [{ route: "short", seconds: 1 }] });
    gw = await createGateway(t);
  });
  afterAll(async () => {
    raw?.disconnect();
    await t?.close();
    await redisServer?.stop();
  });

  const ledgerRows = async (tenantId: string) =>
    ((await t.app.services.db.execute(sql`select entry, status, input_tokens, output_tokens, cost_nano from usage_ledger where tenant_id = ${tenantId} order by id`)) as any).rows as any[];

  it("a reserve denied by its daily quota leaves the request bucket, monthly quota and budget byte-identical", async () => {
    const tenantId = await insertTenant(t, tierId, {
      limitOverrides: { dailyTokens: 100, monthlyTokens: 1_000_000, monthlyBudgetNano: 1_000_000_000n, requestsPerMinute: { perMinute: 1000, burst: null } },
    });
    const key = await createKey(t, tenantId);
    const ok = await reserve(gw, { apiKey: key.secret, inputTokens: 40, maxOutputTokens: 40 });
    expect(ok.allowed).toBe(true);
    const prefix = t.env.REDIS_KEY_PREFIX;
    const month = periodsAt(new Date(), "UTC").month;
    const keys = [`${prefix}{t:${tenantId}}:tb:rq:T`, `${prefix}{t:${tenantId}}:q:m:${month}:T`, `${prefix}{t:${tenantId}}:q:m:${month}:k:${key.id}`];
    const before = await Promise.all(keys.map((k) => raw.dumpBuffer(k)));
    expect(before.every((b) => b !== null)).toBe(true);
    const denied = await reserve(gw, { apiKey: key.secret, inputTokens: 30, maxOutputTokens: 10 });
    expect(denied).toMatchObject({ allowed: false, reason: "QUOTA_EXCEEDED" });
    expect(denied.retryAfterMs).toBeGreaterThan(0);
    const after = await Promise.all(keys.map((k) => raw.dumpBuffer(k)));
    for (let i = 0; i < keys.length; i++) expect(after[i]!.equals(before[i]!), keys[i]).toBe(true);
  });

  it("10 concurrent identical commits write one ledger row and move the counters once", async () => {
    const tenantId = await insertTenant(t, tierId, { limitOverrides: { dailyTokens: 10_000 } });
    const key = await createKey(t, tenantId);
    const d = await reserve(gw, { apiKey: key.secret, inputTokens: 100, maxOutputTokens: 100 });
    const results = await Promise.all(Array.from({ length: 10 }, () => commit(gw, d.reservation.id, 100, 50)));
    for (const r of results) expect(r.errors).toBeUndefined();
    expect(results.filter((r) => r.data.commit.replayed === false)).toHaveLength(1);
    expect(new Set(results.map((r) => r.data.commit.costUsd))).toEqual(new Set(["0.000200000"]));
    expect(await ledgerRows(tenantId)).toHaveLength(1);
    const next = await reserve(gw, { apiKey: key.secret, inputTokens: 1, maxOutputTokens: 1 });
    const daily = next.limits.find((l: any) => l.dimension === "DAILY_TOKENS");
    expect(daily.remaining).toBe(String(10_000 - 150 - 2));
  });

  it("expiry returns holds exactly once with two sweepers, writes one EXPIRED row; a late commit still records usage", async () => {
    const tenantId = await insertTenant(t, tierId, { limitOverrides: { dailyTokens: 10_000, concurrentRequests: 5 } });
    const key = await createKey(t, tenantId);
    const d = await reserve(gw, { apiKey: key.secret, route: "short", inputTokens: 1000, maxOutputTokens: 1000 });
    expect(d.allowed).toBe(true);
    const second: App = await compose(loadConfig(t.env));
    try {
      await new Promise((r) => setTimeout(r, 1_300));
      const counts = await Promise.all([t.app.services.enforcement.sweepExpired(), second.services.enforcement.sweepExpired(), t.app.services.enforcement.sweepExpired()]);
      expect(counts.reduce((a, b) => a + b, 0)).toBe(1);
    } finally {
      await second.stop();
    }
    let rows = await ledgerRows(tenantId);
    expect(rows).toEqual([{ entry: "EXPIRY", status: "EXPIRED", input_tokens: "0", output_tokens: "0", cost_nano: "0" }]);
    const after = await reserve(gw, { apiKey: key.secret, inputTokens: 1, maxOutputTokens: 1 });
    expect(after.limits.find((l: any) => l.dimension === "DAILY_TOKENS").remaining).toBe(String(10_000 - 2));
    expect(after.limits.find((l: any) => l.dimension === "CONCURRENT_REQUESTS").remaining).toBe("4");

    const late = await commit(gw, d.reservation.id, 900, 300);
    expect(late.errors).toBeUndefined();
    expect(late.data.commit).toMatchObject({ replayed: false, costUsd: "0.001500000" });
    rows = await ledgerRows(tenantId);
    expect(rows.map((r) => r.entry)).toEqual(["EXPIRY", "COMMIT"]);
    const next = await reserve(gw, { apiKey: key.secret, inputTokens: 1, maxOutputTokens: 1 });
    expect(next.limits.find((l: any) => l.dimension === "DAILY_TOKENS").remaining).toBe(String(10_000 - 2 - 1200 - 2));
  });

  it("after FLUSHALL mid-month, counters are re-seeded from the ledger: no overspend, and an in-flight reservation is still committed", async () => {
    // Budget fits 100 requests of 30,000 nano; 60 are spent and committed before the flush.
    const tenantId = await insertTenant(t, tierId, { limitOverrides: { monthlyBudgetNano: 3_000_000n } });
    const key = await createKey(t, tenantId);
    for (let i = 0; i < 60; i++) {
      const d = await reserve(gw, { apiKey: key.secret, inputTokens: 10, maxOutputTokens: 10 });
      expect(d.allowed).toBe(true);
      await commit(gw, d.reservation.id, 10, 10);
    }
    const inFlight = await reserve(gw, { apiKey: key.secret, inputTokens: 10, maxOutputTokens: 10 });
    await t.app.services.ledger.flush();
    await new Promise((r) => setTimeout(r, 100)); // let the reservation archive's write-behind land
    await raw.flushall();

    // The in-flight one commits after the flush: recorded from the archive, counted once.
    const c = await commit(gw, inFlight.reservation.id, 10, 10);
    expect(c.errors).toBeUndefined();
    expect(c.data.commit.replayed).toBe(false);
    expect(errorFree(await commit(gw, inFlight.reservation.id, 10, 10)).data.commit.replayed).toBe(true);

    const results = await Promise.all(Array.from({ length: 100 }, () => reserve(gw, { apiKey: key.secret, inputTokens: 10, maxOutputTokens: 10 })));
    expect(results.filter((d) => d.allowed)).toHaveLength(39);
    expect(results.filter((d) => !d.allowed).every((d) => d.reason === "BUDGET_EXCEEDED")).toBe(true);
    const spent: any = await t.app.services.db.execute(sql`select sum(cost_nano)::text as s from usage_ledger where tenant_id = ${tenantId}`);
    expect((spent.rows[0] as any).s).toBe(String(61 * 30_000));
  });
});

function errorFree<T extends { errors?: unknown }>(r: T): T {
  if (r.errors) throw new Error(JSON.stringify(r.errors));
  return r;
}
