import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encode } from "gpt-tokenizer";
import { startTestApp, type TestApp } from "../support/app.js";
import { expectBadInput, upsertModel } from "./support.js";

/** estimateCost against hand-computed figures: exact nano-USD, shown as Decimal USD strings. */

const ESTIMATE = `query($model: String!, $inputTokens: Int, $text: String, $maxOutputTokens: Int) {
  estimateCost(model: $model, inputTokens: $inputTokens, text: $text, maxOutputTokens: $maxOutputTokens) {
    model inputTokens maxOutputTokens inputCostUsd minCostUsd maxCostUsd inputPriceUsdPerMTok outputPriceUsdPerMTok priceEffectiveFrom
  }
}`;

describe("estimateCost", () => {
  let t: TestApp;
  let sonnetFrom: string;
  beforeAll(async () => {
    t = await startTestApp();
    // 3 USD/MTok in = 3000 nano-USD per token; 15 USD/MTok out = 15000 nano-USD per token.
    const m = await upsertModel(t.admin, { name: "sonnet", contextWindow: 200_000, inputPriceUsdPerMTok: "3", outputPriceUsdPerMTok: "15" });
    sonnetFrom = m.currentPrice.effectiveFrom;
    // 0.15 and 0.6 USD/MTok = 150 and 600 nano-USD per token.
    await upsertModel(t.admin, { name: "mini", contextWindow: 128_000, inputPriceUsdPerMTok: "0.15", outputPriceUsdPerMTok: "0.6" });
    await upsertModel(t.admin, { name: "unpriced", contextWindow: 8_000 });
    await upsertModel(t.admin, { name: "huge", contextWindow: 2_147_483_647, inputPriceUsdPerMTok: "999.999", outputPriceUsdPerMTok: "1000" });
  });
  afterAll(async () => t?.close());

  const estimate = (vars: Record<string, unknown>) => t.admin.request(ESTIMATE, vars);

  it("prices a token count: input 1234 × 3000 nano, output 500 × 15000 nano", async () => {
    const r = await estimate({ model: "sonnet", inputTokens: 1234, maxOutputTokens: 500 });
    expect(r.errors).toBeUndefined();
    expect(r.data.estimateCost).toEqual({
      model: "sonnet",
      inputTokens: 1234,
      maxOutputTokens: 500,
      inputCostUsd: "0.003702000",
      minCostUsd: "0.003702000",
      maxCostUsd: "0.011202000",
      inputPriceUsdPerMTok: "3.000000000",
      outputPriceUsdPerMTok: "15.000000000",
      priceEffectiveFrom: sonnetFrom,
    });
  });

  it("counts text with gpt-tokenizer and prices the count", async () => {
    const text = "The quick brown fox jumps over the lazy dog. Überprüfung: 東京タワー 🚀 — done.";
    const tokens = encode(text).length;
    expect(tokens).toBeGreaterThan(10);
    const r = await estimate({ model: "mini", text, maxOutputTokens: 1000 });
    expect(r.errors).toBeUndefined();
    const e = r.data.estimateCost;
    expect(e.inputTokens).toBe(tokens);
    const inputNano = BigInt(tokens) * 150n;
    const usd = (nano: bigint) => `${nano / 1_000_000_000n}.${(nano % 1_000_000_000n).toString().padStart(9, "0")}`;
    expect(e.inputCostUsd).toBe(usd(inputNano));
    expect(e.minCostUsd).toBe(usd(inputNano));
    expect(e.maxCostUsd).toBe(usd(inputNano + 1000n * 600n));
  });

  it("counts text that looks like a special token as ordinary text instead of failing", async () => {
    const text = "ignore this <|endoftext|> marker";
    const r = await estimate({ model: "mini", text, maxOutputTokens: 0 });
    expect(r.errors).toBeUndefined();
    expect(r.data.estimateCost.inputTokens).toBe(encode(text, { disallowedSpecial: new Set() }).length);
    expect(r.data.estimateCost.inputTokens).toBeGreaterThan(3);
  });

  it("reserves the rest of the context window when maxOutputTokens is omitted", async () => {
    const r = await estimate({ model: "sonnet", inputTokens: 1000 });
    expect(r.data.estimateCost.maxOutputTokens).toBe(199_000);
    // 1000 × 3000 + 199000 × 15000 = 3_000_000 + 2_985_000_000 nano
    expect(r.data.estimateCost.maxCostUsd).toBe("2.988000000");
  });

  it("stays exact for the largest figures the API accepts", async () => {
    const r = await estimate({ model: "huge", inputTokens: 2_000_000_001, maxOutputTokens: 146_483_646 });
    expect(r.errors).toBeUndefined();
    // 2_000_000_001 × 999_999 = 1_999_998_000_999_999 nano; + 146_483_646 × 1_000_000
    expect(r.data.estimateCost.inputCostUsd).toBe("1999998.000999999");
    expect(r.data.estimateCost.maxCostUsd).toBe("2146481.646999999");
  });

  it("refuses a model with no price rather than calling it free", async () => {
    expectBadInput(await estimate({ model: "unpriced", inputTokens: 10 }), "model", /no price/);
    expectBadInput(await estimate({ model: "no-such-model", inputTokens: 10 }), "model", /unknown model/);
  });

  it("needs exactly one of inputTokens and text, and sane numbers", async () => {
    expectBadInput(await estimate({ model: "sonnet" }), "inputTokens", /exactly one/);
    expectBadInput(await estimate({ model: "sonnet", inputTokens: 5, text: "hi" }), "text", /exactly one/);
    expectBadInput(await estimate({ model: "sonnet", inputTokens: -1 }), "inputTokens");
    expectBadInput(await estimate({ model: "sonnet", inputTokens: 1, maxOutputTokens: -1 }), "maxOutputTokens");
    expectBadInput(await estimate({ model: "sonnet", inputTokens: 200_001 }), "inputTokens", /context window/);
  });

  it("applies a new price only from its effectiveFrom on", async () => {
    const before = await estimate({ model: "sonnet", inputTokens: 100_000, maxOutputTokens: 0 });
    expect(before.data.estimateCost.inputCostUsd).toBe("0.300000000");

    const from = new Date(Date.now() + 1_500);
    await upsertModel(t.admin, { name: "sonnet", inputPriceUsdPerMTok: "2.5", outputPriceUsdPerMTok: "10", effectiveFrom: from.toISOString() });

    // Scheduled but not yet in force: estimates still use the old price.
    const stillOld = await estimate({ model: "sonnet", inputTokens: 100_000, maxOutputTokens: 0 });
    expect(Date.now()).toBeLessThan(from.getTime());
    expect(stillOld.data.estimateCost).toMatchObject({ inputCostUsd: "0.300000000", priceEffectiveFrom: sonnetFrom });

    await new Promise((r) => setTimeout(r, from.getTime() - Date.now() + 50));
    const now = await estimate({ model: "sonnet", inputTokens: 100_000, maxOutputTokens: 100 });
    expect(now.data.estimateCost).toMatchObject({
      // 100_000 × 2500 nano; + 100 × 10_000 nano
      inputCostUsd: "0.250000000",
      maxCostUsd: "0.251000000",
      priceEffectiveFrom: from.toISOString(),
    });
  });
});
