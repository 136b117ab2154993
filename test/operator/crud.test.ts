import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.js";
import { errorCode } from "../support/client.js";
import {
  createTenant,
  createTier,
  expectBadInput,
  invalidationListener,
  MODEL_FIELDS,
  query,
  TENANT_FIELDS,
  TIER_FIELDS,
  upsertModel,
  walkPages,
} from "./support.js";

/** Operator CRUD over real HTTP, Postgres and Redis: what goes in comes back, exactly. */

const FULL_TIER = {
  name: "pro",
  description: "Paid plan",
  tenantLimits: {
    requestsPerMinute: { perMinute: 600, burst: 900 },
    inputTokensPerMinute: { perMinute: 200_000 },
    outputTokensPerMinute: { perMinute: 50_000, burst: 60_000 },
    concurrentRequests: 20,
    dailyTokens: "5000000",
    monthlyTokens: "100000000000",
    dailyBudgetUsd: "25",
    monthlyBudgetUsd: "500.5",
  },
  keyLimits: { requestsPerMinute: { perMinute: 60 }, monthlyBudgetUsd: "0.000000001" },
  subjectLimits: { requestsPerMinute: { perMinute: 10 }, concurrentRequests: 2 },
  routeModelLimits: [
    { route: "chat.completions", model: "*", concurrentRequests: 5 },
    { route: "*", model: "big-model", outputTokensPerMinute: { perMinute: 1000 } },
  ],
  maxInputTokens: 100_000,
  defaultMaxOutputTokens: 1024,
  maxOutputTokens: 4096,
  allowedRoutes: ["chat.completions", "embeddings"],
  allowedModels: ["big-model", "small-model"],
  allowedTools: null,
  notifyAtPercent: [100, 50, 80, 120],
  degradationLadder: [
    { atPercent: 80, of: "MONTHLY_BUDGET", maxOutputTokens: 512, priority: "BACKGROUND", modelMap: [{ from: "big-model", to: "small-model" }] },
    { atPercent: 90, of: "DAILY_TOKENS", maxInputTokens: 8000 },
    { atPercent: 95, of: "DAILY_TOKENS", modelMap: [{ from: "*", to: "small-model" }] },
    { atPercent: 100, of: "MONTHLY_BUDGET", block: true },
  ],
  reservationTtlSeconds: 300,
  routeReservationTtlSeconds: [{ route: "batch", seconds: 3600 }],
  failOpenRateLimits: true,
};

