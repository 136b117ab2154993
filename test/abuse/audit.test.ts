import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TestApp } from "../support/app.js";
import { GraphQLClient } from "../support/client.js";
import { commit, createKey, reserve } from "../support/enforcement.js";
import { apiKeyFormat, mintToken } from "../../src/auth/api-key-format.js";
import { credentialClient, query, upsertModel } from "../operator/support.js";
import { createAbuseTier, createTenantOn, startAbuseApp, until } from "./support.js";

/**
 * The audit trail: an entry for each kind of event (operator action, denial, degradation,
 * breaker transition, anomaly) with actor, tenant, key, route, model, token counts, decision
 * and reason; filters and cursor pages; tenant admins scoped to their tenant; a flood of
 * denials aggregated per minute instead of dropped; and no secret anywhere in it.
 */
const AUDIT = `query($tenantId: ID, $kind: AuditKind, $actorId: String, $from: DateTimeISO, $to: DateTimeISO, $first: Int, $after: String) {
  auditLog(tenantId: $tenantId, kind: $kind, actorId: $actorId, from: $from, to: $to, first: $first, after: $after) {
    nodes { id at kind actorKind actorId tenantId keyId action targetType targetId route model inputTokens outputTokens decision reason count source details }
    pageInfo { hasNextPage endCursor }
  }
}`;

