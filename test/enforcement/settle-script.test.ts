import { afterAll, describe, expect, it } from "vitest";
import { SCRIPTS } from "../../src/storage/redis/scripts.js";
import { rawRedis, uniqueName } from "../support/env.js";

/**
 * The settle script at the Redis level: a counter hash is moved with one read and one write
 * while its figures fit a double exactly, and with HINCRBY (int64) once they do not; either
 * way the figures stay exact strings, and a zero never prints as "-0".
 */
describe("settle.lua", () => {
  const redis = rawRedis();
  afterAll(async () => {
    await redis.del(rec, expiry, quota);
    await redis.quit();
  });
  const tag = `{${uniqueName("settle")}}`;
  const rec = `${tag}:rec`;
  const expiry = `${tag}:exp`;
  const quota = `${tag}:q`;

  async function settle(op: string, figures: { in: number; out: number; cost: number }) {
    const arg = JSON.stringify({ op, rid: "res_1", nq: 1, b: [], nc: 0, in: figures.in, out: figures.out, cost: figures.cost, status: "SUCCEEDED", keep: 3_600_000 });
    return (await redis.eval(SCRIPTS.settle, 3, rec, expiry, quota, arg)) as string[];
  }
  async function reserved(held: { in: number; out: number; cost: number }, counters: Record<string, string>) {
    await redis.del(rec, expiry, quota);
    await redis.hset(rec, { st: "R", in: String(held.in), out: String(held.out), cost: String(held.cost), exp: String(Date.now() + 60_000) });
    await redis.zadd(expiry, Date.now() + 60_000, "res_1");
    await redis.pexpire(rec, 86_400_000 + 60_000);
    await redis.hset(quota, counters);
  }

  it("commits exactly past 2^53 (HINCRBY), where a double would round", async () => {
    const big = "9007199254740993"; // 2^53 + 1: the nearest double is 2^53
    await reserved({ in: 10, out: 20, cost: 300 }, { tok: big, tokh: "30", usd: big, usdh: "300" });
    const r = await settle("commit", { in: 10, out: 5, cost: 150 });
    expect(r).toEqual(["APPLIED", "0", "9007199254741008:0:9007199254741143:0"]);
    expect(await redis.hgetall(quota)).toEqual({ tok: "9007199254741008", tokh: "0", usd: "9007199254741143", usdh: "0" });
  });

  it("commits with one write below 2^53, and a free model's zero hold returns as 0", async () => {
    await reserved({ in: 10, out: 20, cost: 0 }, { tok: "100", tokh: "30", usd: "7", usdh: "0" });
    const r = await settle("commit", { in: 10, out: 5, cost: 0 });
    expect(r).toEqual(["APPLIED", "0", "115:0:7:0"]);
    await reserved({ in: 10, out: 20, cost: 0 }, { tok: "100", tokh: "30", usd: "7", usdh: "0" });
    expect(await settle("release", { in: 0, out: 0, cost: 0 })).toEqual(["RELEASED"]);
    expect(await redis.hgetall(quota)).toEqual({ tok: "100", tokh: "0", usd: "7", usdh: "0" });
  });

  it("keeps a settled record an hour, not the day an unsettled one gets", async () => {
    await reserved({ in: 1, out: 1, cost: 1 }, { tok: "1", tokh: "2", usd: "1", usdh: "1" });
    expect(await redis.pttl(rec)).toBeGreaterThan(86_400_000);
    await settle("commit", { in: 1, out: 1, cost: 1 });
    const ttl = await redis.pttl(rec);
    expect(ttl).toBeGreaterThan(3_500_000);
    expect(ttl).toBeLessThanOrEqual(3_600_000);
    await reserved({ in: 1, out: 1, cost: 1 }, { tok: "1", tokh: "2", usd: "1", usdh: "1" });
    await settle("release", { in: 0, out: 0, cost: 0 });
    expect(await redis.pttl(rec)).toBeLessThanOrEqual(3_600_000);
  });

  it("leaves a flushed counter hash alone (it is re-seeded from the ledger)", async () => {
    await reserved({ in: 1, out: 1, cost: 1 }, { tok: "1" });
    await redis.del(quota);
    expect(await settle("commit", { in: 1, out: 1, cost: 1 })).toEqual(["APPLIED", "0", ":::"]);
    expect(await redis.exists(quota)).toBe(0);
  });
});
