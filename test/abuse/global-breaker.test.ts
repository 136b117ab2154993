import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TestApp } from "../support/app.js";
import type { GraphQLClient } from "../support/client.js";
import { commit, createGateway, createKey, RELEASE, reserve } from "../support/enforcement.js";
import { query, upsertModel } from "../operator/support.js";
import { createAbuseTier, createTenantOn, sleep, startAbuseApp, until } from "./support.js";

/**
 * The global breaker trips on its own: every tenant's spend added up against the global bar,
 * while no single tenant is anywhere near its own (tier breakers are off here).
 */
describe("global spend breaker", () => {
  let t: TestApp;
  let gw: GraphQLClient;
  const tenants: Array<{ id: string; key: { id: string; secret: string } }> = [];

  const spend = async (secret: string, inputTokens: number) => {
    const d = await reserve(gw, { apiKey: secret, model: "m-glob", inputTokens, maxOutputTokens: 1 });
    expect(d.allowed).toBe(true);
    expect((await commit(gw, d.reservation.id, inputTokens, 0)).errors).toBeUndefined();
  };
  const globalState = async () => (await t.admin.ok(`{ globalBreaker { state manual windowSpendUsd thresholdUsd } }`)).globalBreaker;

  beforeAll(async () => {
    t = await startAbuseApp({
      WORKERS_ENABLED: "true",
      GLOBAL_BREAKER_MIN_SPEND_USD: "0.03",
      GLOBAL_BREAKER_WINDOW_SECONDS: "10",
      GLOBAL_BREAKER_COOLDOWN_SECONDS: "600",
    });
    await upsertModel(t.admin, { name: "m-glob", contextWindow: 100_000, inputPriceUsdPerMTok: "1", outputPriceUsdPerMTok: "1" });
    const tierId = await createAbuseTier(t.admin, { breaker: { enabled: false } });
    for (let i = 0; i < 2; i++) {
      const id = await createTenantOn(t.admin, tierId);
      tenants.push({ id, key: await createKey(t, id) });
    }
    gw = await createGateway(t);
  }, 60_000);
  afterAll(async () => t?.close());

  it("small spend stays under the $0.03 bar; two tenants at $0.02 each, neither over it alone, open it for everyone", async () => {
    await spend(tenants[0]!.key.secret, 5_000); // $0.005
    await sleep(1_000); // several evaluation passes
    expect((await globalState()).state).toBe("CLOSED");

    await spend(tenants[0]!.key.secret, 20_000); // $0.02
    await spend(tenants[1]!.key.secret, 20_000);
    await until("the global breaker to open", async () => (await globalState()).state === "OPEN", 20_000);
    const g = await globalState();
    expect(g).toMatchObject({ state: "OPEN", manual: false, windowSpendUsd: "0.045000000" });
    // The $0.03 floor: the $0.005 learned as "usual" makes 3× the usual far less than that.
    expect(g.thresholdUsd).toBe("0.030000000");
    await until("this replica's cache to deny", async () => (await reserve(gw, { apiKey: tenants[0]!.key.secret, model: "m-glob", inputTokens: 1 })).reason === "CIRCUIT_OPEN", 15_000);
    for (const who of tenants) {
      expect((await reserve(gw, { apiKey: who.key.secret, model: "m-glob", inputTokens: 1 })).reason).toBe("CIRCUIT_OPEN");
      const crit = await reserve(gw, { apiKey: who.key.secret, model: "m-glob", inputTokens: 1, priority: "CRITICAL" });
      expect(crit.allowed).toBe(true);
      await gw.request(RELEASE, { id: crit.reservation.id });
    }
    const events = (await query(t.databaseUrl, `SELECT type, tenant_id, payload FROM outbox_events WHERE scope = 'global'`)) as any[];
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: "breaker.opened", tenant_id: null, payload: { scope: "global", state: "OPEN", manual: false, actor: "abuse-monitor", windowSpendUsd: "0.045000000" } });
    // No tenant breaker moved: each tenant alone was never over anything.
    expect((await query(t.databaseUrl, `SELECT 1 FROM outbox_events WHERE scope = 'tenant'`)).length).toBe(0);

    await t.admin.ok(`mutation { closeGlobalBreaker { state } }`);
    await until("traffic to flow again", async () => (await reserve(gw, { apiKey: tenants[1]!.key.secret, model: "m-glob", inputTokens: 1 })).allowed === true, 5_000);
  });
});
