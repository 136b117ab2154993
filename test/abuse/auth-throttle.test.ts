import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TestApp } from "../support/app.js";
import type { GraphQLClient } from "../support/client.js";
import { createGateway, createKey, insertModel, insertTenant, insertTier, RELEASE, reserve } from "../support/enforcement.js";
import { apiKeyFormat, mintToken } from "../../src/auth/api-key-format.js";
import { newId } from "../../src/lib/ids.js";
import { until } from "./support.js";
import { startAbuseApp } from "./support.js";

/**
 * Failed-auth throttling: a brute-force run of malformed and wrong keys from one client address
 * is throttled (RATE_LIMITED with retryAfterMs) before its keys cost a lookup, while a valid key
 * from another address keeps working; repeated wrong secrets for one key prefix are throttled
 * without locking the key's owner out. Each block is an AUTH_FAILURE_BURST anomaly.
 */
const MAX_PER_SOURCE = 5;
const MAX_PER_PREFIX = 4;
const BLOCK_S = 30;

describe("failed-auth throttling", () => {
  let t: TestApp;
  let gw: GraphQLClient;
  let tenantId: string;
  let key: { id: string; secret: string };
  const format = apiKeyFormat("llm");

  const ask = (apiKey: string, clientAddress?: string) =>
    reserve(gw, { apiKey, model: "m-auth", inputTokens: 1, maxOutputTokens: 1, ...(clientAddress ? { clientAddress } : {}) });
  const release = (d: any) => gw.request(RELEASE, { id: d.reservation.id });
  const lookups = () => t.app.services.apiKeyVerifier.lookups;

  beforeAll(async () => {
    t = await startAbuseApp({
      AUTH_THROTTLE_MAX_FAILURES_PER_SOURCE: String(MAX_PER_SOURCE),
      AUTH_THROTTLE_MAX_FAILURES_PER_PREFIX: String(MAX_PER_PREFIX),
      AUTH_THROTTLE_WINDOW_SECONDS: "60",
      AUTH_THROTTLE_BLOCK_SECONDS: String(BLOCK_S),
    });
    await insertModel(t, "m-auth", 1n, 1n);
    tenantId = await insertTenant(t, await insertTier(t));
    key = await createKey(t, tenantId);
    gw = await createGateway(t);
  });
  afterAll(async () => t?.close());

  it("a brute-force run from one address is throttled before it costs lookups; a valid key from another address keeps working", async () => {
    const attacker = "198.51.100.7";
    // Malformed strings cost no lookup anyway; well-formed keys for unknown ids do, until blocked.
    const tries = ["garbage", "llm_short_x", mintToken(format, newId("apiKey")), mintToken(format, newId("apiKey")), mintToken(format, newId("apiKey"))];
    const answers = [];
    for (const k of tries) answers.push(await ask(k, attacker));
    expect(answers.slice(0, MAX_PER_SOURCE - 1).map((d) => d.reason)).toEqual(["KEY_INVALID", "KEY_INVALID", "KEY_INVALID", "KEY_INVALID"]);
    expect(answers[MAX_PER_SOURCE - 1]).toMatchObject({ allowed: false, reason: "RATE_LIMITED" });
    expect(answers[MAX_PER_SOURCE - 1].retryAfterMs).toBeGreaterThan((BLOCK_S - 2) * 1000);

    const before = lookups();
    for (let i = 0; i < 20; i++) {
      const d = await ask(mintToken(format, newId("apiKey")), attacker);
      expect(d.reason).toBe("RATE_LIMITED");
      expect(d.retryAfterMs).toBeGreaterThan(0);
      expect(d.retryAfterMs).toBeLessThanOrEqual(BLOCK_S * 1000);
    }
    expect(lookups() - before, "blocked attempts must not reach the key store").toBe(0);
    // The blocked address is blocked for everything, its own valid key included.
    expect((await ask(key.secret, attacker)).reason).toBe("RATE_LIMITED");

    const other = await ask(key.secret, "203.0.113.9");
    expect(other).toMatchObject({ allowed: true, outcome: "ALLOW" });
    await release(other);
    const direct = await ask(key.secret);
    expect(direct.allowed).toBe(true);
    await release(direct);
  });

  it("wrong secrets for one key prefix are throttled from any address, but the right secret still passes", async () => {
    const guesses = Array.from({ length: MAX_PER_PREFIX + 2 }, () => mintToken(format, key.id)); // right key id, wrong secret
    const answers = [];
    for (const [i, g] of guesses.entries()) answers.push(await ask(g, `192.0.2.${i + 1}`));
    expect(answers.slice(0, MAX_PER_PREFIX - 1).every((d) => d.reason === "KEY_INVALID")).toBe(true);
    expect(answers.slice(MAX_PER_PREFIX - 1).map((d) => d.reason)).toEqual(["RATE_LIMITED", "RATE_LIMITED", "RATE_LIMITED"]);
    // The owner's key, from an address that never failed, or from none at all.
    const owner = await ask(key.secret, "192.0.2.200");
    expect(owner).toMatchObject({ allowed: true, keyId: key.id });
    await release(owner);
    const noAddress = await ask(key.secret);
    expect(noAddress.allowed).toBe(true);
    await release(noAddress);
    // A key that is merely well formed for another id is not affected by this prefix's block.
    expect((await ask(mintToken(format, newId("apiKey")), "192.0.2.201")).reason).toBe("KEY_INVALID");
  });

  it("each block is recorded as an AUTH_FAILURE_BURST anomaly with its evidence (the source, or the key prefix and its tenant)", async () => {
    const q = `{ anomalies(kind: AUTH_FAILURE_BURST) { nodes { kind tenantId keyId source keyPrefix evidence action actionResult } } }`;
    const nodes = await until("two AUTH_FAILURE_BURST anomalies", async () => {
      const n = (await t.admin.ok(q)).anomalies.nodes;
      return n.length >= 2 ? n : null;
    });
    const bySource = nodes.find((a: any) => a.source !== null);
    const byPrefix = nodes.find((a: any) => a.keyPrefix !== null);
    expect(nodes).toHaveLength(2);
    expect(bySource).toMatchObject({ source: "198.51.100.7", keyPrefix: null, tenantId: null, action: "THROTTLE", evidence: { scope: "source", failures: MAX_PER_SOURCE, blockedSeconds: BLOCK_S } });
    expect(byPrefix).toMatchObject({ keyPrefix: `llm_${key.id.slice(4)}`, keyId: key.id, tenantId, action: "THROTTLE", evidence: { scope: "prefix", failures: MAX_PER_PREFIX } });
    expect(byPrefix.actionResult).toBe(`key prefix throttled for ${BLOCK_S} s`);
  });

  it("normal failures below the thresholds are not an anomaly and throttle nobody", async () => {
    const before = (await t.admin.ok(`{ anomalies { nodes { id } } }`)).anomalies.nodes.length;
    for (let i = 0; i < MAX_PER_SOURCE - 1; i++) expect((await ask(`typo-${i}`, "203.0.113.50")).reason).toBe("KEY_INVALID");
    const ok = await ask(key.secret, "203.0.113.50");
    expect(ok.allowed).toBe(true);
    await release(ok);
    await new Promise((r) => setTimeout(r, 300));
    expect((await t.admin.ok(`{ anomalies { nodes { id } } }`)).anomalies.nodes.length).toBe(before);
  });

  it("refuses a client address that could not be one (it becomes part of Redis key names)", async () => {
    const r = await gw.request(`mutation($input: CheckAndReserveInput!) { checkAndReserve(input: $input) { outcome } }`, {
      input: { apiKey: key.secret, route: "chat.completions", model: "m-auth", inputTokens: 1, clientAddress: "evil}{t:x}" },
    });
    expect(r.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
    expect(r.errors?.[0]?.message).toMatch(/input\.clientAddress/);
  });
});
