import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.js";
import type { GraphQLClient } from "../support/client.js";
import { commit, createGateway, createKey, insertModel, insertTenant, insertTier, reserve, RELEASE, type TierSpec } from "../support/enforcement.js";
import type { ScopeLimits } from "../../src/domain/tenancy/types.js";

/** Every limit at limit − 1, limit and limit + 1, plus window rollover and scoping. */
describe("limits at their boundaries", () => {
  let t: TestApp;
  let gw: GraphQLClient;

  beforeAll(async () => {
    t = await startTestApp({ REDIS_COMMAND_TIMEOUT_MS: "1000" });
    await insertModel(t, "m-small", 1_000n, 2_000n);
    await insertModel(t, "m-big", 10_000n, 30_000n);
    gw = await createGateway(t);
  });
  afterAll(async () => t?.close());

  async function keyFor(tier: TierSpec, overrides: ScopeLimits = {}) {
    const tierId = await insertTier(t, { defaultMaxOutputTokens: 10, ...tier });
    const tenantId = await insertTenant(t, tierId, { limitOverrides: overrides });
    return { tenantId, ...(await createKey(t, tenantId)) };
  }

  it("daily token quota: L−1, then exactly L, then L+1 is denied until the local day ends", async () => {
    const k = await keyFor({}, { dailyTokens: 100 });
    expect((await reserve(gw, { apiKey: k.secret, inputTokens: 89, maxOutputTokens: 10 })).allowed).toBe(true); // 99 = L−1
    const atLimit = await reserve(gw, { apiKey: k.secret, inputTokens: 1, maxOutputTokens: 0 }); // 100 = L
    expect(atLimit.allowed).toBe(true);
    expect(atLimit.limits.find((l: any) => l.dimension === "DAILY_TOKENS").remaining).toBe("0");
    const over = await reserve(gw, { apiKey: k.secret, inputTokens: 1, maxOutputTokens: 0 }); // 101
    expect(over).toMatchObject({ allowed: false, reason: "QUOTA_EXCEEDED" });
    const dayEnd = new Date(over.limits.find((l: any) => l.dimension === "DAILY_TOKENS").resetAt).getTime();
    expect(Math.abs(Date.now() + over.retryAfterMs - dayEnd)).toBeLessThan(5_000);
  });

  it("monthly USD budget: cost L−1 and L allowed, L+1 denied (BUDGET_EXCEEDED)", async () => {
    // one request of 10 in + 10 out on m-small costs 30,000 nano
    const k = await keyFor({}, { monthlyBudgetNano: 90_000n });
    expect((await reserve(gw, { apiKey: k.secret, inputTokens: 9, maxOutputTokens: 10 })).allowed).toBe(true); // 29,000
    expect((await reserve(gw, { apiKey: k.secret, inputTokens: 11, maxOutputTokens: 10 })).allowed).toBe(true); // +31,000 = 60,000
    const exact = await reserve(gw, { apiKey: k.secret, inputTokens: 10, maxOutputTokens: 10 }); // +30,000 = 90,000 = L
    expect(exact.allowed).toBe(true);
    expect(exact.limits.find((l: any) => l.dimension === "MONTHLY_BUDGET").remaining).toBe("0.000000000");
    const over = await reserve(gw, { apiKey: k.secret, inputTokens: 1, maxOutputTokens: 0 }); // +1,000
    expect(over).toMatchObject({ allowed: false, reason: "BUDGET_EXCEEDED" });
    expect(over.message).toMatch(/MONTHLY_BUDGET of 0\.000090000 USD/);
  });

  it("a key's own monthly budget binds before the tenant's", async () => {
    const tierId = await insertTier(t, { defaultMaxOutputTokens: 10 });
    const tenantId = await insertTenant(t, tierId, { limitOverrides: { monthlyBudgetNano: 1_000_000_000n } });
    const key = await createKey(t, tenantId, { monthlyBudgetUsd: "0.00006" }); // two requests
    expect((await reserve(gw, { apiKey: key.secret })).allowed).toBe(true);
    expect((await reserve(gw, { apiKey: key.secret })).allowed).toBe(true);
    const d = await reserve(gw, { apiKey: key.secret });
    expect(d).toMatchObject({ allowed: false, reason: "BUDGET_EXCEEDED" });
    expect(d.message).toContain(`key:${key.id}`);
  });

  it("requests-per-minute bucket: burst L admits L, L+1 waits about one refill; the window refills", async () => {
    const k = await keyFor({}, { requestsPerMinute: { perMinute: 60, burst: 3 } });
    for (let i = 0; i < 3; i++) expect((await reserve(gw, { apiKey: k.secret })).allowed).toBe(true);
    const over = await reserve(gw, { apiKey: k.secret });
    expect(over).toMatchObject({ allowed: false, reason: "RATE_LIMITED" });
    expect(over.retryAfterMs).toBeGreaterThan(0);
    expect(over.retryAfterMs).toBeLessThanOrEqual(1_000);
    await new Promise((r) => setTimeout(r, over.retryAfterMs + 50));
    expect((await reserve(gw, { apiKey: k.secret })).allowed).toBe(true); // one token refilled
    expect((await reserve(gw, { apiKey: k.secret })).allowed).toBe(false);
  });

  it("a wait longer than GraphQL's Int (2^31 ms, 24.8 days) is answered capped, never as an error", async () => {
    // One input token a minute with room for 100,000: once drained, 50,000 tokens take 50,000
    // minutes (about 35 days) to come back.
    const k = await keyFor({}, { inputTokensPerMinute: { perMinute: 1, burst: 100_000 } });
    expect((await reserve(gw, { apiKey: k.secret, inputTokens: 100_000, maxOutputTokens: 0 })).allowed).toBe(true);
    const later = await reserve(gw, { apiKey: k.secret, inputTokens: 50_000, maxOutputTokens: 0 });
    expect(later).toMatchObject({ allowed: false, reason: "RATE_LIMITED", retryAfterMs: 2_147_483_647 });
  });

  it("input-token bucket: a prompt of exactly the capacity fits once; one larger than the bucket can never fit", async () => {
    const k = await keyFor({}, { inputTokensPerMinute: { perMinute: 500, burst: null } });
    expect((await reserve(gw, { apiKey: k.secret, inputTokens: 499, maxOutputTokens: 0 })).allowed).toBe(true);
    expect((await reserve(gw, { apiKey: k.secret, inputTokens: 1, maxOutputTokens: 0 })).allowed).toBe(true);
    const drained = await reserve(gw, { apiKey: k.secret, inputTokens: 1, maxOutputTokens: 0 });
    expect(drained).toMatchObject({ allowed: false, reason: "RATE_LIMITED" });
    expect(drained.retryAfterMs).toBeGreaterThan(0);
    const k2 = await keyFor({}, { inputTokensPerMinute: { perMinute: 500, burst: null } });
    const tooBig = await reserve(gw, { apiKey: k2.secret, inputTokens: 501, maxOutputTokens: 0 });
    expect(tooBig).toMatchObject({ allowed: false, reason: "RATE_LIMITED", retryAfterMs: null });
  });

  it("output tokens are reserved at the effective cap and refunded on commit", async () => {
    const k = await keyFor({}, { outputTokensPerMinute: { perMinute: 100, burst: null } });
    const d = await reserve(gw, { apiKey: k.secret, inputTokens: 1, maxOutputTokens: 100 });
    expect(d.allowed).toBe(true);
    expect((await reserve(gw, { apiKey: k.secret, inputTokens: 1, maxOutputTokens: 1 })).reason).toBe("RATE_LIMITED");
    await commit(gw, d.reservation.id, 1, 10); // 90 unused output tokens return to the bucket
    expect((await reserve(gw, { apiKey: k.secret, inputTokens: 1, maxOutputTokens: 85 })).allowed).toBe(true);
  });

  it("concurrency: L in flight, L+1 denied, a release frees a slot", async () => {
    const k = await keyFor({}, { concurrentRequests: 2 });
    const a = await reserve(gw, { apiKey: k.secret });
    const b = await reserve(gw, { apiKey: k.secret });
    expect([a.allowed, b.allowed]).toEqual([true, true]);
    expect((await reserve(gw, { apiKey: k.secret })).reason).toBe("CONCURRENCY_LIMITED");
    await gw.request(RELEASE, { id: a.reservation.id });
    expect((await reserve(gw, { apiKey: k.secret })).allowed).toBe(true);
  });

  it("prompt size: maxInputTokens L allowed, L+1 denied; output is capped by the model's context window", async () => {
    const k = await keyFor({ maxInputTokens: 1_000, maxOutputTokens: 4_096 });
    expect((await reserve(gw, { apiKey: k.secret, inputTokens: 1_000 })).allowed).toBe(true);
    expect(await reserve(gw, { apiKey: k.secret, inputTokens: 1_001 })).toMatchObject({ allowed: false, reason: "PROMPT_TOO_LARGE", retryAfterMs: null });
    await insertModel(t, "m-tiny-ctx", 1n, 1n, 600);
    const d = await reserve(gw, { apiKey: k.secret, model: "m-tiny-ctx", inputTokens: 500, maxOutputTokens: 4_000 });
    expect(d.directives.maxOutputTokens).toBe(100);
    expect(await reserve(gw, { apiKey: k.secret, model: "m-tiny-ctx", inputTokens: 601 })).toMatchObject({ reason: "PROMPT_TOO_LARGE" });
  });

  it("per-subject limits bind one end user without touching another", async () => {
    const k = await keyFor({ subjectLimits: { requestsPerMinute: { perMinute: 1, burst: 2 } } });
    expect((await reserve(gw, { apiKey: k.secret, subject: "alice" })).allowed).toBe(true);
    expect((await reserve(gw, { apiKey: k.secret, subject: "alice" })).allowed).toBe(true);
    const third = await reserve(gw, { apiKey: k.secret, subject: "alice" });
    expect(third).toMatchObject({ allowed: false, reason: "RATE_LIMITED" });
    expect(third.message).toContain("subject:alice");
    expect((await reserve(gw, { apiKey: k.secret, subject: "bob" })).allowed).toBe(true);
    expect((await reserve(gw, { apiKey: k.secret })).allowed).toBe(true); // no subject: no subject limit
  });

  it("route/model limits apply only to matching requests", async () => {
    const k = await keyFor({ routeModelLimits: [{ route: "*", model: "m-big", concurrentRequests: 1 }] });
    expect((await reserve(gw, { apiKey: k.secret, model: "m-big" })).allowed).toBe(true);
    const second = await reserve(gw, { apiKey: k.secret, model: "m-big" });
    expect(second).toMatchObject({ allowed: false, reason: "CONCURRENCY_LIMITED" });
    expect(second.limits.map((l: any) => l.scope)).toContain("route:* model:m-big");
    expect((await reserve(gw, { apiKey: k.secret, model: "m-small" })).allowed).toBe(true);
  });

  it("the binding limit is the one that takes longest to clear", async () => {
    const k = await keyFor({}, { dailyTokens: 20, requestsPerMinute: { perMinute: 1, burst: 1 } });
    expect((await reserve(gw, { apiKey: k.secret })).allowed).toBe(true); // 20 tokens, 1 request
    const d = await reserve(gw, { apiKey: k.secret });
    // both the bucket (about a minute) and the daily quota (until midnight) fail
    expect(d.reason).toBe("QUOTA_EXCEEDED");
  });

  it("the degradation ladder shapes requests as usage crosses its rungs, then blocks", async () => {
    const k = await keyFor(
      {
        degradationLadder: [
          { atPercent: 50, of: "MONTHLY_TOKENS", maxOutputTokens: 5, maxInputTokens: null, priority: "BACKGROUND", modelMap: [{ from: "m-big", to: "m-small" }], block: false },
          { atPercent: 90, of: "MONTHLY_TOKENS", maxOutputTokens: null, maxInputTokens: null, priority: null, modelMap: [], block: true },
        ],
      },
      { monthlyTokens: 1_000 },
    );
    const first = await reserve(gw, { apiKey: k.secret, model: "m-big", inputTokens: 490, maxOutputTokens: 10 });
    expect(first).toMatchObject({ outcome: "ALLOW", reason: null, directives: { model: "m-big", maxOutputTokens: 10, priority: "NORMAL" } });
    const degraded = await reserve(gw, { apiKey: k.secret, model: "m-big", inputTokens: 100, maxOutputTokens: 10 });
    expect(degraded).toMatchObject({
      outcome: "ALLOW_DEGRADED",
      allowed: true,
      reason: "DEGRADED",
      directives: { model: "m-small", maxOutputTokens: 5, priority: "BACKGROUND" },
      reservation: { outputTokens: 5, costUsd: "0.000110000" }, // m-small: 100×1000 + 5×2000 nano
    });
    expect(degraded.message).toMatch(/50% of MONTHLY_TOKENS/);
    // commit at the degraded model's price
    const c = await commit(gw, degraded.reservation.id, 100, 5);
    expect(c.data.commit.costUsd).toBe("0.000110000");
    // 500 + 105 = 605; push past 90 %
    await reserve(gw, { apiKey: k.secret, model: "m-small", inputTokens: 300, maxOutputTokens: 0 });
    const blocked = await reserve(gw, { apiKey: k.secret, model: "m-small", inputTokens: 1, maxOutputTokens: 0 });
    expect(blocked).toMatchObject({ outcome: "DENY", reason: "QUOTA_EXCEEDED" });
    expect(blocked.retryAfterMs).toBeGreaterThan(0);
  });

  it("a suspended tenant and a revoked key are denied with their reasons", async () => {
    const k = await keyFor({});
    await t.admin.ok(`mutation($id: ID!) { revokeApiKey(id: $id) { status } }`, { id: k.id });
    expect(await reserve(gw, { apiKey: k.secret })).toMatchObject({ allowed: false, reason: "KEY_REVOKED" });
    const k2 = await keyFor({});
    await t.app.services.db.execute(`update tenants set status = 'SUSPENDED' where id = '${k2.tenantId}'` as any);
    await t.app.services.invalidation.publish("tenant", k2.tenantId);
    expect(await reserve(gw, { apiKey: k2.secret })).toMatchObject({ allowed: false, reason: "TENANT_SUSPENDED", tenantId: k2.tenantId });
  });
});
