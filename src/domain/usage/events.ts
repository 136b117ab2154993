import type { LedgerEntry } from "../enforcement/types.js";
import { formatUsd } from "../billing/money.js";
import type { LadderRung } from "../tenancy/types.js";
import { percentOf } from "./quota-rules.js";
import type { DegradationState, LiftReason, OutboxEvent, PeriodKind, QuotaMeasure, QuotaUnit, ThresholdResolution, ThresholdState } from "./types.js";

/**
 * Payloads of the quota events this domain emits. Every payload carries its figures as
 * strings (token counts as integers, money as USD with 9 decimals), so a receiver never sees a
 * float, and names the scope, the period and the dimension it concerns. README.md
 * ("Quota events") documents each one; keep the two in step.
 */

export function amount(unit: QuotaUnit, v: bigint | null): string | null {
  if (v === null) return null;
  return unit === "usd" ? formatUsd(v) : v.toString();
}

function figures(m: Pick<QuotaMeasure, "scope" | "dimension" | "periodKind" | "period" | "unit">, usage: bigint, limit: bigint | null) {
  return {
    scope: m.scope,
    dimension: m.dimension,
    periodKind: m.periodKind,
    period: m.period,
    unit: m.unit,
    usage: amount(m.unit, usage),
    limit: amount(m.unit, limit),
    percent: limit === null ? null : percentOf(usage, limit),
  };
}

export function thresholdCrossed(tenantId: string, m: QuotaMeasure & { limit: bigint }, thresholdPercent: number, crossing: number, at: Date): OutboxEvent {
  return {
    type: "threshold.crossed",
    tenantId,
    scope: m.scope,
    period: m.period,
    occurredAt: at,
    payload: { ...figures(m, m.usage, m.limit), thresholdPercent, crossing },
  };
}

export function thresholdResolved(
  tenantId: string,
  row: ThresholdState,
  meta: { periodKind: PeriodKind; unit: QuotaUnit },
  reason: ThresholdResolution,
  now: { usage: bigint; limit: bigint | null },
  at: Date,
): OutboxEvent {
  return {
    type: "threshold.resolved",
    tenantId,
    scope: row.scope,
    period: row.period,
    occurredAt: at,
    payload: {
      ...figures({ scope: row.scope, dimension: row.dimension, periodKind: meta.periodKind, period: row.period, unit: meta.unit }, now.usage, now.limit),
      thresholdPercent: row.thresholdPercent,
      crossing: row.crossings,
      reason,
      crossedAt: row.crossedAt.toISOString(),
      usageAtCrossing: amount(meta.unit, row.usage),
      limitAtCrossing: amount(meta.unit, row.limit),
    },
  };
}

export function budgetExhausted(tenantId: string, m: QuotaMeasure & { limit: bigint }, blockedBy: "budget" | "ladder", atPercent: number, at: Date): OutboxEvent {
  return {
    type: "budget.exhausted",
    tenantId,
    scope: m.scope,
    period: m.period,
    occurredAt: at,
    payload: { ...figures(m, m.usage, m.limit), blockedBy, atPercent },
  };
}

export function degradationApplied(
  tenantId: string,
  rungIndex: number,
  rung: LadderRung,
  m: QuotaMeasure & { limit: bigint },
  previousRung: number | null,
  at: Date,
): OutboxEvent {
  return {
    type: "degradation.applied",
    tenantId,
    scope: m.scope,
    period: m.period,
    occurredAt: at,
    payload: {
      ...figures(m, m.usage, m.limit),
      rung: rungIndex,
      previousRung,
      atPercent: rung.atPercent,
      blocking: rung.block,
      directives: {
        maxOutputTokens: rung.maxOutputTokens,
        maxInputTokens: rung.maxInputTokens,
        priority: rung.priority,
        modelMap: rung.modelMap.map((x) => ({ from: x.from, to: x.to })),
      },
    },
  };
}

export function degradationLifted(
  tenantId: string,
  current: DegradationState,
  meta: { periodKind: PeriodKind; unit: QuotaUnit },
  reason: LiftReason,
  now: { usage: bigint; limit: bigint | null; period: string },
  at: Date,
): OutboxEvent {
  return {
    type: "degradation.lifted",
    tenantId,
    scope: current.scope,
    period: current.period,
    occurredAt: at,
    payload: {
      ...figures({ scope: current.scope, dimension: current.dimension, periodKind: meta.periodKind, period: now.period, unit: meta.unit }, now.usage, now.limit),
      previousRung: current.rung,
      previousPeriod: current.period,
      atPercent: current.atPercent,
      reason,
      appliedAt: current.appliedAt.toISOString(),
      usageWhenApplied: amount(meta.unit, current.usage),
      limitWhenApplied: amount(meta.unit, current.limit),
    },
  };
}

export function periodRolled(tenantId: string, periodKind: PeriodKind, previousPeriod: string, period: string, timezone: string, startedAt: Date, at: Date): OutboxEvent {
  return {
    type: "period.rolled",
    tenantId,
    scope: "tenant",
    period,
    occurredAt: at,
    payload: { periodKind, previousPeriod, period, timezone, startedAt: startedAt.toISOString() },
  };
}

/** A ledger row as the rollup reads it, for the events that follow from single rows. */
export type LedgerEventRow = Omit<LedgerEntry, "subject" | "status"> & {
  id: bigint;
  /** As stored: the rollup reads it back as text. */
  status: string;
  recordedAt: Date;
};

export function usageOverage(r: LedgerEventRow): OutboxEvent {
  const over = (actual: bigint, reserved: bigint) => (actual > reserved ? actual - reserved : 0n);
  return {
    type: "usage.overage",
    tenantId: r.tenantId,
    scope: `key:${r.keyId}`,
    period: r.periodDay,
    occurredAt: r.recordedAt,
    payload: {
      reservationId: r.reservationId,
      keyId: r.keyId,
      route: r.route,
      model: r.model,
      status: r.status,
      periodDay: r.periodDay,
      periodMonth: r.periodMonth,
      inputTokens: r.inputTokens.toString(),
      outputTokens: r.outputTokens.toString(),
      reservedInputTokens: r.reservedInputTokens.toString(),
      reservedOutputTokens: r.reservedOutputTokens.toString(),
      overageInputTokens: over(r.inputTokens, r.reservedInputTokens).toString(),
      overageOutputTokens: over(r.outputTokens, r.reservedOutputTokens).toString(),
      costUsd: formatUsd(r.costNano),
      ledgerId: r.id.toString(),
    },
  };
}

export function reservationExpired(r: LedgerEventRow): OutboxEvent {
  return {
    type: "reservation.expired",
    tenantId: r.tenantId,
    scope: `key:${r.keyId}`,
    period: r.periodDay,
    occurredAt: r.recordedAt,
    payload: {
      reservationId: r.reservationId,
      keyId: r.keyId,
      route: r.route,
      model: r.model,
      periodDay: r.periodDay,
      periodMonth: r.periodMonth,
      reservedInputTokens: r.reservedInputTokens.toString(),
      reservedOutputTokens: r.reservedOutputTokens.toString(),
      reservedAt: r.reservedAt.toISOString(),
      expiredAt: r.recordedAt.toISOString(),
      ledgerId: r.id.toString(),
    },
  };
}
