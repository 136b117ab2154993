import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.js";
import { errorCode, type GraphQLClient } from "../support/client.js";
import { createTenant, createTier, credentialClient, rowCounts, upsertModel } from "./support.js";

/**
 * Tenant scoping over HTTP with real service credentials: a tenant-bound caller sees its own
 * tenant (and its tier) and nothing of any other, and another tenant's id reads exactly like
 * an id that does not exist.
 */
describe("tenant scoping of operator reads", () => {
  let t: TestApp;
  let tierA: any;
  let tierB: any;
  let a: any;
  let b: any;
  let adminOfA: GraphQLClient;
  let billingOfB: GraphQLClient;
  let billing: GraphQLClient;
  let gateway: GraphQLClient;

  beforeAll(async () => {
    t = await startTestApp();
    tierA = await createTier(t.admin, { name: "tier-of-a", maxOutputTokens: 100 });
    tierB = await createTier(t.admin, { name: "custom-terms-for-b", maxOutputTokens: 100, tenantLimits: { monthlyBudgetUsd: "12345" } });
    a = await createTenant(t.admin, { name: "Alpha Inc", tierId: tierA.id });
    b = await createTenant(t.admin, { name: "Bravo Secret Project", tierId: tierB.id });
    await upsertModel(t.admin, { name: "m", contextWindow: 1000, inputPriceUsdPerMTok: "1", outputPriceUsdPerMTok: "1" });
    adminOfA = await credentialClient(t, "TENANT_ADMIN", a.id);
    billingOfB = await credentialClient(t, "BILLING", b.id);
    billing = await credentialClient(t, "BILLING", null);
    gateway = await credentialClient(t, "GATEWAY", null);
  });
  afterAll(async () => t?.close());

  const TENANT = `query($id: ID!) { tenant(id: $id) { id name tierId tier { id name } } }`;
  const TENANTS = `query($after: String) { tenants(first: 200, after: $after) { nodes { id name } pageInfo { hasNextPage } } }`;

  it("lets a TENANT_ADMIN read its own tenant and that tenant's tier", async () => {
    const d = await adminOfA.ok(TENANT, { id: a.id });
    expect(d.tenant).toEqual({ id: a.id, name: "Alpha Inc", tierId: tierA.id, tier: { id: tierA.id, name: "tier-of-a" } });
  });

  it("answers another tenant's id exactly like an unknown id: NOT_FOUND and no data", async () => {
    const other = await adminOfA.request(TENANT, { id: b.id });
    expect(errorCode(other)).toBe("NOT_FOUND");
    expect(other.data).toBeNull();
    const body = JSON.stringify(other);
    expect(body).not.toContain("Bravo");
    expect(body).not.toContain(tierB.id);

    const unknownId = "ten_" + "Z".repeat(16);
    const unknown = await adminOfA.request(TENANT, { id: unknownId });
    expect(errorCode(unknown)).toBe("NOT_FOUND");
    // Same shape and wording, with only the id asked for differing.
    expect(other.errors![0]!.message.replace(b.id, "<id>")).toBe(unknown.errors![0]!.message.replace(unknownId, "<id>"));
    expect(other.errors![0]!.extensions).toEqual(unknown.errors![0]!.extensions);
  });

  it("lists only the caller's own tenant, whatever the cursor", async () => {
    const d = await adminOfA.ok(TENANTS, { after: null });
    expect(d.tenants).toEqual({ nodes: [{ id: a.id, name: "Alpha Inc" }], pageInfo: { hasNextPage: false } });
    // The admin sees both, so the filter is the credential's, not an accident of the data.
    const all = await t.admin.ok(TENANTS, { after: null });
    expect(all.tenants.nodes.map((n: any) => n.id).sort()).toEqual([a.id, b.id].sort());
  });

  it("shows a tenant-bound caller only its own tenant's tier", async () => {
    expect((await adminOfA.ok(`query($id: ID!) { tier(id: $id) { id } }`, { id: tierA.id })).tier.id).toBe(tierA.id);
    const r = await adminOfA.request(`query($id: ID!) { tier(id: $id) { id name } }`, { id: tierB.id });
    expect(errorCode(r)).toBe("NOT_FOUND");
    expect(JSON.stringify(r)).not.toContain("custom-terms");
    const list = await adminOfA.ok(`{ tiers(first: 200) { nodes { id } pageInfo { hasNextPage } } }`);
    expect(list.tiers).toEqual({ nodes: [{ id: tierA.id }], pageInfo: { hasNextPage: false } });
  });

  it("lets a TENANT_ADMIN read models but change nothing", async () => {
    expect((await adminOfA.ok(`{ model(name: "m") { name currentPrice { inputPriceUsdPerMTok } } }`)).model.name).toBe("m");
    const before = await rowCounts(t.databaseUrl);
    for (const [op, vars] of [
      [`mutation($id: ID!) { updateTenant(id: $id, input: { name: "mine now" }) { id } }`, { id: a.id }],
      [`mutation($id: ID!) { suspendTenant(id: $id) { id } }`, { id: b.id }],
      [`mutation($id: ID!) { resumeTenant(id: $id) { id } }`, { id: a.id }],
      [`mutation($id: ID!) { updateTier(id: $id, input: { maxOutputTokens: 1 }) { id } }`, { id: tierA.id }],
      [`mutation { createTier(input: { name: "x", maxOutputTokens: 1 }) { id } }`, {}],
      [`mutation($tierId: ID!) { createTenant(input: { name: "x", tierId: $tierId }) { id } }`, { tierId: tierA.id }],
      [`mutation { upsertModel(input: { name: "m", inputPriceUsdPerMTok: "0", outputPriceUsdPerMTok: "0" }) { name } }`, {}],
    ] as const) {
      const r = await adminOfA.request(op, vars);
      expect(errorCode(r), op).toBe("FORBIDDEN");
      expect(r.data).toBeNull();
    }
    expect(await rowCounts(t.databaseUrl)).toEqual(before);
  });

  it("scopes a tenant-bound BILLING credential the same way, and lets an unbound one read every tenant", async () => {
    expect(errorCode(await billingOfB.request(TENANT, { id: a.id }))).toBe("NOT_FOUND");
    expect((await billingOfB.ok(TENANT, { id: b.id })).tenant.name).toBe("Bravo Secret Project");
    expect((await billingOfB.ok(TENANTS, { after: null })).tenants.nodes.map((n: any) => n.id)).toEqual([b.id]);
    const all = await billing.ok(TENANTS, { after: null });
    expect(all.tenants.nodes.map((n: any) => n.id).sort()).toEqual([a.id, b.id].sort());
  });

  it("keeps GATEWAY credentials out of operator reads", async () => {
    expect(errorCode(await gateway.request(TENANT, { id: a.id }))).toBe("FORBIDDEN");
    expect(errorCode(await gateway.request(TENANTS, { after: null }))).toBe("FORBIDDEN");
    expect(errorCode(await gateway.request(`{ models { nodes { name } } }`))).toBe("FORBIDDEN");
    const est = await gateway.ok(`{ estimateCost(model: "m", inputTokens: 1000, maxOutputTokens: 0) { inputCostUsd } }`);
    expect(est.estimateCost.inputCostUsd).toBe("0.001000000");
  });
});
