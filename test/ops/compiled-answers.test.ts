import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compose, type App } from "../../src/compose.js";
import { loadConfig } from "../../src/config/config.js";
import { startTestApp, type TestApp } from "../support/app.js";
import { GraphQLClient } from "../support/client.js";
import { COMMIT, createGateway, createKey, insertModel, insertTenant, insertTier, RELEASE, RESERVE } from "../support/enforcement.js";

/**
 * Compiled hot operations are answered from the jit plugin's responseForOperation hook when they
 * succeed, so Apollo builds no gateway request context, incremental-delivery negotiator or result
 * copies for them (see jit-executor.ts); a text Apollo has answered that way once runs before
 * Apollo's request pipeline from then on. Answers with errors go through Apollo's executor hook
 * and error pipeline instead, without running the operation a second time. Every answer must be
 * the one graphql-js behind Apollo gives (GRAPHQL_JIT=false), errors included.
 */
describe("compiled hot operations: answered by the plugin, errors through Apollo", () => {
  let t: TestApp;
  let plain: App;
  let gw: GraphQLClient;
  let gwPlain: GraphQLClient;
  let key: string;

  beforeAll(async () => {
    t = await startTestApp();
    await insertModel(t, "m-small", 1_000n, 2_000n);
    const tierId = await insertTier(t, { tenantLimits: { dailyTokens: 1_000 } });
    const tenantId = await insertTenant(t, tierId);
    key = (await createKey(t, tenantId)).secret;
    gw = await createGateway(t);
    plain = await compose(loadConfig({ ...t.env, GRAPHQL_JIT: "false" }));
    const port = await plain.listen();
    gwPlain = new GraphQLClient(`http://127.0.0.1:${port}/graphql`, gw.token);
  }, 60_000);

  afterAll(async () => {
    await plain?.stop();
    await t?.close();
  });

  const stats = () => ({ ...t.app.server.jit!.stats });
  const delta = (before: ReturnType<typeof stats>) => {
    const now = stats();
    return {
      answeredBeforeApollo: now.answeredBeforeApollo - before.answeredBeforeApollo,
      answeredByPlugin: now.answeredByPlugin - before.answeredByPlugin,
      deferredToExecutor: now.deferredToExecutor - before.deferredToExecutor,
      executorRuns: now.executorRuns - before.executorRuns,
    };
  };
  const input = (over: Record<string, unknown> = {}) => ({ input: { apiKey: key, route: "chat.completions", model: "m-small", inputTokens: 10, maxOutputTokens: 10, ...over } });

  it("answers an allowed reserve, a denial, a commit and a release without Apollo's executor hook", async () => {
    expect(plain.server.jit).toBeNull();
    const before = stats();
    const allowed = await gw.request(RESERVE, input());
    expect(allowed.status).toBe(200);
    expect(allowed.errors).toBeUndefined();
    expect(allowed.data.checkAndReserve.allowed).toBe(true);
    const denied = await gw.request(RESERVE, input({ inputTokens: 5_000 }));
    expect(denied.errors).toBeUndefined();
    expect(denied.data.checkAndReserve).toMatchObject({ allowed: false, reason: "QUOTA_EXCEEDED" });
    const c = await gw.request(COMMIT, { input: { reservationId: allowed.data.checkAndReserve.reservation.id, inputTokens: 10, outputTokens: 5 } });
    expect(c.errors).toBeUndefined();
    expect(c.data.commit.replayed).toBe(false);
    const second = await gw.request(RESERVE, input());
    const r = await gw.request(RELEASE, { id: second.data.checkAndReserve.reservation.id });
    expect(r.data.release.released).toBe(true);
    // The first reserve and commit texts (and the release) go through Apollo and its plugin; the
    // second reserve of the same text runs before Apollo.
    expect(delta(before)).toEqual({ answeredBeforeApollo: 2, answeredByPlugin: 3, deferredToExecutor: 0, executorRuns: 0 });
    // Other plugins still ran around the plugin's answer: the operation metrics saw all five.
    const metrics = await (await fetch(t.url.replace("/graphql", "/metrics"))).text();
    expect(metrics).toMatch(/llm_graphql_operation_duration_seconds_count\{[^}]*operation="checkAndReserve"[^}]*\} [1-9]/);
  });

  it("the same answer as graphql-js, shape for shape", async () => {
    const [a, b] = [await gw.request(RESERVE, input({ inputTokens: 5_000 })), await gwPlain.request(RESERVE, input({ inputTokens: 5_000 }))];
    expect(a.status).toBe(b.status);
    expect(a.headers.get("content-type")).toBe(b.headers.get("content-type"));
    expect(Object.keys(a.data.checkAndReserve)).toEqual(Object.keys(b.data.checkAndReserve));
    // retryAfterMs counts down to the day's end between the two requests.
    expect(Math.abs(a.data.checkAndReserve.retryAfterMs - b.data.checkAndReserve.retryAfterMs)).toBeLessThan(5_000);
    expect({ ...a.data.checkAndReserve, retryAfterMs: 0 }).toEqual({ ...b.data.checkAndReserve, retryAfterMs: 0 });
  });

  it("a resolver's error goes through Apollo's executor hook once and comes out as graphql-js's does", async () => {
    const unknown = { input: { reservationId: "res_doesnotexist000000000000", inputTokens: 1, outputTokens: 1 } };
    const before = stats();
    const a = await gw.request(COMMIT, unknown);
    expect(delta(before)).toEqual({ answeredBeforeApollo: 0, answeredByPlugin: 0, deferredToExecutor: 1, executorRuns: 1 });
    const b = await gwPlain.request(COMMIT, unknown);
    expect(a.status).toBe(b.status);
    expect(a.data).toEqual(b.data);
    expect(a.errors).toEqual(b.errors);
    expect(a.errors![0]!.extensions!.code).toBe("NOT_FOUND");
  });

  it("variables that do not coerce: refused through the executor hook, HTTP 400, as graphql-js refuses them", async () => {
    const bad = input({ inputTokens: "many" });
    const before = stats();
    const a = await gw.request(RESERVE, bad);
    expect(delta(before)).toEqual({ answeredBeforeApollo: 0, answeredByPlugin: 0, deferredToExecutor: 1, executorRuns: 1 });
    const b = await gwPlain.request(RESERVE, bad);
    expect(a.status).toBe(400);
    expect(a.status).toBe(b.status);
    expect(a.errors).toEqual(b.errors);
  });

  it("an internal fault is masked with the request id and logged, not answered by the plugin", async () => {
    const enforcement = t.app.services.enforcement;
    const original = enforcement.commit;
    let calls = 0;
    enforcement.commit = async () => {
      calls++;
      throw new Error("disk on fire");
    };
    try {
      const before = stats();
      const r = await gw.request(COMMIT, { input: { reservationId: "res_whatever0000000000000000", inputTokens: 1, outputTokens: 1 } });
      expect(delta(before)).toEqual({ answeredBeforeApollo: 0, answeredByPlugin: 0, deferredToExecutor: 1, executorRuns: 1 });
      expect(r.errors).toHaveLength(1);
      expect(r.errors![0]!.message).toBe("Internal server error");
      expect(r.errors![0]!.extensions).toMatchObject({ code: "INTERNAL_SERVER_ERROR", requestId: r.headers.get("x-request-id") });
      expect(JSON.stringify(r.errors)).not.toContain("disk on fire");
      expect(calls).toBe(1);
    } finally {
      enforcement.commit = original;
    }
  });

  it("operations that are not hot run through the executor hook with graphql-js", async () => {
    const before = stats();
    const r = await gw.request(`{ viewer { role } }`);
    expect(r.errors).toBeUndefined();
    expect(r.data.viewer.role).toBe("GATEWAY");
    expect(delta(before)).toEqual({ answeredBeforeApollo: 0, answeredByPlugin: 0, deferredToExecutor: 0, executorRuns: 1 });
  });

  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(t.url, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${gw.token}`, ...headers }, body: JSON.stringify(body) });
  const head = (res: Response) => {
    const h = Object.fromEntries(res.headers);
    delete h.date;
    delete h["x-request-id"];
    return h;
  };

  it("before Apollo: the same status, headers and bytes as Apollo writes, and the operation metrics count it", async () => {
    const reserved = await gw.request(RESERVE, input());
    const commit = { query: COMMIT, variables: { input: { reservationId: reserved.data.checkAndReserve.reservation.id, inputTokens: 10, outputTokens: 5 } } };
    expect((await post(commit)).status).toBe(200);
    const commits = async () => {
      const text = await (await fetch(t.url.replace("/graphql", "/metrics"))).text();
      return Number(/llm_graphql_operation_duration_seconds_count\{[^}]*operation="commit"[^}]*status="ok"[^}]*\} (\d+)/.exec(text)?.[1] ?? "0");
    };
    const counted = await commits();
    let before = stats();
    // A replayed commit answers the same every time: once before Apollo, once through it (an
    // Accept header that is not one of the few the early path takes sends it to Apollo).
    const early = await post(commit, { accept: "application/json" });
    expect(delta(before)).toMatchObject({ answeredBeforeApollo: 1, answeredByPlugin: 0 });
    before = stats();
    const apollo = await post(commit, { accept: "application/json, */*;q=0.5" });
    expect(delta(before)).toMatchObject({ answeredBeforeApollo: 0, answeredByPlugin: 1 });
    expect(early.status).toBe(apollo.status);
    expect(head(early)).toEqual(head(apollo));
    const [a, b] = [await early.text(), await apollo.text()];
    expect(a).toBe(b);
    expect(JSON.parse(a).data.commit.replayed).toBe(true);
    expect(await commits()).toBe(counted + 2);
  });

  it("only requests Apollo would answer the same way run before it", async () => {
    const body = { query: RESERVE, variables: input() };
    await post(body);
    const early = async (b: unknown, headers: Record<string, string> = {}) => {
      const before = stats();
      const res = await post(b, headers);
      await res.text();
      return { status: res.status, early: delta(before).answeredBeforeApollo };
    };
    expect(await early(body)).toEqual({ status: 200, early: 1 });
    expect(await early(body, { accept: "*/*" })).toEqual({ status: 200, early: 1 });
    expect(await early(body, { "content-type": "application/json; charset=utf-8" })).toEqual({ status: 200, early: 1 });
    // Apollo's own answers: another media type, a 406, persisted-query extensions, an
    // operation name the text does not have, variables of the wrong type.
    expect(await early(body, { accept: "application/graphql-response+json" })).toEqual({ status: 200, early: 0 });
    expect(await early(body, { accept: "text/html" })).toEqual({ status: 406, early: 0 });
    expect((await early({ ...body, extensions: {} })).early).toBe(0);
    expect(await early({ ...body, operationName: "Other" })).toMatchObject({ early: 0 });
    expect(await early({ ...body, variables: [1] })).toEqual({ status: 400, early: 0 });
    expect(await early({ ...body, variables: "{}" })).toEqual({ status: 400, early: 0 });
  });

  it("a caller without the gateway role is refused before Apollo exactly as through it", async () => {
    const body = { query: RESERVE, variables: input() };
    await post(body);
    const before = stats();
    const a = await fetch(t.url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const b = await fetch(gwPlain.url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    expect(delta(before).answeredBeforeApollo).toBe(0);
    expect(a.status).toBe(b.status);
    expect(await a.json()).toEqual(await b.json());
  });
});