describe("operator CRUD", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => t?.close());

  describe("tiers", () => {
    it("stores every field of a tier and reads it back exactly", async () => {
      const tier = await createTier(t.admin, FULL_TIER);
      expect(tier.id).toMatch(/^tier_[0-9A-Za-z]+$/);
      const { tier: read } = await t.admin.ok(`query($id: ID!) { tier(id: $id) { ${TIER_FIELDS} } }`, { id: tier.id });
      expect(read).toEqual(tier);
      expect(read).toMatchObject({
        name: "pro",
        description: "Paid plan",
        tenantLimits: {
          requestsPerMinute: { perMinute: 600, burst: 900 },
          // An omitted burst is the bucket's refill: shown as the effective value.
          inputTokensPerMinute: { perMinute: 200_000, burst: 200_000 },
          outputTokensPerMinute: { perMinute: 50_000, burst: 60_000 },
          concurrentRequests: 20,
          dailyTokens: "5000000",
          monthlyTokens: "100000000000",
          dailyBudgetUsd: "25.000000000",
          monthlyBudgetUsd: "500.500000000",
        },
        keyLimits: {
          requestsPerMinute: { perMinute: 60, burst: 60 },
          inputTokensPerMinute: null,
          dailyTokens: null,
          monthlyBudgetUsd: "0.000000001",
        },
        subjectLimits: { requestsPerMinute: { perMinute: 10, burst: 10 }, concurrentRequests: 2, inputTokensPerMinute: null },
        routeModelLimits: [
          { route: "chat.completions", model: "*", concurrentRequests: 5, requestsPerMinute: null },
          { route: "*", model: "big-model", outputTokensPerMinute: { perMinute: 1000, burst: 1000 }, concurrentRequests: null },
        ],
        maxInputTokens: 100_000,
        defaultMaxOutputTokens: 1024,
        maxOutputTokens: 4096,
        allowedRoutes: ["chat.completions", "embeddings"],
        allowedModels: ["big-model", "small-model"],
        allowedTools: null,
        notifyAtPercent: [50, 80, 100, 120],
        degradationLadder: [
          {
            atPercent: 80,
            of: "MONTHLY_BUDGET",
            maxOutputTokens: 512,
            maxInputTokens: null,
            priority: "BACKGROUND",
            modelMap: [{ from: "big-model", to: "small-model" }],
            block: false,
          },
          { atPercent: 90, of: "DAILY_TOKENS", maxOutputTokens: null, maxInputTokens: 8000, priority: null, modelMap: [], block: false },
          // "*" maps every model.
          { atPercent: 95, of: "DAILY_TOKENS", maxOutputTokens: null, maxInputTokens: null, priority: null, modelMap: [{ from: "*", to: "small-model" }], block: false },
          { atPercent: 100, of: "MONTHLY_BUDGET", maxOutputTokens: null, maxInputTokens: null, priority: null, modelMap: [], block: true },
        ],
        reservationTtlSeconds: 300,
        routeReservationTtlSeconds: [{ route: "batch", seconds: 3600 }],
        failOpenRateLimits: true,
      });
      // Money is stored as exact integer nano-USD.
      const [row] = await query(t.databaseUrl, `SELECT policy FROM tiers WHERE id = $1`, [tier.id]);
      expect(row.policy.tenantLimits.monthlyBudgetNano).toBe("500500000000");
      expect(row.policy.keyLimits.monthlyBudgetNano).toBe("1");
    });

    it("fills the documented defaults for a minimal tier", async () => {
      const tier = await createTier(t.admin, { name: "minimal", maxOutputTokens: 2048 });
      expect(tier).toMatchObject({
        description: null,
        tenantLimits: { requestsPerMinute: null, dailyTokens: null, monthlyBudgetUsd: null },
        routeModelLimits: [],
        maxInputTokens: null,
        defaultMaxOutputTokens: 2048,
        maxOutputTokens: 2048,
        allowedRoutes: null,
        allowedModels: null,
        allowedTools: null,
        notifyAtPercent: [50, 80, 100],
        degradationLadder: [],
        reservationTtlSeconds: 600,
        routeReservationTtlSeconds: [],
        failOpenRateLimits: false,
      });
    });

    it("updates only the fields given, audits the change and tells every replica", async () => {
      const tier = await createTier(t.admin, { ...FULL_TIER, name: "to-update" });
      const listener = await invalidationListener(t);
      try {
        const { updateTier: updated } = await t.admin.ok(
          `mutation($id: ID!, $input: UpdateTierInput!) { updateTier(id: $id, input: $input) { ${TIER_FIELDS} } }`,
          { id: tier.id, input: { maxInputTokens: null, tenantLimits: { monthlyBudgetUsd: "42" }, allowedTools: ["web_search"] } },
        );
        await listener.waitFor("tier", tier.id);
        expect(updated.maxInputTokens).toBeNull();
        // A given object replaces the old one whole: the other tenant limits are gone.
        expect(updated.tenantLimits).toMatchObject({ monthlyBudgetUsd: "42.000000000", dailyBudgetUsd: null, requestsPerMinute: null });
        expect(updated.allowedTools).toEqual(["web_search"]);
        const untouched = (x: any) => {
          const { maxInputTokens: _a, tenantLimits: _b, allowedTools: _c, updatedAt: _d, ...rest } = x;
          return rest;
        };
        expect(untouched(updated)).toEqual(untouched(tier));
        expect(new Date(updated.updatedAt).getTime()).toBeGreaterThanOrEqual(new Date(tier.updatedAt).getTime());
        expect(updated.createdAt).toBe(tier.createdAt);
      } finally {
        await listener.close();
      }
      const audit = await query(t.databaseUrl, `SELECT action, actor_kind, actor_id, details FROM audit_log WHERE target_id = $1 ORDER BY id`, [tier.id]);
      expect(audit.map((a) => a.action)).toEqual(["tier.create", "tier.update"]);
      expect(audit[1]).toMatchObject({ actor_kind: "bootstrap", actor_id: "bootstrap" });
      expect(Object.keys(audit[1].details.changes).sort()).toEqual(["allowedTools", "maxInputTokens", "tenantLimits"]);
      expect(audit[1].details.changes.tenantLimits).toEqual({ monthlyBudgetNano: "42000000000" });
    });

    it("refuses a second tier with the same name, and renaming onto a taken name", async () => {
      const r = await t.admin.request(`mutation { createTier(input: { name: "pro", maxOutputTokens: 10 }) { id } }`);
      expectBadInput(r, "input.name", /already exists/);
      const other = await createTier(t.admin, { name: "renamable", maxOutputTokens: 10 });
      const r2 = await t.admin.request(`mutation($id: ID!) { updateTier(id: $id, input: { name: "pro" }) { id } }`, { id: other.id });
      expectBadInput(r2, "input.name", /already exists/);
    });

    it("answers NOT_FOUND for an unknown tier id, read or update", async () => {
      const r = await t.admin.request(`{ tier(id: "tier_0000000000000000") { id } }`);
      expect(errorCode(r)).toBe("NOT_FOUND");
      const r2 = await t.admin.request(`mutation { updateTier(id: "tier_0000000000000000", input: { maxOutputTokens: 5 }) { id } }`);
      expect(errorCode(r2)).toBe("NOT_FOUND");
      const r3 = await t.admin.request(`{ tier(id: "not-an-id") { id } }`);
      expect(errorCode(r3)).toBe("NOT_FOUND");
    });
  });

  describe("tenants", () => {
    let tierId: string;
    let otherTierId: string;
    beforeAll(async () => {
      tierId = (await createTier(t.admin, { name: "tenant-tier", maxOutputTokens: 1000, tenantLimits: { dailyTokens: "1000", monthlyBudgetUsd: "10", concurrentRequests: 3 } })).id;
      otherTierId = (await createTier(t.admin, { name: "tenant-tier-2", maxOutputTokens: 1000 })).id;
    });

    it("creates, reads, updates, suspends and resumes a tenant", async () => {
      const listener = await invalidationListener(t);
      try {
        const created = await createTenant(t.admin, { name: "  Acme Corp  ", tierId });
        expect(created).toMatchObject({ name: "Acme Corp", tierId, timezone: "UTC", status: "ACTIVE" });
        expect(created.id).toMatch(/^ten_/);
        expect(created.limitOverrides).toMatchObject({ dailyTokens: null, unlimited: [] });
        await listener.waitFor("tenant", created.id);

        const { tenant } = await t.admin.ok(
          `query($id: ID!) { tenant(id: $id) { ${TENANT_FIELDS} tier { id name } effectiveLimits { dailyTokens monthlyBudgetUsd concurrentRequests } } }`,
          { id: created.id },
        );
        expect(tenant).toMatchObject({ ...created, tier: { id: tierId, name: "tenant-tier" } });
        expect(tenant.effectiveLimits).toEqual({ dailyTokens: "1000", monthlyBudgetUsd: "10.000000000", concurrentRequests: 3 });

        // Overrides: a value replaces the tier's, null lifts it, absent inherits it.
        const { updateTenant: updated } = await t.admin.ok(
          `mutation($id: ID!, $input: UpdateTenantInput!) { updateTenant(id: $id, input: $input) { ${TENANT_FIELDS} effectiveLimits { dailyTokens monthlyBudgetUsd concurrentRequests } } }`,
          { id: created.id, input: { timezone: "Europe/Berlin", limitOverrides: { dailyTokens: "5000", monthlyBudgetUsd: null } } },
        );
        expect(updated).toMatchObject({ name: "Acme Corp", timezone: "Europe/Berlin", tierId });
        expect(updated.limitOverrides).toMatchObject({ dailyTokens: "5000", monthlyBudgetUsd: null, unlimited: ["MONTHLY_BUDGET"] });
        expect(updated.effectiveLimits).toEqual({ dailyTokens: "5000", monthlyBudgetUsd: null, concurrentRequests: 3 });

        const { updateTenant: moved } = await t.admin.ok(`mutation($id: ID!, $tierId: ID!) { updateTenant(id: $id, input: { tierId: $tierId }) { tierId timezone limitOverrides { dailyTokens } } }`, {
          id: created.id,
          tierId: otherTierId,
        });
        expect(moved).toEqual({ tierId: otherTierId, timezone: "Europe/Berlin", limitOverrides: { dailyTokens: "5000" } });

        const { suspendTenant } = await t.admin.ok(`mutation($id: ID!) { suspendTenant(id: $id) { id status } }`, { id: created.id });
        expect(suspendTenant.status).toBe("SUSPENDED");
        const again = await t.admin.ok(`mutation($id: ID!) { suspendTenant(id: $id) { status } }`, { id: created.id });
        expect(again.suspendTenant.status).toBe("SUSPENDED");
        const [row] = await query(t.databaseUrl, `SELECT status FROM tenants WHERE id = $1`, [created.id]);
        expect(row.status).toBe("SUSPENDED");
        const { resumeTenant } = await t.admin.ok(`mutation($id: ID!) { resumeTenant(id: $id) { status } }`, { id: created.id });
        expect(resumeTenant.status).toBe("ACTIVE");

        const audit = await query(t.databaseUrl, `SELECT action, tenant_id, details FROM audit_log WHERE target_id = $1 ORDER BY id`, [created.id]);
        expect(audit.map((a) => a.action)).toEqual(["tenant.create", "tenant.update", "tenant.update", "tenant.suspend", "tenant.suspend", "tenant.resume"]);
        expect(audit.every((a) => a.tenant_id === created.id)).toBe(true);
        expect(audit[3].details).toEqual({ from: "ACTIVE", to: "SUSPENDED" });
        expect(audit[4].details).toEqual({ from: "SUSPENDED", to: "SUSPENDED" });
        // Every one of the six mutations told the other replicas.
        const heardAll = async () => {
          for (let i = 0; i < 100 && listener.heard.filter((m) => m.kind === "tenant" && m.id === created.id).length < 6; i++) {
            await new Promise((r) => setTimeout(r, 20));
          }
          return listener.heard.filter((m) => m.kind === "tenant" && m.id === created.id).length;
        };
        expect(await heardAll()).toBe(6);
      } finally {
        await listener.close();
      }
    });

    it("answers NOT_FOUND for an unknown tenant, read or write", async () => {
      for (const op of [
        `{ tenant(id: "ten_0000000000000000") { id } }`,
        `mutation { suspendTenant(id: "ten_0000000000000000") { id } }`,
        `mutation { updateTenant(id: "ten_0000000000000000", input: { name: "x" }) { id } }`,
      ]) {
        expect(errorCode(await t.admin.request(op))).toBe("NOT_FOUND");
      }
    });
  });

  describe("models and prices", () => {
    it("creates a model with a price and shows money as Decimal strings", async () => {
      const m = await upsertModel(t.admin, { name: "gpt-x", inputPriceUsdPerMTok: "3", outputPriceUsdPerMTok: "15.125", contextWindow: 128_000 });
      expect(m).toMatchObject({
        name: "gpt-x",
        contextWindow: 128_000,
        downgradeTo: null,
        currentPrice: { inputPriceUsdPerMTok: "3.000000000", outputPriceUsdPerMTok: "15.125000000" },
      });
      expect(m.prices).toHaveLength(1);
      const [price] = await query(t.databaseUrl, `SELECT input_nano_per_token::text AS i, output_nano_per_token::text AS o FROM model_prices WHERE model = 'gpt-x'`);
      expect(price).toEqual({ i: "3000", o: "15125" });
    });

    it("keeps price history: a new price is a new version, the old one is never rewritten", async () => {
      await upsertModel(t.admin, { name: "hist", inputPriceUsdPerMTok: "1", outputPriceUsdPerMTok: "2", contextWindow: 8000 });
      const future = new Date(Date.now() + 3_600_000).toISOString();
      const m = await upsertModel(t.admin, { name: "hist", inputPriceUsdPerMTok: "0.5", outputPriceUsdPerMTok: "1.5", effectiveFrom: future });
      expect(m.contextWindow).toBe(8000);
      expect(m.prices.map((p: any) => p.inputPriceUsdPerMTok)).toEqual(["0.500000000", "1.000000000"]);
      expect(m.prices[0].effectiveFrom).toBe(future);
      // Scheduled, not yet in force.
      expect(m.currentPrice.inputPriceUsdPerMTok).toBe("1.000000000");

      const meta = await upsertModel(t.admin, { name: "hist", contextWindow: 16000 });
      expect(meta.contextWindow).toBe(16000);
      expect(meta.prices).toEqual(m.prices);

      const { model } = await t.admin.ok(`query { model(name: "hist") { ${MODEL_FIELDS} } }`);
      expect(model).toEqual(meta);
      const audit = await query(t.databaseUrl, `SELECT action, details FROM audit_log WHERE target_type = 'model' AND target_id = 'hist' ORDER BY id`);
      expect(audit.map((a) => a.action)).toEqual(["model.create", "model.update", "model.update"]);
      expect(audit[1].details.price).toEqual({ inputUsdPerMTok: "0.500000000", outputUsdPerMTok: "1.500000000", effectiveFrom: future });
    });

    it("sets and clears downgradeTo, and publishes the change", async () => {
      await upsertModel(t.admin, { name: "cheap", contextWindow: 4000 });
      const listener = await invalidationListener(t);
      try {
        const m = await upsertModel(t.admin, { name: "gpt-x", downgradeTo: "cheap" });
        expect(m.downgradeTo).toBe("cheap");
        await listener.waitFor("model", "gpt-x");
        const kept = await upsertModel(t.admin, { name: "gpt-x", contextWindow: 100_000 });
        expect(kept.downgradeTo).toBe("cheap");
        const cleared = await upsertModel(t.admin, { name: "gpt-x", downgradeTo: null });
        expect(cleared.downgradeTo).toBeNull();
      } finally {
        await listener.close();
      }
    });

    it("answers NOT_FOUND for an unknown model", async () => {
      expect(errorCode(await t.admin.request(`{ model(name: "nope") { name } }`))).toBe("NOT_FOUND");
    });
  });

  describe("pagination", () => {
    beforeAll(async () => {
      const tierId = (await createTier(t.admin, { name: "page-tier", maxOutputTokens: 10 })).id;
      for (let i = 0; i < 7; i++) {
        await createTier(t.admin, { name: `page-${i}`, maxOutputTokens: 10 });
        await createTenant(t.admin, { name: `tenant-${i}`, tierId });
        await upsertModel(t.admin, { name: `page-model-${i}`, contextWindow: 1000, inputPriceUsdPerMTok: "1", outputPriceUsdPerMTok: "1" });
      }
    });

    for (const [field, key, table] of [
      ["tiers", "id name", "tiers"],
      ["tenants", "id name", "tenants"],
      ["models", "name", "models"],
    ] as const) {
      it(`walks every ${field} page by page with no duplicates, gaps or wrong hasNextPage`, async () => {
        const ids = (await query(t.databaseUrl, `SELECT ${field === "models" ? "name" : "id"} AS k FROM ${table}`)).map((r) => r.k).sort();
        expect(ids.length).toBeGreaterThanOrEqual(8);
        for (const first of [1, 3, ids.length, ids.length + 5]) {
          const { nodes, pages, hasNextPageFlags } = await walkPages(t.admin, field, key, first);
          const seen = nodes.map((n) => (field === "models" ? n.name : n.id));
          expect(new Set(seen).size).toBe(seen.length);
          expect([...seen].sort()).toEqual(ids);
          expect(pages).toBe(Math.max(1, Math.ceil(ids.length / first)));
          expect(hasNextPageFlags.slice(0, -1).every(Boolean)).toBe(true);
          expect(hasNextPageFlags.at(-1)).toBe(false);
        }
        // Ordered by the sort key (name for tiers and models, id for tenants).
        const { nodes } = await walkPages(t.admin, field, key, 200);
        const sortKeys = nodes.map((n) => (field === "tenants" ? n.id : n.name));
        expect(sortKeys).toEqual([...sortKeys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
      });
    }

    it("refuses cursors it did not issue and page sizes out of range", async () => {
      const q = (field: string) => `query($first: Int, $after: String) { ${field}(first: $first, after: $after) { nodes { __typename } } }`;
      for (const field of ["tiers", "tenants", "models"]) {
        expectBadInput(await t.admin.request(q(field), { after: "not a cursor!" }), "after");
        expectBadInput(await t.admin.request(q(field), { first: 0 }), "first");
        expectBadInput(await t.admin.request(q(field), { first: 201 }), "first");
        // Valid base64url of something that is not UTF-8.
        expectBadInput(await t.admin.request(q(field), { after: "__8" }), "after");
      }
      // A tiers cursor is not a tenants cursor.
      const d = await t.admin.ok(`{ tiers(first: 1) { pageInfo { endCursor } } }`);
      expectBadInput(await t.admin.request(q("tenants"), { after: d.tiers.pageInfo.endCursor }), "after");
    });
  });
});
