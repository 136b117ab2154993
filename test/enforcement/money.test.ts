import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { startTestApp, type TestApp } from "../support/app.js";
import { COMMIT, createGateway, createKey, insertModel, insertTenant, insertTier, RESERVE } from "../support/enforcement.js";
import { periodsAt } from "../../src/domain/enforcement/periods.js";
import { rawRedis } from "../support/env.js";

/**
 * Money is exact: many tiny charges at prices with no exact binary representation
 * ($0.075 and $0.30 per million tokens) sum to the cent-exact total, in the ledger and in the
 * live counters. A float anywhere on the path would drift.
 */
const COMMITS = Number(process.env.MONEY_COMMITS ?? 50_000);
const CONCURRENCY = 64;

describe("money is exact", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ REDIS_COMMAND_TIMEOUT_MS: "2000" });
  });
  afterAll(async () => t?.close());

  it(`${COMMITS} commits of a few tokens of a cheap model sum exactly`, async () => {
    await insertModel(t, "cheap", 75n, 300n); // $0.075 / $0.30 per MTok
    const tierId = await insertTier(t, { defaultMaxOutputTokens: 4, tenantLimits: { monthlyBudgetNano: 1_000_000_000_000n } });
    const tenantId = await insertTenant(t, tierId);
    const key = await createKey(t, tenantId);
    const gw = await createGateway(t);

    let next = 0;
    const started = Date.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < COMMITS) {
          next++;
          const r = await gw.request(RESERVE, { input: { apiKey: key.secret, route: "chat.completions", model: "cheap", inputTokens: 3, maxOutputTokens: 4 } });
          const d = r.data?.checkAndReserve;
          if (!d?.allowed) throw new Error(`reserve failed: ${JSON.stringify(r.errors ?? d)}`);
          const c = await gw.request(COMMIT, { input: { reservationId: d.reservation.id, inputTokens: 3, outputTokens: 2 } });
          if (c.errors) throw new Error(JSON.stringify(c.errors));
          expect(c.data.commit.costUsd).toBe("0.000000825");
        }
      }),
    );
    const seconds = (Date.now() - started) / 1000;
    console.log(`money: ${COMMITS} reserve+commit pairs over HTTP in ${seconds.toFixed(1)} s (${(COMMITS / seconds).toFixed(0)} pairs/s)`);

    const expected = BigInt(COMMITS) * 825n;
    const ledger: any = await t.app.services.db.execute(
      sql`select count(*)::int as n, sum(cost_nano)::text as cost, sum(input_tokens + output_tokens)::text as tokens from usage_ledger where tenant_id = ${tenantId}`,
    );
    expect(ledger.rows[0]).toEqual({ n: COMMITS, cost: expected.toString(), tokens: String(COMMITS * 5) });

    const raw = rawRedis();
    try {
      const month = periodsAt(new Date(), "UTC").month;
      const counters = await raw.hgetall(`${t.env.REDIS_KEY_PREFIX}{t:${tenantId}}:q:m:${month}:T`);
      expect(counters).toMatchObject({ usd: expected.toString(), usdh: "0", tok: String(COMMITS * 5), tokh: "0" });
    } finally {
      raw.disconnect();
    }
  }, 600_000);
});
