import { describe, expect, it } from "vitest";
import { buildReservePlan, precheck, type PlanInput } from "../../src/domain/enforcement/plan.js";
import { periodsAt } from "../../src/domain/enforcement/periods.js";
import type { ApiKey, Model, Tenant, Tier } from "../../src/domain/tenancy/types.js";
import { FakeClock } from "../../src/lib/clock.js";

/** The pure planning rules, with a fake clock and plain objects: no Redis, no Postgres. */
const clock = new FakeClock(Date.UTC(2026, 10, 21, 12));
const now = clock.now();

const tier: Tier = {
  id: "tier_x", name: "t", description: null,
  tenantLimits: { dailyTokens: 1000, monthlyBudgetNano: 5_000_000n, requestsPerMinute: { perMinute: 60, burst: null } },
  keyLimits: { concurrentRequests: 3 }, subjectLimits: {}, routeModelLimits: [],
  maxInputTokens: 2000, defaultMaxOutputTokens: 256, maxOutputTokens: 1024,
  allowedRoutes: ["chat"], allowedModels: null, allowedTools: ["search"],
  notifyAtPercent: [50, 80, 100], degradationLadder: [], reservationTtlSeconds: 600,
  routeReservationTtlSeconds: [{ route: "batch", seconds: 3600 }], failOpenRateLimits: false,
  createdAt: now, updatedAt: now,
};
const tenant: Tenant = { id: "ten_x", name: "x", tierId: tier.id, timezone: "Europe/Berlin", status: "ACTIVE", limitOverrides: { dailyTokens: 500 }, createdAt: now, updatedAt: now };
const key: ApiKey = {
  id: "key_k", tenantId: tenant.id, name: "k", prefix: "llm_k", status: "ACTIVE", expiresAt: null,
  monthlyBudgetNano: 1_000_000n, dailyBudgetNano: null, allowedRoutes: null, allowedModels: ["m"],
  rotatedFromId: null, createdAt: now, revokedAt: null,
};
const model: Model = { name: "m", contextWindow: 4096, downgradeTo: null, prices: [{ inputNano: 100n, outputNano: 300n, effectiveFrom: new Date(0) }], createdAt: now, updatedAt: now };
const req = { apiKey: "x", route: "chat", model: "m", inputTokens: 100, maxOutputTokens: null, idempotencyKey: null, subject: null, priority: "NORMAL" as const, tools: [] };
const input = (over: Partial<PlanInput> = {}): PlanInput => ({ req, tier, tenant, key, model, models: new Map(), periods: periodsAt(now, tenant.timezone), now, ...over });

describe("reserve plan", () => {
  it("applies tenant overrides over the tier and key budgets over the tier's key limits", () => {
    const p = buildReservePlan(input());
    expect(p.quotaChecks.map((c) => [c.dimension, c.scope, c.limit])).toEqual([
      ["DAILY_TOKENS", "tenant", 500n],
      ["MONTHLY_BUDGET", "tenant", 5_000_000n],
      ["MONTHLY_BUDGET", "key:key_k", 1_000_000n],
    ]);
    expect(p.buckets).toHaveLength(1);
    expect(p.concurrency).toEqual([{ scopeLabel: "k:key_k", limit: 3, scope: "key:key_k" }]);
    expect(p.rateLimitsOnly).toBe(false);
  });

  it("reserves output at the tier default, priced exactly in nano-USD", () => {
    const v = buildReservePlan(input()).variants[0]!;
    expect(v).toMatchObject({ outputTokens: 256, costNano: 100n * 100n + 256n * 300n, deny: null, rung: null });
  });

  it("uses the tenant-local day and a per-route TTL", () => {
    const late = new Date(Date.UTC(2026, 10, 21, 23, 30)); // 00:30 next day in Berlin
    const p = buildReservePlan(input({ periods: periodsAt(late, "Europe/Berlin"), req: { ...req, route: "batch" } }));
    expect(p.periods.day).toBe("2026-11-22");
    expect(p.ttlMs).toBe(3_600_000);
  });

  it("refuses by allow-lists before any counter: route, model (tier and key), tool, unpriced model", () => {
    expect(precheck({ ...req, route: "images" }, tier, key, model, now)?.reason).toBe("ROUTE_FORBIDDEN");
    expect(precheck({ ...req, model: "other" }, tier, key, { ...model, name: "other" }, now)?.reason).toBe("MODEL_FORBIDDEN");
    expect(precheck({ ...req, tools: ["shell"] }, tier, key, model, now)?.reason).toBe("TOOL_FORBIDDEN");
    expect(precheck(req, tier, key, { ...model, prices: [{ inputNano: 1n, outputNano: 1n, effectiveFrom: new Date(now.getTime() + 1) }] }, now)?.reason).toBe("MODEL_FORBIDDEN");
    expect(precheck(req, tier, key, model, now)).toBeNull();
  });

  it("builds one variant per reachable ladder rung, skipping rungs on unlimited dimensions", () => {
    const cheap: Model = { ...model, name: "cheap", prices: [{ inputNano: 10n, outputNano: 30n, effectiveFrom: new Date(0) }] };
    const p = buildReservePlan(
      input({
        tier: {
          ...tier,
          degradationLadder: [
            { atPercent: 80, of: "DAILY_TOKENS", maxOutputTokens: 64, maxInputTokens: 50, priority: "BACKGROUND", modelMap: [{ from: "m", to: "cheap" }], block: false },
            { atPercent: 50, of: "MONTHLY_TOKENS", maxOutputTokens: 1, maxInputTokens: null, priority: null, modelMap: [], block: false },
            { atPercent: 100, of: "MONTHLY_BUDGET", maxOutputTokens: null, maxInputTokens: null, priority: null, modelMap: [], block: true },
          ],
        },
        models: new Map([["cheap", cheap]]),
      }),
    );
    expect(p.variants).toHaveLength(3);
    expect(p.variants[1]).toMatchObject({ model: "cheap", outputTokens: 64, priority: "BACKGROUND", costNano: 100n * 10n + 64n * 30n, deny: { reason: "PROMPT_TOO_LARGE" } });
    expect(p.variants[2]!.deny?.reason).toBe("BUDGET_EXCEEDED");
    expect(p.ladder).toEqual([
      { dimension: "DAILY_TOKENS", atPercent: 80, variant: 1 },
      { dimension: "MONTHLY_BUDGET", atPercent: 100, variant: 2 },
    ]);
  });
});
