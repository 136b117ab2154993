import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compose, type App } from "../../src/compose.js";
import { loadConfig } from "../../src/config/config.js";
import { startTestApp, type TestApp } from "../support/app.js";
import { GraphQLClient } from "../support/client.js";
import { COMMIT, createGateway, createKey, insertModel, insertTenant, insertTier, RELEASE, RESERVE } from "../support/enforcement.js";

/**
 * Compiled hot operations are answered from the jit plugin's responseForOperation hook when they
 * succeed, so Apollo builds no gateway request context, incremental-delivery negotiator or result
 * copies for them (see jit-executor.ts); answers with errors go through Apollo's executor hook
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
    return { answeredByPlugin: now.answeredByPlugin - before.answeredByPlugin, deferredToExecutor: now.deferredToExecutor - before.deferredToExecutor, executorRuns: now.executorRuns - before.executorRuns };
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
    expect(delta(before)).toEqual({ answeredByPlugin: 5, deferredToExecutor: 0, executorRuns: 0 });
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
    expect(delta(before)).toEqual({ answeredByPlugin: 0, deferredToExecutor: 1, executorRuns: 1 });
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
    expect(delta(before)).toEqual({ answeredByPlugin: 0, deferredToExecutor: 1, executorRuns: 1 });
    const b = await gwPlain.request(RESERVE, bad);
    expect(a.status).toBe(400);
    expect(a.status).toBe(b.status);
    expect(a.errors).toEqual(b.errors);
  });

  it("an internal fault is masked with the request id and logged, not answered by the plugin", async () => {
    const enforcement = t.app.services.enforcement;
    const original = enforcement.commit;
    enforcement.commit = async () => {
      throw new Error("disk on fire");
    };
    try {
      const before = stats();
      const r = await gw.request(COMMIT, { input: { reservationId: "res_whatever0000000000000000", inputTokens: 1, outputTokens: 1 } });
      expect(delta(before)).toEqual({ answeredByPlugin: 0, deferredToExecutor: 1, executorRuns: 1 });
      expect(r.errors).toHaveLength(1);
      expect(r.errors![0]!.message).toBe("Internal server error");
      expect(r.errors![0]!.extensions).toMatchObject({ code: "INTERNAL_SERVER_ERROR", requestId: r.headers.get("x-request-id") });
      expect(JSON.stringify(r.errors)).not.toContain("disk on fire");
    } finally {
      enforcement.commit = original;
    }
  });

  it("operations that are not hot run through the executor hook with graphql-js", async () => {
    const before = stats();
    const r = await gw.request(`{ viewer { role } }`);
    expect(r.errors).toBeUndefined();
    expect(r.data.viewer.role).toBe("GATEWAY");
    expect(delta(before)).toEqual({ answeredByPlugin: 0, deferredToExecutor: 0, executorRuns: 1 });
  });
});
