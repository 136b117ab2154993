import type { LadderRung } from "../tenancy/types.js";
import { effectiveKeyLimits, effectiveTenantLimits } from "../enforcement/plan.js";
import type { KeyPeriodUsage, PeriodKind, QuotaDimension, QuotaMeasure, QuotaUnit, TenantPolicy } from "./types.js";
import { QUOTA_DIMENSIONS } from "./types.js";

/**
 * The quota lifecycle's rules, pure: which thresholds a usage figure has crossed, which ladder
 * rung a scope is on, when a budget is exhausted. They mirror the reserve script's arithmetic
 * (`used * 100 >= atPercent * limit`) so the persistent state agrees with what the hot path
 * decides, except that they read committed usage: in-flight holds come and go within a
 * request, and a notification or a billing event must not fire for usage that never happened.
 */

const SPEC: Record<QuotaDimension, { field: "dailyTokens" | "monthlyTokens" | "dailyBudgetNano" | "monthlyBudgetNano"; periodKind: PeriodKind; unit: QuotaUnit }> = {
  DAILY_TOKENS: { field: "dailyTokens", periodKind: "day", unit: "tokens" },
  MONTHLY_TOKENS: { field: "monthlyTokens", periodKind: "month", unit: "tokens" },
  DAILY_BUDGET: { field: "dailyBudgetNano", periodKind: "day", unit: "usd" },
  MONTHLY_BUDGET: { field: "monthlyBudgetNano", periodKind: "month", unit: "usd" },
};

export function periodKindOf(dimension: QuotaDimension): PeriodKind {
  return SPEC[dimension].periodKind;
}

export function unitOf(dimension: QuotaDimension): QuotaUnit {
  return SPEC[dimension].unit;
}

export function isQuotaDimension(d: string): d is QuotaDimension {
  return (QUOTA_DIMENSIONS as readonly string[]).includes(d);
}

/** The scope names the hot path uses in `LimitStatus.scope`. */
export const scopeName = {
  tenant: () => "tenant",
  key: (keyId: string) => `key:${keyId}`,
};

export function keyIdOfScope(scope: string): string | null {
  return scope.startsWith("key:") ? scope.slice(4) : null;
}

/** True when `usage` has reached `percent` % of `limit` (the reserve script's test, in bigint). */
export function reached(usage: bigint, limit: bigint, percent: number): boolean {
  return usage * 100n >= BigInt(percent) * limit;
}

/** usage / limit as a percentage with two decimals ("85.00"), truncated; null for a zero limit. */
export function percentOf(usage: bigint, limit: bigint): string | null {
  if (limit <= 0n) return null;
  const basisPoints = (usage * 10_000n) / limit;
  const whole = basisPoints / 100n;
  const frac = (basisPoints % 100n).toString().padStart(2, "0");
  return `${whole}.${frac}`;
}

/**
 * Every quota and budget of the tenant scope and of `keyIds`, in the current periods, with the
 * committed usage against it. A dimension without a limit is still listed (limit null): an open
 * threshold on it must be resolved as "limit removed".
 */
export function measuresFor(policy: TenantPolicy, usage: KeyPeriodUsage[], periods: { day: string; month: string }, keyIds: Iterable<string>): QuotaMeasure[] {
  const byKey = new Map(usage.map((u) => [u.keyId, u]));
  const tenantTotal = usage.reduce(
    (acc, u) => ({
      dayTokens: acc.dayTokens + u.dayTokens,
      dayCostNano: acc.dayCostNano + u.dayCostNano,
      monthTokens: acc.monthTokens + u.monthTokens,
      monthCostNano: acc.monthCostNano + u.monthCostNano,
    }),
    { dayTokens: 0n, dayCostNano: 0n, monthTokens: 0n, monthCostNano: 0n },
  );
  const usageOf = (u: Omit<KeyPeriodUsage, "keyId"> | undefined, d: QuotaDimension): bigint => {
    if (!u) return 0n;
    switch (d) {
      case "DAILY_TOKENS":
        return u.dayTokens;
      case "MONTHLY_TOKENS":
        return u.monthTokens;
      case "DAILY_BUDGET":
        return u.dayCostNano;
      case "MONTHLY_BUDGET":
        return u.monthCostNano;
    }
  };
  const out: QuotaMeasure[] = [];
  const push = (scope: string, limits: Record<string, unknown>, u: Omit<KeyPeriodUsage, "keyId"> | undefined) => {
    for (const d of QUOTA_DIMENSIONS) {
      const spec = SPEC[d];
      const raw = limits[spec.field];
      out.push({
        scope,
        dimension: d,
        periodKind: spec.periodKind,
        period: spec.periodKind === "day" ? periods.day : periods.month,
        unit: spec.unit,
        usage: usageOf(u, d),
        limit: raw === null || raw === undefined ? null : BigInt(raw as number | bigint),
      });
    }
  };
  push(scopeName.tenant(), effectiveTenantLimits(policy.tier, policy.tenant) as Record<string, unknown>, tenantTotal);
  const keys = new Map(policy.keys.map((k) => [k.id, k]));
  for (const keyId of new Set(keyIds)) {
    const key = keys.get(keyId);
    // A key the tenant no longer has (never expected: keys are not deleted) gets the tier's key limits.
    const limits = key ? effectiveKeyLimits(policy.tier, key) : policy.tier.keyLimits;
    push(scopeName.key(keyId), limits as Record<string, unknown>, byKey.get(keyId));
  }
  return out;
}

/** The notify thresholds (percent) `m` has reached, ascending, without duplicates. */
export function crossedThresholds(m: QuotaMeasure, notifyAtPercent: number[]): number[] {
  if (m.limit === null) return [];
  const limit = m.limit;
  return [...new Set(notifyAtPercent)].sort((a, b) => a - b).filter((p) => reached(m.usage, limit, p));
}

export interface RungDecision {
  index: number;
  rung: LadderRung;
  measure: QuotaMeasure & { limit: bigint };
}

/**
 * The ladder rung one scope is on: the last rung, in ladder order, whose dimension has a limit
 * in this scope that usage reached (the reserve script's rule). null = not degraded.
 */
export function rungFor(scopeMeasures: QuotaMeasure[], ladder: LadderRung[]): RungDecision | null {
  let found: RungDecision | null = null;
  ladder.forEach((rung, index) => {
    const m = scopeMeasures.find((x) => x.dimension === rung.of);
    if (!m || m.limit === null) return;
    if (reached(m.usage, m.limit, rung.atPercent)) found = { index, rung, measure: m as QuotaMeasure & { limit: bigint } };
  });
  return found;
}

/**
 * Whether a budget admits no further request: committed spend reached the limit, or a blocking
 * ladder rung on it was reached (the lowest such rung is reported).
 */
export function budgetExhaustion(m: QuotaMeasure, ladder: LadderRung[]): { blockedBy: "budget" | "ladder"; atPercent: number } | null {
  if (m.unit !== "usd" || m.limit === null) return null;
  const limit = m.limit;
  if (m.usage >= limit) return { blockedBy: "budget", atPercent: 100 };
  const blocking = ladder
    .filter((r) => r.block && r.of === m.dimension && reached(m.usage, limit, r.atPercent))
    .sort((a, b) => a.atPercent - b.atPercent)[0];
  return blocking ? { blockedBy: "ladder", atPercent: blocking.atPercent } : null;
}
