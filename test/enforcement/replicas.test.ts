import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.js";
import { GraphQLClient } from "../support/client.js";
import { spawnServer, type ServerProcess } from "../support/process.js";
import { RESERVE } from "../support/enforcement.js";

/**
 * The whole operator → gateway flow through the public API, with the operator on one replica
 * and the gateway on another: a key revocation, a limit change and a price change made on one
 * are in force on the other within 5 s (pub/sub invalidation; the cache TTL is set far longer
 * so only the invalidation can explain it).
 */
describe("operator changes reach every replica within 5 s", () => {
  let t: TestApp;
  let other: ServerProcess;
  let gw: GraphQLClient;
  let tenantId: string;
  let secret: string;
  let keyId: string;

  beforeAll(async () => {
    t = await startTestApp({ CACHE_TTL_MS: "600000" });
    other = await spawnServer(t.env);
    const a = t.admin;
    await a.ok(`mutation { upsertModel(input: { name: "gpt-x", inputPriceUsdPerMTok: "1", outputPriceUsdPerMTok: "2", contextWindow: 8000 }) { name } }`);
    const tier = await a.ok(`mutation { createTier(input: { name: "standard", maxOutputTokens: 1000, defaultMaxOutputTokens: 100 }) { id } }`);
    const tenant = await a.ok(`mutation($tier: ID!) { createTenant(input: { name: "Acme", tierId: $tier, timezone: "Europe/Paris" }) { id } }`, { tier: tier.createTier.id });
    tenantId = tenant.createTenant.id;
    const key = await a.ok(`mutation($t: ID!) { createApiKey(input: { tenantId: $t, name: "prod" }) { apiKey { id } secret } }`, { t: tenantId });
    secret = key.createApiKey.secret;
    keyId = key.createApiKey.apiKey.id;
    const cred = await a.ok(`mutation { createCredential(input: { role: GATEWAY, name: "edge" }) { secret } }`);
    gw = new GraphQLClient(other.url, cred.createCredential.secret);
  }, 120_000);
  afterAll(async () => {
    await other?.kill();
    await t?.close();
  });

  const reserveOnOther = async (inputTokens = 1000) =>
    (await gw.request(RESERVE, { input: { apiKey: secret, route: "chat.completions", model: "gpt-x", inputTokens, maxOutputTokens: 100 } })).data.checkAndReserve;

  async function within5s(check: () => Promise<boolean>): Promise<number> {
    const started = Date.now();
    while (Date.now() - started < 5_000) {
      if (await check()) return Date.now() - started;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error("not seen within 5 s");
  }

  it("a price change applies to new reservations on the other replica", async () => {
    expect((await reserveOnOther()).reservation.costUsd).toBe("0.001200000"); // 1000×$1/M + 100×$2/M
    await t.admin.ok(`mutation { upsertModel(input: { name: "gpt-x", inputPriceUsdPerMTok: "3", outputPriceUsdPerMTok: "6" }) { name } }`);
    const ms = await within5s(async () => (await reserveOnOther()).reservation?.costUsd === "0.003600000");
    console.log(`price change seen on the other replica after ${ms} ms`);
  });

  it("a tenant limit change applies on the other replica", async () => {
    await t.admin.ok(`mutation($id: ID!) { updateTenant(id: $id, input: { limitOverrides: { dailyTokens: "1" } }) { id } }`, { id: tenantId });
    const ms = await within5s(async () => (await reserveOnOther()).reason === "QUOTA_EXCEEDED");
    console.log(`limit change seen on the other replica after ${ms} ms`);
    await t.admin.ok(`mutation($id: ID!) { updateTenant(id: $id, input: { limitOverrides: {} }) { id } }`, { id: tenantId });
  });

  it("a revoked key is refused on the other replica", async () => {
    await within5s(async () => (await reserveOnOther()).allowed === true);
    await t.admin.ok(`mutation($id: ID!) { revokeApiKey(id: $id) { status } }`, { id: keyId });
    const ms = await within5s(async () => (await reserveOnOther()).reason === "KEY_REVOKED");
    console.log(`revocation seen on the other replica after ${ms} ms`);
  });
});
