import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encode } from "gpt-tokenizer";
import { startTestApp, type TestApp } from "../support/app.js";
import type { GraphQLClient } from "../support/client.js";
import { commit, createGateway, createKey, insertTenant, insertTier, reserve } from "../support/enforcement.js";
import { query, upsertModel } from "../operator/support.js";

/**
 * Pricing on the hot path (issue #5, item 1). estimateCost itself is pinned against
 * hand-computed figures in test/operator/estimate.test.ts; here: the same figures come out of
 * a real reservation, and a price change reaches new reservations only — a reservation made
 * before it is committed (and billed in the ledger) at the price it was made at.
 */
describe("prices on the hot path", () => {
  let t: TestApp;
  let gw: GraphQLClient;
  let key: { id: string; secret: string };

  beforeAll(async () => {
    t = await startTestApp();
    // $3 / $15 per million tokens = 3000 / 15000 nano-USD per token.
    await upsertModel(t.admin, { name: "m-price", contextWindow: 200_000, inputPriceUsdPerMTok: "3", outputPriceUsdPerMTok: "15" });
    await upsertModel(t.admin, { name: "m-unpriced", contextWindow: 8_000 });
    const tenantId = await insertTenant(t, await insertTier(t));
    key = await createKey(t, tenantId);
    gw = await createGateway(t);
  });
  afterAll(async () => t?.close());

  const ask = (extra: Record<string, unknown>) => reserve(gw, { apiKey: key.secret, model: "m-price", ...extra });

  it("a reservation costs what estimateCost says for the same text and output cap", async () => {
    const text = "Summarise the quarterly report in three bullet points, please.";
    const tokens = encode(text, { disallowedSpecial: new Set() }).length;
    const est = await t.admin.ok(`query($text: String!) { estimateCost(model: "m-price", text: $text, maxOutputTokens: 400) { inputTokens minCostUsd maxCostUsd } }`, { text });
    expect(est.estimateCost.inputTokens).toBe(tokens);
    const d = await ask({ inputTokens: tokens, maxOutputTokens: 400 });
    // tokens × 3000 + 400 × 15000 nano-USD
    const nano = BigInt(tokens) * 3000n + 400n * 15000n;
    const usd = `${nano / 1_000_000_000n}.${(nano % 1_000_000_000n).toString().padStart(9, "0")}`;
    expect(d.reservation.costUsd).toBe(usd);
    expect(est.estimateCost.maxCostUsd).toBe(usd);
    expect(est.estimateCost.minCostUsd).toBe(`0.${(BigInt(tokens) * 3000n).toString().padStart(9, "0")}`);
    await commit(gw, d.reservation.id, tokens, 0);
  });

  it("a model with no price is refused on the hot path, never free", async () => {
    expect(await ask({ model: "m-unpriced", inputTokens: 10, maxOutputTokens: 10 })).toMatchObject({ allowed: false, reason: "MODEL_FORBIDDEN" });
  });

  it("a price change takes effect for new reservations only", async () => {
    const before = await ask({ inputTokens: 1_000, maxOutputTokens: 100 });
    expect(before.reservation.costUsd).toBe("0.004500000"); // 1000 × 3000 + 100 × 15000

    await upsertModel(t.admin, { name: "m-price", inputPriceUsdPerMTok: "6", outputPriceUsdPerMTok: "30" });
    const after = await ask({ inputTokens: 1_000, maxOutputTokens: 100 });
    expect(after.reservation.costUsd).toBe("0.009000000"); // the new price, at once on this replica

    // Committed after the change, the older reservation is still charged the price it was made at.
    const c1 = await commit(gw, before.reservation.id, 1_000, 50);
    expect(c1.data.commit.costUsd).toBe("0.003750000"); // 1000 × 3000 + 50 × 15000
    const c2 = await commit(gw, after.reservation.id, 1_000, 50);
    expect(c2.data.commit.costUsd).toBe("0.007500000"); // 1000 × 6000 + 50 × 30000

    const rows = await query(t.databaseUrl, `SELECT reservation_id, cost_nano::text AS cost FROM usage_ledger WHERE reservation_id = ANY($1) ORDER BY cost_nano`, [
      [before.reservation.id, after.reservation.id],
    ]);
    expect(rows).toEqual([
      { reservation_id: before.reservation.id, cost: "3750000" },
      { reservation_id: after.reservation.id, cost: "7500000" },
    ]);
    // The price history keeps both versions; nothing was rewritten.
    const prices = await query(t.databaseUrl, `SELECT input_nano_per_token::text AS i FROM model_prices WHERE model = 'm-price' ORDER BY effective_from`);
    expect(prices.map((p: any) => p.i)).toEqual(["3000", "6000"]);
  });
});
