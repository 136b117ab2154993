import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startTestApp, type TestApp } from "../support/app.js";
import { errorCode, type GraphQLClient } from "../support/client.js";
import { commit, createGateway, createKey, insertModel, insertTenant, insertTier, reserve, RELEASE } from "../support/enforcement.js";
import { getVariableValues, parse, type OperationDefinitionNode } from "graphql";
import { buildApiSchema } from "../../src/graphql/schema.js";

describe("checkAndReserve / commit / release over HTTP", () => {
  let t: TestApp;
  let gw: GraphQLClient;
  let tenantId: string;
  let key: { id: string; secret: string };

  beforeAll(async () => {
    t = await startTestApp(process.env.DEBUG_LOG ? { LOG_LEVEL: "debug" } : {});
    await insertModel(t, "m-small", 1_000n, 2_000n); // $1 / $2 per MTok
    const tierId = await insertTier(t, {
      tenantLimits: { dailyTokens: 1_000_000, monthlyBudgetNano: 10_000_000_000n, requestsPerMinute: { perMinute: 1000, burst: null } },
      keyLimits: { concurrentRequests: 50 },
      maxInputTokens: 5_000,
      allowedRoutes: ["chat.completions", "embeddings"],
    });
    tenantId = await insertTenant(t, tierId);
    key = await createKey(t, tenantId);
    gw = await createGateway(t);
  });
  afterAll(async () => t?.close());

  it("allows a request, reserves its tokens and cost, and lists every limit that applied", async () => {
    const d = await reserve(gw, { apiKey: key.secret, inputTokens: 100, maxOutputTokens: 50 });
    expect(d).toMatchObject({ outcome: "ALLOW", allowed: true, reason: null, tenantId, keyId: key.id });
    expect(d.reservation).toMatchObject({ inputTokens: 100, outputTokens: 50, costUsd: "0.000200000" });
    expect(d.directives).toEqual({ model: "m-small", maxInputTokens: 5000, maxOutputTokens: 50, priority: "NORMAL" });
    const dims = d.limits.map((l: any) => `${l.dimension}/${l.scope}`).sort();
    expect(dims).toEqual(["CONCURRENT_REQUESTS/key:" + key.id, "DAILY_TOKENS/tenant", "MONTHLY_BUDGET/tenant", "REQUESTS_PER_MINUTE/tenant"].sort());
    const daily = d.limits.find((l: any) => l.dimension === "DAILY_TOKENS");
    expect(daily).toMatchObject({ limit: "1000000", remaining: String(1_000_000 - 150) });
    expect(d.limits.find((l: any) => l.dimension === "MONTHLY_BUDGET")).toMatchObject({ limit: "10.000000000", remaining: "9.999800000" });
  });

  it("commit refunds the unused part and charges actual usage; a retry is a replay; other figures conflict", async () => {
    const d = await reserve(gw, { apiKey: key.secret, inputTokens: 100, maxOutputTokens: 500 });
    const c = await commit(gw, d.reservation.id, 100, 20);
    expect(c.errors).toBeUndefined();
    expect(c.data.commit).toMatchObject({ inputTokens: 100, outputTokens: 20, costUsd: "0.000140000", overage: false, replayed: false });
    const again = await commit(gw, d.reservation.id, 100, 20);
    expect(again.data.commit).toMatchObject({ costUsd: "0.000140000", replayed: true });
    const other = await commit(gw, d.reservation.id, 100, 21);
    expect(errorCode(other)).toBe("CONFLICT");
    const rows = await t.app.services.db.execute(`select count(*)::int as n from usage_ledger where reservation_id = '${d.reservation.id}'` as any);
    expect((rows as any).rows[0].n).toBe(1);
  });

  it("charges overage in full and flags it; the next reservation sees the debt", async () => {
    const before = await reserve(gw, { apiKey: key.secret, inputTokens: 1, maxOutputTokens: 1 });
    const budgetBefore = before.limits.find((l: any) => l.dimension === "DAILY_TOKENS").remaining;
    await commit(gw, before.reservation.id, 1, 1);
    const d = await reserve(gw, { apiKey: key.secret, inputTokens: 10, maxOutputTokens: 10 });
    const c = await commit(gw, d.reservation.id, 10, 1_000);
    expect(c.data.commit).toMatchObject({ overage: true, outputTokens: 1000, costUsd: "0.002010000" });
    const next = await reserve(gw, { apiKey: key.secret, inputTokens: 1, maxOutputTokens: 1 });
    const remaining = BigInt(next.limits.find((l: any) => l.dimension === "DAILY_TOKENS").remaining);
    // budgetBefore counted `before`'s 2 held tokens, which became 2 used; since then
    // 1010 were used (the overage charged in full) and `next` holds 2.
    expect(remaining).toBe(BigInt(budgetBefore) - 1010n - 2n);
    await commit(gw, next.reservation.id, 1, 1);
  });

  it("a commit on the replica that reserved settles from its own copy, with the same answer as from Redis", async () => {
    const counters = (t.app.services.enforcement as unknown as { o: { counters: { loadReservation: (...a: unknown[]) => unknown } } }).o.counters;
    const spy = vi.spyOn(counters, "loadReservation");
    try {
      const a = await reserve(gw, { apiKey: key.secret, inputTokens: 100, maxOutputTokens: 500 });
      const ca = await commit(gw, a.reservation.id, 100, 20);
      expect(spy).not.toHaveBeenCalled(); // no read of the record before the settle script
      // The replay (no local copy any more) reads Redis and answers the same figures and limits.
      const again = await commit(gw, a.reservation.id, 100, 20);
      expect(spy).toHaveBeenCalledTimes(1);
      expect(again.data.commit).toMatchObject({ ...ca.data.commit, replayed: true });
      expect(ca.data.commit.limits.map((l: any) => l.dimension).sort()).toEqual(["DAILY_TOKENS", "MONTHLY_BUDGET"]);
      expect(again.data.commit.limits.map((l: any) => [l.dimension, l.scope, l.limit]).sort()).toEqual(
        ca.data.commit.limits.map((l: any) => [l.dimension, l.scope, l.limit]).sort(),
      );
    } finally {
      spy.mockRestore();
    }
  });

  it("release returns the holds once", async () => {
    const d = await reserve(gw, { apiKey: key.secret, inputTokens: 1000, maxOutputTokens: 1000 });
    const held = BigInt(d.limits.find((l: any) => l.dimension === "DAILY_TOKENS").remaining);
    const r1 = await gw.request(RELEASE, { id: d.reservation.id });
    expect(r1.data.release).toEqual({ reservationId: d.reservation.id, released: true });
    const r2 = await gw.request(RELEASE, { id: d.reservation.id });
    expect(r2.data.release.released).toBe(false);
    const after = await reserve(gw, { apiKey: key.secret, inputTokens: 1, maxOutputTokens: 1 });
    expect(BigInt(after.limits.find((l: any) => l.dimension === "DAILY_TOKENS").remaining)).toBe(held + 2000n - 2n);
    await gw.request(RELEASE, { id: after.reservation.id });
  });

  it("a free model (price 0) reserves, releases and commits like any other", async () => {
    // Returning a zero cost hold once printed as "-0" in the settle script, which Redis refuses.
    await insertModel(t, "m-free", 0n, 0n);
    const d = await reserve(gw, { apiKey: key.secret, model: "m-free", inputTokens: 10, maxOutputTokens: 10 });
    expect(d).toMatchObject({ outcome: "ALLOW", reservation: { costUsd: "0.000000000" } });
    const r = await gw.request(RELEASE, { id: d.reservation.id });
    expect(r.errors).toBeUndefined();
    expect(r.data.release.released).toBe(true);
    const d2 = await reserve(gw, { apiKey: key.secret, model: "m-free", inputTokens: 10, maxOutputTokens: 10 });
    const c = await commit(gw, d2.reservation.id, 10, 5);
    expect(c.errors).toBeUndefined();
    expect(c.data.commit).toMatchObject({ inputTokens: 10, outputTokens: 5, costUsd: "0.000000000", replayed: false });
  });

  it("an idempotencyKey returns the first decision unchanged and reserves once; a different input conflicts", async () => {
    const input = { apiKey: key.secret, inputTokens: 7, maxOutputTokens: 7, idempotencyKey: `req-${Date.now()}` };
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(JSON.stringify(await reserve(gw, input)));
    expect(new Set(answers).size).toBe(1);
    const first = JSON.parse(answers[0]!);
    const other = await gw.request(
      `mutation($input: CheckAndReserveInput!) { checkAndReserve(input: $input) { allowed } }`,
      { input: { ...input, route: "chat.completions", model: "m-small", inputTokens: 8 } },
    );
    expect(errorCode(other)).toBe("CONFLICT");
    const c = await commit(gw, first.reservation.id, 7, 7);
    expect(c.data.commit.replayed).toBe(false);
  });

  it("denies with data, not errors: unknown model, forbidden route, prompt too large, bad key", async () => {
    expect(await reserve(gw, { apiKey: key.secret, model: "no-such-model" })).toMatchObject({ outcome: "DENY", allowed: false, reason: "MODEL_FORBIDDEN" });
    expect(await reserve(gw, { apiKey: key.secret, route: "images" })).toMatchObject({ reason: "ROUTE_FORBIDDEN" });
    const big = await reserve(gw, { apiKey: key.secret, inputTokens: 5_001 });
    expect(big).toMatchObject({ reason: "PROMPT_TOO_LARGE", reservation: null });
    const mangled = key.secret.slice(0, -1) + (key.secret.endsWith("x") ? "y" : "x"); // one character off: the checksum fails
    expect(await reserve(gw, { apiKey: mangled })).toMatchObject({ reason: "KEY_INVALID", tenantId: null });
  });

  it("refuses bad input with BAD_USER_INPUT naming the field, and unknown reservations with NOT_FOUND", async () => {
    for (const [input, field] of [
      [{ inputTokens: -1 }, "input.inputTokens"],
      [{ inputTokens: 1_000_000_001 }, "input.inputTokens"],
      [{ maxOutputTokens: -5 }, "input.maxOutputTokens"],
      [{ route: "" }, "input.route"],
      [{ model: "x".repeat(201) }, "input.model"],
    ] as const) {
      const r = await gw.request(`mutation($input: CheckAndReserveInput!) { checkAndReserve(input: $input) { allowed } }`, {
        input: { apiKey: key.secret, route: "chat.completions", model: "m-small", inputTokens: 1, ...input },
      });
      expect(errorCode(r), JSON.stringify(input)).toBe("BAD_USER_INPUT");
      expect(r.errors![0]!.extensions!.field).toBe(field);
    }
    const nonInt = await gw.request(`mutation { checkAndReserve(input: { apiKey: "x", route: "r", model: "m", inputTokens: 1.5 }) { allowed } }`);
    expect(nonInt.errors?.[0]?.extensions?.code).toMatch(/BAD_USER_INPUT|GRAPHQL_VALIDATION_FAILED/);
    expect(errorCode(await commit(gw, "res_nope", 1, 1))).toBe("NOT_FOUND");
    expect(errorCode(await gw.request(RELEASE, { id: "res_AAAAAAAAAAAAAAAA-AAAAAAAAAAAAAAAAAAAA" }))).toBe("NOT_FOUND");
    const d = await reserve(gw, { apiKey: key.secret });
    expect(errorCode(await commit(gw, d.reservation.id, -1, 1))).toBe("BAD_USER_INPUT");
    await gw.request(RELEASE, { id: d.reservation.id });
  });

  it("variables that do not coerce on the compiled hot path get graphql-js's own refusal (HTTP 400, BAD_USER_INPUT) and reserve nothing", async () => {
    const schema = await buildApiSchema();
    const doc = `mutation R($input: CheckAndReserveInput!) { checkAndReserve(input: $input) { allowed } }`;
    const op = parse(doc).definitions[0] as OperationDefinitionNode;
    const base = { apiKey: key.secret, route: "chat.completions", model: "m-small", inputTokens: 1 };
    const daily = async () => (await reserve(gw, { apiKey: key.secret, inputTokens: 1, maxOutputTokens: 1 })).limits.find((l: any) => l.dimension === "DAILY_TOKENS").remaining;
    const before = BigInt(await daily());
    for (const input of [
      { ...base, inputTokens: "many" },
      { ...base, inputTokens: 2 ** 31 },
      { ...base, priority: "URGENT" },
      { ...base, tools: [1] },
      { route: "chat.completions", model: "m-small", inputTokens: 1 },
      { ...base, unknownField: true },
    ]) {
      const r = await gw.request(doc, { input });
      const expected = getVariableValues(schema, op.variableDefinitions ?? [], { input }).errors!;
      expect(r.status, JSON.stringify(input)).toBe(400);
      expect(errorCode(r)).toBe("BAD_USER_INPUT");
      expect(r.errors!.map((e) => e.message)).toEqual(expected.map((e) => e.message));
    }
    // Nothing in between took tokens: the next reserve sees the previous one's hold only.
    expect(BigInt(await daily())).toBe(before - 2n);
  });

  it("another tenant's reservation reads exactly like an unknown one", async () => {
    const otherTier = await insertTier(t);
    const otherTenant = await insertTenant(t, otherTier);
    const bound = await createGateway(t, t.url, otherTenant);
    const d = await reserve(gw, { apiKey: key.secret });
    const foreign = await commit(bound, d.reservation.id, 1, 1);
    const unknown = await commit(bound, d.reservation.id.slice(0, -3) + "zzz", 1, 1);
    expect(errorCode(foreign)).toBe("NOT_FOUND");
    expect(foreign.errors![0]!.message.replace(d.reservation.id, "ID")).toBe(unknown.errors![0]!.message.replace(/res_\S+/, "ID"));
    // and a tenant-bound gateway cannot spend another tenant's key
    expect(await reserve(bound, { apiKey: key.secret })).toMatchObject({ reason: "KEY_INVALID" });
    await gw.request(RELEASE, { id: d.reservation.id });
  });
});
