import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.js";
import type { GraphQLResponse } from "../support/client.js";
import { createTenant, createTier, expectBadInput, rowCounts, upsertModel } from "./support.js";

/**
 * Every refused input is one BAD_USER_INPUT naming the input path of the problem, and writes
 * nothing: not a row, not an audit entry.
 */

const CREATE_TIER = `mutation($input: CreateTierInput!) { createTier(input: $input) { id } }`;
const UPDATE_TIER = `mutation($id: ID!, $input: UpdateTierInput!) { updateTier(id: $id, input: $input) { id } }`;
const CREATE_TENANT = `mutation($input: CreateTenantInput!) { createTenant(input: $input) { id } }`;
const UPDATE_TENANT = `mutation($id: ID!, $input: UpdateTenantInput!) { updateTenant(id: $id, input: $input) { id } }`;
const UPSERT_MODEL = `mutation($input: UpsertModelInput!) { upsertModel(input: $input) { name } }`;

const long = (n: number) => "x".repeat(n);

describe("operator input validation", () => {
  let t: TestApp;
  let tierId: string;
  let tenantId: string;

  beforeAll(async () => {
    t = await startTestApp();
    tierId = (await createTier(t.admin, { name: "base", maxOutputTokens: 1000 })).id;
    tenantId = (await createTenant(t.admin, { name: "acme", tierId })).id;
    await upsertModel(t.admin, { name: "m1", contextWindow: 1000, inputPriceUsdPerMTok: "1", outputPriceUsdPerMTok: "2" });
    await upsertModel(t.admin, { name: "m2", contextWindow: 1000, downgradeTo: "m1" });
  });
  afterAll(async () => t?.close());

  /** Sends the request and checks it was refused as BAD_USER_INPUT on `field` with no row written anywhere. */
  async function refused(send: () => Promise<GraphQLResponse>, field: string, message?: RegExp) {
    const before = await rowCounts(t.databaseUrl);
    const r = await send();
    expectBadInput(r, field, message);
    expect(await rowCounts(t.databaseUrl)).toEqual(before);
  }
  const tier = (input: Record<string, unknown>) => () => t.admin.request(CREATE_TIER, { input: { name: "new", maxOutputTokens: 100, ...input } });
  const tierUpdate = (input: Record<string, unknown>) => () => t.admin.request(UPDATE_TIER, { id: tierId, input });

  describe("tier limits", () => {
    const cases: Array<[string, Record<string, unknown>, string, RegExp?]> = [
      ["zero rate", { tenantLimits: { requestsPerMinute: { perMinute: 0 } } }, "input.tenantLimits.requestsPerMinute.perMinute", /from 1 to/],
      ["negative burst", { keyLimits: { inputTokensPerMinute: { perMinute: 10, burst: -1 } } }, "input.keyLimits.inputTokensPerMinute.burst"],
      ["negative concurrency", { subjectLimits: { concurrentRequests: -5 } }, "input.subjectLimits.concurrentRequests"],
      ["daily tokens above 10^12", { tenantLimits: { dailyTokens: "1000000000001" } }, "input.tenantLimits.dailyTokens", /1000000000000/],
      ["daily tokens at 0", { tenantLimits: { dailyTokens: "0" } }, "input.tenantLimits.dailyTokens"],
      ["daily tokens not an integer", { tenantLimits: { dailyTokens: "12.5" } }, "input.tenantLimits.dailyTokens", /whole number/],
      ["monthly tokens negative", { keyLimits: { monthlyTokens: "-3" } }, "input.keyLimits.monthlyTokens"],
      ["negative budget", { tenantLimits: { monthlyBudgetUsd: "-1" } }, "input.tenantLimits.monthlyBudgetUsd", /not negative/],
      ["zero budget", { keyLimits: { dailyBudgetUsd: "0" } }, "input.keyLimits.dailyBudgetUsd", /more than 0/],
      ["budget beyond exact counters", { tenantLimits: { monthlyBudgetUsd: "9007199.254740992" } }, "input.tenantLimits.monthlyBudgetUsd", /at most 9007199\.254740991/],
      ["route limit with no limit", { routeModelLimits: [{ route: "chat", model: "*" }] }, "input.routeModelLimits[0]", /sets no limit/],
      [
        "duplicate route/model pair",
        { routeModelLimits: [{ route: "chat", model: "*", concurrentRequests: 1 }, { route: "chat", model: "*", concurrentRequests: 2 }] },
        "input.routeModelLimits[1]",
        /duplicate/,
      ],
      ["route limit rate out of range", { routeModelLimits: [{ route: "chat", model: "m", requestsPerMinute: { perMinute: 0 } }] }, "input.routeModelLimits[0].requestsPerMinute.perMinute"],
      ["maxOutputTokens 0", { maxOutputTokens: 0 }, "input.maxOutputTokens"],
      ["maxInputTokens negative", { maxInputTokens: -1 }, "input.maxInputTokens"],
      ["default output above the cap", { defaultMaxOutputTokens: 101 }, "input.defaultMaxOutputTokens", /must not exceed maxOutputTokens/],
      ["percent 0", { notifyAtPercent: [0, 50] }, "input.notifyAtPercent[0]", /from 1 to 1000/],
      ["percent above 1000", { notifyAtPercent: [1001] }, "input.notifyAtPercent[0]"],
      ["duplicate percent", { notifyAtPercent: [50, 50] }, "input.notifyAtPercent[1]", /duplicate/],
      ["reservation TTL 0", { reservationTtlSeconds: 0 }, "input.reservationTtlSeconds"],
      ["reservation TTL above a day", { routeReservationTtlSeconds: [{ route: "batch", seconds: 86_401 }] }, "input.routeReservationTtlSeconds[0].seconds"],
      ["101 allowed routes", { allowedRoutes: Array.from({ length: 101 }, (_, i) => `r${i}`) }, "input.allowedRoutes", /at most 100/],
      ["wildcard in an allow-list", { allowedModels: ["*"] }, "input.allowedModels[0]", /null list allows everything/],
      ["model name with a space", { allowedModels: ["gpt 4"] }, "input.allowedModels[0]", /spaces/],
      ["oversized route name", { allowedRoutes: [long(201)] }, "input.allowedRoutes[0]", /200 characters/],
      ["oversized tier name", { name: long(201) }, "input.name", /200 characters/],
      ["blank tier name", { name: "   " }, "input.name", /empty/],
      ["oversized description", { description: long(201) }, "input.description"],
    ];
    for (const [what, input, field, message] of cases) {
      it(`refuses ${what} (${field})`, async () => {
        await refused(tier(input), field, message);
      });
    }

    it("refuses an update that would break a rule, leaving the tier as it was", async () => {
      await refused(tierUpdate({ maxOutputTokens: 999 }), "input.maxOutputTokens", /defaultMaxOutputTokens \(1000\) must not exceed maxOutputTokens \(999\)/);
      await refused(tierUpdate({ name: null }), "input.name", /cannot be null/);
      await refused(tierUpdate({ notifyAtPercent: null }), "input.notifyAtPercent", /cannot be null/);
      await refused(tierUpdate({ tenantLimits: { dailyTokens: "abc" } }), "input.tenantLimits.dailyTokens");
      const { tier: after } = await t.admin.ok(`query($id: ID!) { tier(id: $id) { maxOutputTokens defaultMaxOutputTokens name } }`, { id: tierId });
      expect(after).toEqual({ maxOutputTokens: 1000, defaultMaxOutputTokens: 1000, name: "base" });
    });
  });

  describe("degradation ladder", () => {
    const rung = (x: Record<string, unknown>) => ({ atPercent: 80, of: "MONTHLY_BUDGET", maxOutputTokens: 100, ...x });
    it("refuses a rung of a rate dimension", async () => {
      await refused(tier({ degradationLadder: [rung({ of: "REQUESTS_PER_MINUTE" })] }), "input.degradationLadder[0].of", /quota or budget dimension/);
      await refused(tier({ degradationLadder: [rung({ of: "CONCURRENT_REQUESTS" })] }), "input.degradationLadder[0].of");
    });
    it("refuses rungs of one dimension out of ascending order, including equal percentages", async () => {
      await refused(
        tier({ degradationLadder: [rung({ atPercent: 90 }), rung({ atPercent: 50, of: "DAILY_TOKENS" }), rung({ atPercent: 80 })] }),
        "input.degradationLadder[2].atPercent",
        /ascending/,
      );
      await refused(tier({ degradationLadder: [rung({ atPercent: 90 }), rung({ atPercent: 90, block: true })] }), "input.degradationLadder[1].atPercent");
    });
    it("refuses a rung percentage out of range, a rung that changes nothing and a model mapped to itself", async () => {
      await refused(tier({ degradationLadder: [rung({ atPercent: 0 })] }), "input.degradationLadder[0].atPercent");
      await refused(tier({ degradationLadder: [rung({ atPercent: 1001 })] }), "input.degradationLadder[0].atPercent");
      await refused(tier({ degradationLadder: [{ atPercent: 80, of: "DAILY_TOKENS" }] }), "input.degradationLadder[0]", /changes nothing/);
      await refused(
        tier({ degradationLadder: [rung({ modelMap: [{ from: "m1", to: "m1" }] })] }),
        "input.degradationLadder[0].modelMap[0].to",
        /itself/,
      );
      await refused(tier({ degradationLadder: [rung({ maxOutputTokens: 0 })] }), "input.degradationLadder[0].maxOutputTokens");
      await refused(tier({ degradationLadder: [rung({ modelMap: [{ from: "m1", to: "*" }] })] }), "input.degradationLadder[0].modelMap[0].to", /wildcard/);
      await refused(
        tier({ degradationLadder: [rung({ modelMap: [{ from: "m1", to: "m2" }, { from: "m1", to: "m3" }] })] }),
        "input.degradationLadder[0].modelMap[1]",
        /duplicate/,
      );
    });
    it("refuses an unknown dimension name at the GraphQL layer, writing nothing", async () => {
      const before = await rowCounts(t.databaseUrl);
      const r = await tier({ degradationLadder: [rung({ of: "WEEKLY_TOKENS" })] })();
      expect(r.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
      expect(await rowCounts(t.databaseUrl)).toEqual(before);
    });
  });

  describe("tenants", () => {
    const tenant = (input: Record<string, unknown>) => () => t.admin.request(CREATE_TENANT, { input: { name: "t", tierId, ...input } });
    it("refuses unknown time zones and UTC offsets", async () => {
      for (const tz of ["Mars/Olympus_Mons", "+01:00", "UTC+1", "", "Europe/Berlin; DROP TABLE tenants"]) {
        await refused(tenant({ timezone: tz }), "input.timezone", /IANA/);
      }
      await refused(() => t.admin.request(UPDATE_TENANT, { id: tenantId, input: { timezone: "Nowhere/Town" } }), "input.timezone");
    });
    it("accepts real IANA zones", async () => {
      const r = await t.admin.ok(CREATE_TENANT, { input: { name: "tz", tierId, timezone: "America/Argentina/Buenos_Aires" } });
      expect(r.createTenant.id).toMatch(/^ten_/);
    });
    it("refuses an unknown tier id, by name of the field", async () => {
      await refused(tenant({ tierId: "tier_0000000000000000" }), "input.tierId", /no tier/);
      await refused(tenant({ tierId: "garbage" }), "input.tierId", /no tier/);
      await refused(() => t.admin.request(UPDATE_TENANT, { id: tenantId, input: { tierId: "tier_0000000000000000" } }), "input.tierId");
    });
    it("refuses oversized and empty names and bad overrides", async () => {
      await refused(tenant({ name: long(201) }), "input.name", /200 characters/);
      await refused(tenant({ name: "" }), "input.name");
      await refused(tenant({ name: "a\u0000b" }), "input.name", /control/);
      await refused(tenant({ limitOverrides: { monthlyBudgetUsd: "-5" } }), "input.limitOverrides.monthlyBudgetUsd");
      await refused(tenant({ limitOverrides: { dailyTokens: "99999999999999999" } }), "input.limitOverrides.dailyTokens");
      await refused(() => t.admin.request(UPDATE_TENANT, { id: tenantId, input: { name: null } }), "input.name", /cannot be null/);
    });
  });

  describe("models and prices", () => {
    const model = (input: Record<string, unknown>) => () =>
      t.admin.request(UPSERT_MODEL, { input: { name: "new-model", contextWindow: 1000, inputPriceUsdPerMTok: "1", outputPriceUsdPerMTok: "1", ...input } });
    it("refuses negative prices", async () => {
      await refused(model({ inputPriceUsdPerMTok: "-1" }), "input.inputPriceUsdPerMTok", /non-negative/);
      await refused(model({ outputPriceUsdPerMTok: "-0.5" }), "input.outputPriceUsdPerMTok");
    });
    it("refuses a price with more than 3 decimals per million tokens rather than rounding it", async () => {
      await refused(model({ inputPriceUsdPerMTok: "0.0001" }), "input.inputPriceUsdPerMTok", /more than 3 decimals/);
      await refused(model({ outputPriceUsdPerMTok: "2.5005" }), "input.outputPriceUsdPerMTok", /more than 3 decimals/);
    });
    it("refuses a price above 1000 USD per million tokens, and a half price", async () => {
      await refused(model({ inputPriceUsdPerMTok: "1000.001" }), "input.inputPriceUsdPerMTok", /above/);
      await refused(model({ outputPriceUsdPerMTok: null }), "input.outputPriceUsdPerMTok", /pair/);
    });
    it("refuses a past effectiveFrom: history is never rewritten", async () => {
      await refused(model({ name: "m1", effectiveFrom: new Date(Date.now() - 60_000).toISOString() }), "input.effectiveFrom", /past/);
    });
    it("refuses a second price at the same effectiveFrom", async () => {
      const at = new Date(Date.now() + 3_600_000).toISOString();
      await upsertModel(t.admin, { name: "m1", inputPriceUsdPerMTok: "5", outputPriceUsdPerMTok: "5", effectiveFrom: at });
      await refused(model({ name: "m1", inputPriceUsdPerMTok: "6", effectiveFrom: at }), "input.effectiveFrom", /never rewritten/);
    });
    it("refuses a new model without a context window", async () => {
      await refused(model({ contextWindow: undefined }), "input.contextWindow", /required when creating/);
      await refused(model({ contextWindow: 0 }), "input.contextWindow");
    });
    it("refuses downgradeTo that is unknown, itself, or a cycle", async () => {
      await refused(model({ downgradeTo: "nope" }), "input.downgradeTo", /no model/);
      await refused(model({ name: "m1", downgradeTo: "m1" }), "input.downgradeTo", /itself/);
      // m2 → m1 exists; m1 → m2 would loop.
      await refused(model({ name: "m1", downgradeTo: "m2" }), "input.downgradeTo", /cycle: m1 → m2 → m1/);
    });
    it("refuses bad model names", async () => {
      await refused(model({ name: long(201) }), "input.name", /200 characters/);
      await refused(model({ name: "*" }), "input.name", /wildcard/);
      await refused(model({ name: "has space" }), "input.name");
    });
  });
});