describe("audit trail", () => {
  let t: TestApp;
  let gw: GraphQLClient;
  let gatewayId: string;
  let gatewaySecret: string;
  let tenantId: string;
  let otherTenant: string;
  let key: { id: string; secret: string };
  const guesses: string[] = [];

  const audit = async (vars: Record<string, unknown>, client?: GraphQLClient) => (await (client ?? t.admin).ok(AUDIT, { first: 200, ...vars })).auditLog;
  const ask = (extra: Record<string, unknown>) => reserve(gw, { apiKey: key.secret, model: "m-aud", inputTokens: 10, maxOutputTokens: 20, ...extra });

  beforeAll(async () => {
    t = await startAbuseApp({ AUTH_THROTTLE_MAX_FAILURES_PER_SOURCE: "3", AUTH_THROTTLE_MAX_FAILURES_PER_PREFIX: "1000" });
    await upsertModel(t.admin, { name: "m-aud", contextWindow: 100_000, inputPriceUsdPerMTok: "1", outputPriceUsdPerMTok: "2" });
    const tierId = await createAbuseTier(t.admin, {
      allowedModels: ["m-aud"],
      tenantLimits: { dailyTokens: "1000" },
      // From 10% of the daily tokens on, requests are shaped down: an ALLOW_DEGRADED decision.
      degradationLadder: [{ atPercent: 10, of: "DAILY_TOKENS", maxOutputTokens: 5 }],
    });
    tenantId = await createTenantOn(t.admin, tierId);
    otherTenant = await createTenantOn(t.admin, tierId);
    key = await createKey(t, tenantId);
    const cred = await t.admin.ok(`mutation { createCredential(input: { role: GATEWAY, name: "edge-1" }) { secret credential { id } } }`);
    gatewayId = cred.createCredential.credential.id;
    gatewaySecret = cred.createCredential.secret;
    gw = new GraphQLClient(t.url, gatewaySecret);

    // A flood of denials: a model the tier does not allow, 200 at once.
    const denied = await Promise.all(Array.from({ length: 200 }, () => ask({ model: "m-forbidden" })));
    expect(denied.every((d) => d.reason === "MODEL_FORBIDDEN")).toBe(true);
    // Usage past the 10% rung, then a degraded decision.
    const d = await ask({ inputTokens: 150, maxOutputTokens: 0 });
    await commit(gw, d.reservation.id, 150, 0);
    const degraded = await ask({ subject: "user-7" });
    expect(degraded).toMatchObject({ outcome: "ALLOW_DEGRADED", reason: "DEGRADED" });
    // A breaker opened and closed by hand.
    await t.admin.ok(`mutation($id: ID!) { openBreaker(tenantId: $id, reason: "audit test") { state } }`, { id: tenantId });
    await t.admin.ok(`mutation($id: ID!) { closeBreaker(tenantId: $id) { state } }`, { id: tenantId });
    // A failed-auth burst from one address: wrong secrets for the real key, then blocked.
    for (let i = 0; i < 3; i++) {
      const g = mintToken(apiKeyFormat("llm"), key.id);
      guesses.push(g);
      await reserve(gw, { apiKey: g, model: "m-aud", inputTokens: 1, clientAddress: "198.51.100.23" });
    }
    await t.app.services.abuse.observer.flush();
    await until("the AUTH_FAILURE_BURST anomaly", async () => (await query(t.databaseUrl, `SELECT 1 FROM anomalies`)).length > 0);
  }, 60_000);
  afterAll(async () => t?.close());

  it("has an entry for each kind of event, with who, what, where and the figures", async () => {
    const operator = (await audit({ kind: "OPERATOR" })).nodes;
    expect(operator.find((e: any) => e.action === "apiKey.create" && e.keyId === key.id)).toMatchObject({ actorKind: "bootstrap", tenantId, kind: "OPERATOR" });
    expect(operator.map((e: any) => e.action)).toEqual(expect.arrayContaining(["breaker.opened", "breaker.closed", "credential.create", "tier.create", "tenant.create"]));

    const denials = (await audit({ kind: "DENIAL", tenantId })).nodes.filter((e: any) => e.reason === "MODEL_FORBIDDEN");
    expect(denials.reduce((s: number, e: any) => s + e.count, 0)).toBe(200);
    expect(denials.length).toBeLessThanOrEqual(2); // one row per minute (two if the flood straddled one)
    expect(denials[0]).toMatchObject({
      kind: "DENIAL",
      action: "decision.denied",
      actorKind: "credential",
      actorId: gatewayId,
      tenantId,
      keyId: key.id,
      route: "chat.completions",
      model: "m-forbidden",
      decision: "DENY",
      reason: "MODEL_FORBIDDEN",
    });
    expect(denials.reduce((s: number, e: any) => s + Number(e.inputTokens), 0)).toBe(200 * 10);
    expect(denials.reduce((s: number, e: any) => s + Number(e.outputTokens), 0)).toBe(200 * 20);
    expect(denials[0].details.message).toMatch(/not allowed/);

    const degradations = (await audit({ kind: "DEGRADATION" })).nodes;
    expect(degradations).toHaveLength(1);
    expect(degradations[0]).toMatchObject({ kind: "DEGRADATION", action: "decision.degraded", decision: "ALLOW_DEGRADED", reason: "DEGRADED", count: 1, model: "m-aud", inputTokens: "10", outputTokens: "5", tenantId, keyId: key.id, actorId: gatewayId });

    const breaker = (await audit({ kind: "BREAKER", tenantId })).nodes;
    expect(breaker.map((e: any) => e.action)).toEqual(["breaker.closed", "breaker.opened"]); // newest first
    expect(breaker[1]).toMatchObject({ actorKind: "bootstrap", targetType: "breaker", targetId: tenantId, details: { reason: "audit test", state: "OPEN", manual: true } });

    const anomaly = (await audit({ kind: "ANOMALY" })).nodes;
    expect(anomaly).toHaveLength(1);
    expect(anomaly[0]).toMatchObject({ kind: "ANOMALY", action: "anomaly.auth_failure_burst", actorKind: "system", actorId: "abuse-monitor", targetType: "source", targetId: "198.51.100.23" });

    const authDenials = (await audit({ kind: "DENIAL" })).nodes.filter((e: any) => e.source === "198.51.100.23");
    expect(authDenials.map((e: any) => [e.reason, e.count, e.tenantId, e.keyId, e.targetId])).toEqual(
      expect.arrayContaining([
        ["KEY_INVALID", 2, null, null, `llm_${key.id.slice(4)}`],
        ["RATE_LIMITED", 1, null, null, `llm_${key.id.slice(4)}`],
      ]),
    );
  });

  it("holds no secret: neither the key, its secret part, the guesses nor the gateway's token appear anywhere", async () => {
    const everything = JSON.stringify((await audit({ first: 200 })).nodes);
    const raw = JSON.stringify([
      await query(t.databaseUrl, `SELECT * FROM audit_log`),
      await query(t.databaseUrl, `SELECT * FROM decision_audit`),
      await query(t.databaseUrl, `SELECT * FROM anomalies`),
      await query(t.databaseUrl, `SELECT * FROM outbox_events`),
    ]);
    const secretPart = (s: string) => s.split("_")[2]!;
    for (const s of [key.secret, secretPart(key.secret), gatewaySecret, secretPart(gatewaySecret), ...guesses, ...guesses.map(secretPart)]) {
      expect(everything.includes(s), `audit trail contains a secret`).toBe(false);
      expect(raw.includes(s), `audit tables contain a secret`).toBe(false);
    }
    expect(raw).toContain(key.id); // the search itself works: public ids are there
  });

  it("filters by tenant, actor and time range, and pages by cursor without gaps or repeats", async () => {
    const all = (await audit({})).nodes;
    const sortKeys = all.map((e: any) => Date.parse(e.at));
    expect([...sortKeys].sort((a, b) => b - a)).toEqual(sortKeys);

    const paged: string[] = [];
    let after: string | null = null;
    for (let i = 0; i < 100; i++) {
      const page: any = await audit({ first: 3, after });
      paged.push(...page.nodes.map((e: any) => e.id));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    expect(paged).toEqual(all.map((e: any) => e.id));
    expect(new Set(paged).size).toBe(paged.length);

    const byGateway = (await audit({ actorId: gatewayId })).nodes;
    expect(byGateway.length).toBeGreaterThan(0);
    expect(byGateway.every((e: any) => e.actorId === gatewayId)).toBe(true);
    expect((await audit({ tenantId })).nodes.every((e: any) => e.tenantId === tenantId)).toBe(true);
    expect((await audit({ from: new Date(Date.now() + 3_600_000).toISOString() })).nodes).toEqual([]);
    expect((await audit({ to: new Date(Date.now() - 3_600_000).toISOString() })).nodes).toEqual([]);
    const last = all[all.length - 1];
    expect((await audit({ to: last.at })).nodes).toEqual([]);
    expect((await audit({ from: last.at })).nodes.length).toBe(all.length);
    expect((await t.admin.request(AUDIT, { after: "bm9wZQ" })).errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
  });

  it("a tenant admin reads only its own tenant's entries", async () => {
    const own = await credentialClient(t, "TENANT_ADMIN", tenantId);
    const mine = (await audit({}, own)).nodes;
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.every((e: any) => e.tenantId === tenantId)).toBe(true);
    const other = await credentialClient(t, "TENANT_ADMIN", otherTenant);
    const theirs = (await audit({}, other)).nodes;
    expect(theirs.every((e: any) => e.tenantId === otherTenant)).toBe(true);
    expect(theirs.some((e: any) => e.action === "tenant.create")).toBe(true);
    const foreign = await other.request(AUDIT, { tenantId });
    expect(foreign.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
  });
});
