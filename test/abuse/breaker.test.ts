import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TestApp } from "../support/app.js";
import { GraphQLClient, errorCode } from "../support/client.js";
import { commit, createGateway, createKey, RELEASE, reserve } from "../support/enforcement.js";
import { spawnServer, type ServerProcess } from "../support/process.js";
import { expectBadInput, query, upsertModel } from "../operator/support.js";
import { BREAKER_FIELDS, createAbuseTier, createTenantOn, outboxEvents, sleep, startAbuseApp, until } from "./support.js";

/**
 * Spend circuit breakers end to end: real traffic over HTTP, commit-time spend counters in
 * Redis, the BullMQ abuse job evaluating them every 200 ms, and a second replica that must see
 * the global breaker. Windows are seconds long (one-second buckets) so the test can watch the
 * whole open → half-open → closed cycle.
 */
// Seconds, yet wide enough that a loaded CI machine (evaluations late by a second or two) still
// sees the spike inside the window.
const WINDOW_S = 5;
const COOLDOWN_S = 6;
const ONE_IN = 3;

describe("spend circuit breakers", () => {
  let t: TestApp;
  let other: ServerProcess | null = null;
  let gw: GraphQLClient;
  let spiky: { tenantId: string; key: { id: string; secret: string } };
  let quiet: { tenantId: string; key: { id: string; secret: string } };

  const breakerOf = async (tenantId: string) => (await t.admin.ok(`query($id: ID!) { breaker(tenantId: $id) { ${BREAKER_FIELDS} } }`, { id: tenantId })).breaker;
  const ask = (secret: string, extra: Record<string, unknown> = {}) => reserve(gw, { apiKey: secret, model: "m-brk", inputTokens: 1, maxOutputTokens: 1, ...extra });

  beforeAll(async () => {
    t = await startAbuseApp({ WORKERS_ENABLED: "true" });
    // $1 per million input tokens: 10 000 tokens cost exactly $0.01.
    await upsertModel(t.admin, { name: "m-brk", contextWindow: 100_000, inputPriceUsdPerMTok: "1", outputPriceUsdPerMTok: "2" });
    const tierId = await createAbuseTier(t.admin, {
      breaker: { multiplier: 3, windowSeconds: WINDOW_S, minSpendUsd: "0.015", cooldownSeconds: COOLDOWN_S, halfOpenOneIn: ONE_IN, baselineSeconds: 3600 },
    });
    const a = await createTenantOn(t.admin, tierId);
    const b = await createTenantOn(t.admin, tierId);
    spiky = { tenantId: a, key: await createKey(t, a) };
    quiet = { tenantId: b, key: await createKey(t, b) };
    gw = await createGateway(t);
  }, 60_000);
  afterAll(async () => {
    await other?.kill();
    await t?.close();
  });

  it("tier breaker settings round-trip through the operator API", async () => {
    const tier = await t.admin.ok(`query($id: ID!) { tenant(id: $id) { tier { breaker { enabled multiplier windowSeconds minSpendUsd cooldownSeconds halfOpenOneIn baselineSeconds } } } }`, {
      id: spiky.tenantId,
    });
    expect(tier.tenant.tier.breaker).toEqual({ enabled: true, multiplier: 3, windowSeconds: WINDOW_S, minSpendUsd: "0.015000000", cooldownSeconds: COOLDOWN_S, halfOpenOneIn: ONE_IN, baselineSeconds: 3600 });
  });

  it("a spend spike opens the breaker within the window: non-CRITICAL denied, CRITICAL passes, the quiet tenant beside it untouched", async () => {
    // The quiet tenant spends a little all along.
    const q = await ask(quiet.key.secret, { inputTokens: 100 });
    expect(q.allowed).toBe(true);
    expect((await commit(gw, q.reservation.id, 100, 0)).errors).toBeUndefined();

    // The spike: two commits of $0.01 each ($0.02 ≥ the $0.015 floor; no baseline yet).
    for (let i = 0; i < 2; i++) {
      const d = await ask(spiky.key.secret, { inputTokens: 10_000 });
      expect(d.allowed).toBe(true);
      expect((await commit(gw, d.reservation.id, 10_000, 0)).errors).toBeUndefined();
    }
    const spikeAt = Date.now();
    const denied = await until("CIRCUIT_OPEN", async () => {
      const d = await ask(spiky.key.secret);
      if (d.allowed) await gw.request(RELEASE, { id: d.reservation.id });
      return d.reason === "CIRCUIT_OPEN" ? d : null;
    });
    const tookMs = Date.now() - spikeAt;
    console.log(`breaker opened ${tookMs} ms after the spike`);
    expect(tookMs).toBeLessThan(WINDOW_S * 1000);
    expect(denied).toMatchObject({ allowed: false, outcome: "DENY", reason: "CIRCUIT_OPEN", tenantId: spiky.tenantId, keyId: spiky.key.id });

    const crit = await ask(spiky.key.secret, { priority: "CRITICAL" });
    expect(crit).toMatchObject({ allowed: true, outcome: "ALLOW" });
    await gw.request(RELEASE, { id: crit.reservation.id });
    expect((await ask(spiky.key.secret, { priority: "BACKGROUND" })).reason).toBe("CIRCUIT_OPEN");

    const quietD = await ask(quiet.key.secret);
    expect(quietD).toMatchObject({ allowed: true, outcome: "ALLOW" });
    await gw.request(RELEASE, { id: quietD.reservation.id });
    expect((await breakerOf(quiet.tenantId)).state).toBe("CLOSED");

    const b = await breakerOf(spiky.tenantId);
    expect(b).toMatchObject({ scope: "TENANT", tenantId: spiky.tenantId, state: "OPEN", manual: false, changedBy: "abuse-monitor", thresholdUsd: "0.015000000" });
    expect(b.reason).toMatch(/spend of \$0\.02 in the last 5 s reached the bar/);
    expect(new Date(b.cooldownUntil).getTime()).toBeGreaterThan(Date.now());
    const opened = await outboxEvents(t, "breaker.opened", spiky.tenantId);
    expect(opened).toHaveLength(1);
    expect(opened[0]!.payload).toMatchObject({ scope: "tenant", from: "CLOSED", state: "OPEN", windowSpendUsd: "0.020000000", thresholdUsd: "0.015000000" });
    expect(await outboxEvents(t, "breaker.opened", quiet.tenantId)).toHaveLength(0);
  });

  it("after the cooldown it is half-open (1 in N through), then closes once the rate is back", async () => {
    await until("HALF_OPEN", async () => (await breakerOf(spiky.tenantId)).state === "HALF_OPEN", 15_000, 100);
    // Until a replica has heard of the half-open state its breaker flag still denies everything;
    // pub/sub tells it within moments, the refresh here just makes the count below exact.
    await t.app.services.abuse.state.refresh();
    // Exactly one non-CRITICAL request in ONE_IN passes; released, the trickle spends nothing.
    const outcomes: string[] = [];
    for (let i = 0; i < 2 * ONE_IN; i++) {
      const d = await ask(spiky.key.secret);
      outcomes.push(d.allowed ? "ALLOW" : d.reason);
      if (d.allowed) await gw.request(RELEASE, { id: d.reservation.id });
    }
    expect(outcomes.filter((o) => o === "ALLOW")).toHaveLength(2);
    expect(outcomes.filter((o) => o === "CIRCUIT_OPEN")).toHaveLength(2 * ONE_IN - 2);
    expect((await ask(spiky.key.secret, { priority: "CRITICAL" })).allowed).toBe(true);

    await until("CLOSED", async () => (await breakerOf(spiky.tenantId)).state === "CLOSED", 15_000, 100);
    await t.app.services.abuse.state.refresh();
    const after = await ask(spiky.key.secret);
    expect(after).toMatchObject({ allowed: true, outcome: "ALLOW" });
    await gw.request(RELEASE, { id: after.reservation.id });

    const states = [...(await outboxEvents(t, "breaker.opened", spiky.tenantId)), ...(await outboxEvents(t, "breaker.closed", spiky.tenantId))].map((e) => `${e.type}:${e.payload.state}`);
    expect(states).toEqual(["breaker.opened:OPEN", "breaker.opened:HALF_OPEN", "breaker.closed:CLOSED"]);
    const audit = await query(t.databaseUrl, `SELECT action, actor_kind, actor_id, details FROM audit_log WHERE tenant_id = $1 AND action LIKE 'breaker.%' ORDER BY id`, [spiky.tenantId]);
    expect(audit.map((a: any) => a.action)).toEqual(["breaker.opened", "breaker.half_opened", "breaker.closed"]);
    expect(audit.every((a: any) => a.actor_kind === "system" && a.actor_id === "abuse-monitor")).toBe(true);
  });

  it("a tenant is judged against its own usual spend: its ledger history sets the bar a newcomer would trip", async () => {
    // A tenant that spent $36 over the last hour ($0.01 a second, $0.05 per 5-second window)
    // before the abuse job ever saw it, as the ledger shows.
    const tierId = (await t.admin.ok(`query($id: ID!) { tenant(id: $id) { tier { id } } }`, { id: spiky.tenantId })).tenant.tier.id;
    const busyId = await createTenantOn(t.admin, tierId);
    const busy = { tenantId: busyId, key: await createKey(t, busyId) };
    const now = Date.now();
    for (const [ago, cost] of [[3_590_000, 18_000_000_000], [60_000, 18_000_000_000]] as const) {
      const at = new Date(now - ago);
      await query(
        t.databaseUrl,
        `INSERT INTO usage_ledger (reservation_id, entry, tenant_id, key_id, route, model, status, input_tokens, output_tokens, reserved_input_tokens, reserved_output_tokens, cost_nano, period_day, period_month, reserved_at, recorded_at)
         VALUES ($1, 'COMMIT', $2, $3, 'chat.completions', 'm-brk', 'SUCCEEDED', 1, 0, 1, 0, $4, $5, $6, $7, $7)`,
        [`res_hist${ago}`, busyId, busy.key.id, cost, at.toISOString().slice(0, 10), at.toISOString().slice(0, 7), at],
      );
    }
    // $0.04 in a few seconds: a newcomer's breaker (bar $0.015) would open; this tenant's does not.
    for (let i = 0; i < 4; i++) {
      const d = await ask(busy.key.secret, { inputTokens: 10_000 });
      expect(d.allowed).toBe(true);
      await commit(gw, d.reservation.id, 10_000, 0);
    }
    await sleep(1_500); // several evaluation passes
    const b = await breakerOf(busyId);
    expect(b.state).toBe("CLOSED");
    expect(Number(b.baselineUsdPerWindow)).toBeCloseTo(0.05, 2);
    expect(Number(b.thresholdUsd)).toBeCloseTo(0.15, 2); // 3× its usual
    // Over three times its usual rate ($0.20 within the window, whatever is left of the $0.04) opens it.
    for (let i = 0; i < 20; i++) {
      const d = await ask(busy.key.secret, { inputTokens: 10_000 });
      if (!d.allowed) break;
      await commit(gw, d.reservation.id, 10_000, 0);
    }
    await until("the busy tenant's breaker to open", async () => (await breakerOf(busyId)).state === "OPEN", 5_000, 100);
    await t.admin.ok(`mutation($id: ID!) { closeBreaker(tenantId: $id) { state } }`, { id: busyId });
  });

  it("operators open and close a tenant breaker by hand; a manual open outlasts any cooldown", async () => {
    const opened = await t.admin.ok(`mutation($id: ID!) { openBreaker(tenantId: $id, reason: "leaked key suspected") { ${BREAKER_FIELDS} } }`, { id: quiet.tenantId });
    expect(opened.openBreaker).toMatchObject({ state: "OPEN", manual: true, reason: "leaked key suspected", changedBy: "bootstrap", cooldownUntil: null });
    expect((await ask(quiet.key.secret)).reason).toBe("CIRCUIT_OPEN");
    expect((await ask(quiet.key.secret, { priority: "CRITICAL" })).allowed).toBe(true);
    await sleep((COOLDOWN_S + 1) * 1000); // well past the tier's cooldown: the job must leave it open
    expect((await breakerOf(quiet.tenantId)).state).toBe("OPEN");
    expect((await ask(quiet.key.secret)).reason).toBe("CIRCUIT_OPEN");

    const closed = await t.admin.ok(`mutation($id: ID!) { closeBreaker(tenantId: $id) { state manual changedBy } }`, { id: quiet.tenantId });
    expect(closed.closeBreaker).toEqual({ state: "CLOSED", manual: false, changedBy: "bootstrap" });
    const d = await ask(quiet.key.secret);
    expect(d.allowed).toBe(true);
    await gw.request(RELEASE, { id: d.reservation.id });

    const events = [...(await outboxEvents(t, "breaker.opened", quiet.tenantId)), ...(await outboxEvents(t, "breaker.closed", quiet.tenantId))];
    expect(events.map((e) => [e.type, e.payload.manual, e.payload.actor])).toEqual([
      ["breaker.opened", true, "bootstrap"],
      ["breaker.closed", true, "bootstrap"],
    ]);
    const audit = await query(t.databaseUrl, `SELECT action, actor_kind, details FROM audit_log WHERE tenant_id = $1 AND action LIKE 'breaker.%' ORDER BY id`, [quiet.tenantId]);
    expect(audit.map((a: any) => [a.action, a.actor_kind])).toEqual([
      ["breaker.opened", "bootstrap"],
      ["breaker.closed", "bootstrap"],
    ]);
    expect(audit[0].details.reason).toBe("leaked key suspected");
  });

  it("refuses what an operator may not do (other roles, unknown tenants, empty reasons, bad tier settings); omitted settings are the defaults", async () => {
    const billing = await t.admin.ok(`mutation { createCredential(input: { role: BILLING, name: "b" }) { secret } }`);
    const asBilling = t.client(billing.createCredential.secret);
    expect(errorCode(await asBilling.request(`mutation($id: ID!) { openBreaker(tenantId: $id, reason: "x") { state } }`, { id: quiet.tenantId }))).toBe("FORBIDDEN");
    expect(errorCode(await t.admin.request(`mutation { openBreaker(tenantId: "ten_doesnotexist0000", reason: "x") { state } }`))).toBe("NOT_FOUND");
    expect(errorCode(await t.admin.request(`mutation($id: ID!) { openBreaker(tenantId: $id, reason: "  ") { state } }`, { id: quiet.tenantId }))).toBe("BAD_USER_INPUT");
    const tierWith = (settings: Record<string, unknown>) =>
      t.admin.request(`mutation($input: CreateTierInput!) { createTier(input: $input) { id } }`, { input: { name: `bad-${Math.random()}`, maxOutputTokens: 10, ...settings } });
    expectBadInput(await tierWith({ breaker: { multiplier: 0.5 } }), "input.breaker.multiplier", /from 1 to 10000/);
    expectBadInput(await tierWith({ breaker: { minSpendUsd: "-1" } }), "input.breaker.minSpendUsd");
    expectBadInput(await tierWith({ breaker: { windowSeconds: 0 } }), "input.breaker.windowSeconds");
    expectBadInput(await tierWith({ anomaly: { minRequests: 0 } }), "input.anomaly.minRequests");
    // A tier that names no settings gets the defaults.
    const fresh = await t.admin.ok(`mutation { createTier(input: { name: "defaults", maxOutputTokens: 10 }) { breaker { enabled multiplier windowSeconds minSpendUsd cooldownSeconds halfOpenOneIn } anomaly { action volumeMultiplier minRequests windowSeconds } } }`);
    expect(fresh.createTier).toEqual({
      breaker: { enabled: true, multiplier: 3, windowSeconds: 600, minSpendUsd: "10.000000000", cooldownSeconds: 600, halfOpenOneIn: 10 },
      anomaly: { action: "NONE", volumeMultiplier: 100, minRequests: 1000, windowSeconds: 3600 },
    });
  });

  it("the global breaker is cached by every replica: open stops non-CRITICAL traffic of every tenant on both, close restores it", async () => {
    other = await spawnServer({ ...t.env, WORKERS_ENABLED: "false" });
    const cred = await t.admin.ok(`mutation { createCredential(input: { role: GATEWAY, name: "gw2" }) { secret } }`);
    const gw2 = new GraphQLClient(other.url, cred.createCredential.secret);
    const askOn = (c: GraphQLClient, secret: string, extra: Record<string, unknown> = {}) =>
      reserve(c, { apiKey: secret, model: "m-brk", inputTokens: 1, maxOutputTokens: 1, ...extra });

    const g = await t.admin.ok(`mutation { openGlobalBreaker(reason: "provider incident") { scope state manual reason } }`);
    expect(g.openGlobalBreaker).toEqual({ scope: "GLOBAL", state: "OPEN", manual: true, reason: "provider incident" });
    const started = Date.now();
    await until("the other replica to see the global breaker", async () => (await askOn(gw2, quiet.key.secret)).reason === "CIRCUIT_OPEN", 5_000);
    console.log(`global breaker seen on the other replica after ${Date.now() - started} ms`);
    for (const c of [gw, gw2]) {
      for (const who of [quiet, spiky]) {
        const d = await askOn(c, who.key.secret);
        expect(d).toMatchObject({ allowed: false, reason: "CIRCUIT_OPEN" });
        expect(d.message).toMatch(/global/);
        const crit = await askOn(c, who.key.secret, { priority: "CRITICAL" });
        expect(crit.allowed).toBe(true);
        await c.request(RELEASE, { id: crit.reservation.id });
      }
    }
    expect((await t.admin.ok(`{ globalBreaker { state manual } }`)).globalBreaker).toEqual({ state: "OPEN", manual: true });

    await t.admin.ok(`mutation { closeGlobalBreaker { state } }`);
    await until("the other replica to see the global breaker closed", async () => (await askOn(gw2, quiet.key.secret)).allowed === true, 5_000);
    expect((await askOn(gw, spiky.key.secret)).allowed).toBe(true);
    const events = (await query(t.databaseUrl, `SELECT type, tenant_id, scope, payload FROM outbox_events WHERE scope = 'global' ORDER BY seq`)) as any[];
    expect(events.map((e) => [e.type, e.tenant_id, e.payload.state])).toEqual([
      ["breaker.opened", null, "OPEN"],
      ["breaker.closed", null, "CLOSED"],
    ]);
    const audit = await query(t.databaseUrl, `SELECT action FROM audit_log WHERE target_type = 'breaker' AND target_id = 'global' ORDER BY id`);
    expect(audit.map((a: any) => a.action)).toEqual(["breaker.opened", "breaker.closed"]);
  }, 90_000);
});
