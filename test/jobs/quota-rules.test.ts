import { describe, expect, it } from "vitest";
import { budgetExhaustion, crossedThresholds, measuresFor, percentOf, reached, rungFor } from "../../src/domain/usage/quota-rules.js";
import { fullMonthsBetween } from "../../src/domain/usage/usage.service.js";
import type { QuotaMeasure, TenantPolicy } from "../../src/domain/usage/types.js";
import type { LadderRung } from "../../src/domain/tenancy/types.js";
import { tierSpec } from "../support/enforcement.js";

/** Pure quota rules: the arithmetic the persistent lifecycle shares with the reserve script. */

const measure = (over: Partial<QuotaMeasure>): QuotaMeasure => ({
  scope: "tenant",
  dimension: "DAILY_TOKENS",
  periodKind: "day",
  period: "2030-01-14",
  unit: "tokens",
  usage: 0n,
  limit: 1000n,
  ...over,
});

const rung = (over: Partial<LadderRung>): LadderRung => ({
  atPercent: 80,
  of: "DAILY_TOKENS",
  maxOutputTokens: 10,
  maxInputTokens: null,
  priority: null,
  modelMap: [],
  block: false,
  ...over,
});

describe("quota rules", () => {
  it("a threshold is reached at exactly percent × limit, not one token before", () => {
    // 80 % of 1000 = 800: limit - 1, limit, limit + 1 around the threshold and around 100 %.
    expect(reached(799n, 1000n, 80)).toBe(false);
    expect(reached(800n, 1000n, 80)).toBe(true);
    expect(reached(801n, 1000n, 80)).toBe(true);
    expect(reached(999n, 1000n, 100)).toBe(false);
    expect(reached(1000n, 1000n, 100)).toBe(true);
    expect(reached(1001n, 1000n, 100)).toBe(true);
    // Percent of an odd limit: 80 % of 333 = 266.4, so 266 is below and 267 reaches it.
    expect(reached(266n, 333n, 80)).toBe(false);
    expect(reached(267n, 333n, 80)).toBe(true);
  });

  it("percentages are exact strings with two truncated decimals", () => {
    expect(percentOf(850n, 1000n)).toBe("85.00");
    expect(percentOf(1n, 3n)).toBe("33.33");
    expect(percentOf(2n, 3n)).toBe("66.66");
    expect(percentOf(1_500_000n, 1_500_000n)).toBe("100.00");
    expect(percentOf(10n, 0n)).toBeNull();
  });

  it("lists crossed notify thresholds ascending, once each, and none without a limit", () => {
    expect(crossedThresholds(measure({ usage: 850n }), [100, 50, 80, 80])).toEqual([50, 80]);
    expect(crossedThresholds(measure({ usage: 1000n }), [50, 80, 100])).toEqual([50, 80, 100]);
    expect(crossedThresholds(measure({ usage: 499n }), [50, 80, 100])).toEqual([]);
    expect(crossedThresholds(measure({ usage: 10_000n, limit: null }), [50])).toEqual([]);
  });

  it("the rung is the last one in ladder order whose dimension reached its percent in this scope", () => {
    const ladder = [rung({ atPercent: 50 }), rung({ atPercent: 80, maxOutputTokens: 5 }), rung({ atPercent: 90, of: "MONTHLY_BUDGET", block: true })];
    const day = (usage: bigint) => measure({ usage });
    const budget = (usage: bigint, limit: bigint | null) => measure({ dimension: "MONTHLY_BUDGET", periodKind: "month", period: "2030-01", unit: "usd", usage, limit });
    expect(rungFor([day(499n), budget(0n, 100n)], ladder)).toBeNull();
    expect(rungFor([day(500n), budget(0n, 100n)], ladder)?.index).toBe(0);
    expect(rungFor([day(800n), budget(0n, 100n)], ladder)?.index).toBe(1);
    expect(rungFor([day(800n), budget(90n, 100n)], ladder)?.index).toBe(2);
    // A rung on a dimension this scope has no limit on is never reached.
    expect(rungFor([day(100n), budget(1_000_000n, null)], ladder)).toBeNull();
  });

  it("a budget is exhausted at its limit, or earlier where a blocking rung on it is reached", () => {
    const b = (usage: bigint) => measure({ dimension: "DAILY_BUDGET", unit: "usd", usage, limit: 1_000n });
    expect(budgetExhaustion(b(999n), [])).toBeNull();
    expect(budgetExhaustion(b(1_000n), [])).toEqual({ blockedBy: "budget", atPercent: 100 });
    expect(budgetExhaustion(b(1_001n), [])).toEqual({ blockedBy: "budget", atPercent: 100 });
    const ladder = [rung({ of: "DAILY_BUDGET", atPercent: 95, block: true }), rung({ of: "DAILY_BUDGET", atPercent: 90, block: true })];
    expect(budgetExhaustion(b(899n), ladder)).toBeNull();
    expect(budgetExhaustion(b(900n), ladder)).toEqual({ blockedBy: "ladder", atPercent: 90 });
    // Token quotas are not budgets: they never report exhaustion.
    expect(budgetExhaustion(measure({ usage: 5_000n }), [])).toBeNull();
  });

  it("measures tenant totals against effective tenant limits and each key against its own budget", () => {
    const spec = tierSpec({ tenantLimits: { dailyTokens: 1_000, monthlyBudgetNano: 5_000n }, keyLimits: { monthlyTokens: 300 } });
    const now = new Date();
    const policy: TenantPolicy = {
      tier: { id: "tier_x", createdAt: now, updatedAt: now, ...spec },
      tenant: { id: "ten_x", name: "x", tierId: "tier_x", timezone: "UTC", status: "ACTIVE", limitOverrides: { dailyTokens: 2_000 }, createdAt: now, updatedAt: now },
      keys: [
        {
          id: "key_a",
          tenantId: "ten_x",
          name: "a",
          prefix: "p",
          status: "ACTIVE",
          expiresAt: null,
          monthlyBudgetNano: 700n,
          dailyBudgetNano: null,
          allowedRoutes: null,
          allowedModels: null,
          rotatedFromId: null,
          createdAt: now,
          revokedAt: null,
        },
      ],
    };
    const usage = [
      { keyId: "key_a", dayTokens: 10n, dayCostNano: 100n, monthTokens: 40n, monthCostNano: 400n },
      { keyId: "key_b", dayTokens: 5n, dayCostNano: 50n, monthTokens: 7n, monthCostNano: 70n },
    ];
    const ms = measuresFor(policy, usage, { day: "2030-01-14", month: "2030-01" }, ["key_a", "key_b"]);
    const get = (scope: string, d: string) => ms.find((m) => m.scope === scope && m.dimension === d)!;
    expect(get("tenant", "DAILY_TOKENS")).toMatchObject({ usage: 15n, limit: 2_000n, period: "2030-01-14" });
    expect(get("tenant", "MONTHLY_BUDGET")).toMatchObject({ usage: 470n, limit: 5_000n, period: "2030-01", unit: "usd" });
    expect(get("key:key_a", "MONTHLY_BUDGET")).toMatchObject({ usage: 400n, limit: 700n });
    expect(get("key:key_a", "MONTHLY_TOKENS")).toMatchObject({ usage: 40n, limit: 300n });
    expect(get("key:key_b", "MONTHLY_BUDGET")).toMatchObject({ usage: 70n, limit: null });
  });

  it("whole months inside a day range are the ones the monthly rollup may answer", () => {
    expect(fullMonthsBetween("2030-01-01", "2030-01-31")).toEqual(["2030-01"]);
    expect(fullMonthsBetween("2030-01-02", "2030-03-31")).toEqual(["2030-02", "2030-03"]);
    expect(fullMonthsBetween("2030-01-01", "2030-03-30")).toEqual(["2030-01", "2030-02"]);
    expect(fullMonthsBetween("2030-01-15", "2030-02-27")).toEqual([]);
    expect(fullMonthsBetween("2031-12-01", "2032-02-29")).toEqual(["2031-12", "2032-01", "2032-02"]);
  });
});
