import type { Clock } from "../../lib/clock.js";
import type { Logger } from "../../lib/logger.js";
import { localMidnight, periodsAt } from "../enforcement/periods.js";
import * as events from "./events.js";
import { budgetExhaustion, crossedThresholds, keyIdOfScope, measuresFor, periodKindOf, reached, rungFor, scopeName, unitOf } from "./quota-rules.js";
import type { DegradationState, LiftReason, OutboxEvent, QuotaMeasure, QuotaStateStore, QuotaStateTx, ThresholdKey, ThresholdState } from "./types.js";

export interface QuotaLifecycleOptions {
  store: QuotaStateStore;
  /** The service's one clock (Redis TIME in production): decides which tenant-local period it is. */
  clock: Clock;
  logger: Logger;
}

export interface TenantEvaluation {
  tenantId: string;
  /** Types of the events this evaluation wrote, in outbox order. */
  events: OutboxEvent["type"][];
}

const thresholdKeyOf = (k: ThresholdKey) => `${k.scope}|${k.dimension}|${k.period}|${k.kind}|${k.thresholdPercent}`;

const dayStart = (day: string, timeZone: string) => {
  const [y, m, d] = day.split("-").map(Number);
  return localMidnight(y!, m!, d!, timeZone);
};

/**
 * The persistent side of quotas: period resets, notify thresholds, budget exhaustion and the
 * degradation rung of each tenant and key. `evaluateTenant` compares a tenant's committed usage
 * (exact: rollups plus the ledger tail) with its limits and moves the stored state, writing one
 * outbox event per transition in the same transaction. Any number of evaluations may run at
 * once: they queue on the tenant's lock, and every transition is a conditional write that only
 * one transaction can make, so each event is written exactly once.
 */
export class QuotaLifecycleService {
  constructor(private readonly o: QuotaLifecycleOptions) {}

  async evaluateTenant(tenantId: string, now: Date = this.o.clock.now()): Promise<TenantEvaluation> {
    return this.o.store.withTenant(tenantId, (tx) => this.evaluate(tx, tenantId, now));
  }

  /** Tenants whose tenant-local day ended: their period reset is due. */
  tenantsDueForReset(limit = 10_000): Promise<string[]> {
    return this.o.store.tenantsDueForReset(this.o.clock.now(), limit);
  }

  /**
   * Tenants with a crossed threshold or a rung. Limit changes reach the lifecycle through
   * invalidation messages; re-evaluating these now and then is the safety net for a lost one.
   */
  tenantsWithOpenState(limit = 10_000): Promise<string[]> {
    return this.o.store.tenantsWithOpenState(limit);
  }

  /** Tenants an operator change may affect: the tenant itself, a key's tenant, a tier's tenants. */
  async tenantsAffectedBy(change: { kind: "tier" | "tenant" | "apiKey"; id: string }): Promise<string[]> {
    if (change.kind === "tenant") return [change.id];
    if (change.kind === "apiKey") {
      const t = await this.o.store.tenantOfKey(change.id);
      return t ? [t] : [];
    }
    return this.o.store.tenantsOnTier(change.id);
  }

  private async evaluate(tx: QuotaStateTx, tenantId: string, now: Date): Promise<TenantEvaluation> {
    const written: OutboxEvent["type"][] = [];
    const emit = async (e: OutboxEvent, id?: string) => {
      await tx.emit(e, id);
      written.push(e.type);
    };
    const found = await tx.policy();
    if (!found) return { tenantId, events: written };
    const { tenant, tier } = found;
    const periods = periodsAt(now, tenant.timezone);

    // 1. Period reset: move the stored periods forward once; the mover tells everyone.
    const stored = await tx.periodState();
    const next = {
      tenantId,
      timezone: tenant.timezone,
      day: periods.day,
      month: periods.month,
      dayEndsAt: periods.dayEndsAt,
      monthEndsAt: periods.monthEndsAt,
    };
    if (!stored) {
      await tx.savePeriodState(next, null);
    } else if (periods.day > stored.day || periods.month > stored.month || stored.timezone !== tenant.timezone) {
      // A clock that reads earlier than the stored day (never with the one Redis clock) never
      // moves the periods back: the later one is kept.
      const target = periods.day >= stored.day ? next : { ...stored, timezone: tenant.timezone };
      if (await tx.savePeriodState(target, { day: stored.day, month: stored.month })) {
        if (target.day > stored.day) {
          await emit(events.periodRolled(tenantId, "day", stored.day, target.day, tenant.timezone, dayStart(target.day, tenant.timezone), now));
        }
        if (target.month > stored.month) {
          await emit(events.periodRolled(tenantId, "month", stored.month, target.month, tenant.timezone, dayStart(`${target.month}-01`, tenant.timezone), now));
        }
      }
    }

    // 2. Usage and the state it is compared with.
    const usage = await tx.usage(periods.day, periods.month);
    const open = await tx.openThresholds();
    const degraded = await tx.degradations();
    const keyIds = new Set<string>(usage.map((u) => u.keyId));
    for (const s of [...open.map((r) => r.scope), ...degraded.map((d) => d.scope)]) {
      const k = keyIdOfScope(s);
      if (k) keyIds.add(k);
    }
    const policy = { tenant, tier, keys: await tx.keys([...keyIds]) };
    const measures = measuresFor(policy, usage, periods, keyIds);
    const measureOf = (scope: string, dimension: string) => measures.find((m) => m.scope === scope && m.dimension === dimension);
    const currentPeriod = (d: QuotaMeasure["dimension"]) => (periodKindOf(d) === "day" ? periods.day : periods.month);
    const ladder = tier.degradationLadder;

    // 3. Open thresholds that no longer hold: their period ended, or the limit was raised/removed.
    const stillOpen = new Set<string>();
    for (const row of open) {
      const resolution = this.resolutionOf(row, currentPeriod(row.dimension), measureOf(row.scope, row.dimension), ladder);
      if (!resolution) {
        stillOpen.add(thresholdKeyOf(row));
        continue;
      }
      if (!(await tx.resolveThreshold(row, resolution, now))) continue;
      // EXHAUSTED rows are bookkeeping for budget.exhausted; there is no "restored" event.
      if (row.kind !== "NOTIFY") continue;
      const m = measureOf(row.scope, row.dimension);
      const sameP = m && m.period === row.period;
      await emit(
        events.thresholdResolved(
          tenantId,
          row,
          { periodKind: periodKindOf(row.dimension), unit: unitOf(row.dimension) },
          resolution,
          { usage: sameP ? m.usage : row.usage, limit: sameP ? m.limit : row.limit },
          now,
        ),
      );
    }

    // 4. Crossings: insert-or-nothing per threshold; only the inserting transaction emits.
    for (const m of measures) {
      if (m.limit === null) continue;
      const limited = m as QuotaMeasure & { limit: bigint };
      for (const p of crossedThresholds(m, tier.notifyAtPercent)) {
        const key: ThresholdKey = { scope: m.scope, dimension: m.dimension, period: m.period, kind: "NOTIFY", thresholdPercent: p };
        if (stillOpen.has(thresholdKeyOf(key))) continue;
        const crossing = await tx.crossThreshold(key, m.usage, m.limit, now);
        if (crossing !== null) await emit(events.thresholdCrossed(tenantId, limited, p, crossing, now));
      }
      const exhausted = budgetExhaustion(m, ladder);
      if (exhausted) {
        const key: ThresholdKey = { scope: m.scope, dimension: m.dimension, period: m.period, kind: "EXHAUSTED", thresholdPercent: 100 };
        if (stillOpen.has(thresholdKeyOf(key))) continue;
        const crossing = await tx.crossThreshold(key, m.usage, m.limit, now);
        if (crossing !== null) await emit(events.budgetExhausted(tenantId, limited, exhausted.blockedBy, exhausted.atPercent, now));
      }
    }

    // 5. Degradation rung per scope (tenant, and each key with usage or state).
    const current = new Map(degraded.map((d) => [d.scope, d]));
    const scopes = new Set<string>([scopeName.tenant(), ...[...keyIds].map(scopeName.key), ...current.keys()]);
    for (const scope of scopes) {
      let state: DegradationState | null = current.get(scope) ?? null;
      const desired = rungFor(
        measures.filter((m) => m.scope === scope),
        ladder,
      );
      if (state && state.period < currentPeriod(state.dimension)) {
        // The rung's period is over: lift it, whatever the new period brings (re-applied below).
        const m = measureOf(scope, state.dimension);
        const ok = await this.lift(tx, emit, tenantId, state, "period_reset", m ?? null, currentPeriod(state.dimension), now);
        if (!ok) continue;
        state = null;
      }
      if (!desired) {
        if (state) {
          const m = measureOf(scope, state.dimension);
          await this.lift(tx, emit, tenantId, state, this.liftReason(state, m ?? null, ladder), m ?? null, currentPeriod(state.dimension), now);
        }
        continue;
      }
      const same =
        state &&
        state.rung === desired.index &&
        state.dimension === desired.rung.of &&
        state.atPercent === desired.rung.atPercent &&
        state.period === desired.measure.period;
      if (same) continue;
      const eventId = tx.newEventId();
      const next: DegradationState = {
        scope,
        rung: desired.index,
        dimension: desired.measure.dimension,
        atPercent: desired.rung.atPercent,
        blocking: desired.rung.block,
        period: desired.measure.period,
        usage: desired.measure.usage,
        limit: desired.measure.limit,
        reason: `usage ${events.amount(desired.measure.unit, desired.measure.usage)} reached ${desired.rung.atPercent}% of ${desired.measure.dimension} limit ${events.amount(desired.measure.unit, desired.measure.limit)} for ${scope} in ${desired.measure.period}`,
        appliedAt: now,
      };
      if (await tx.applyDegradation(next, state, eventId)) {
        await emit(events.degradationApplied(tenantId, desired.index, desired.rung, desired.measure, state?.rung ?? null, now), eventId);
      }
    }
    if (written.length > 0) this.o.logger.debug({ tenantId, events: written }, "quota lifecycle transitions");
    return { tenantId, events: written };
  }

  private resolutionOf(
    row: ThresholdState,
    currentPeriod: string,
    m: QuotaMeasure | undefined,
    ladder: Parameters<typeof budgetExhaustion>[1],
  ): "period_ended" | "limit_raised" | "limit_removed" | null {
    if (row.period < currentPeriod) return "period_ended";
    if (row.period > currentPeriod) return null; // a period this clock has not reached yet
    if (!m || m.limit === null) return "limit_removed";
    if (row.kind === "NOTIFY") return reached(m.usage, m.limit, row.thresholdPercent) ? null : "limit_raised";
    return budgetExhaustion(m, ladder) ? null : "limit_raised";
  }

  private liftReason(state: DegradationState, m: QuotaMeasure | null, ladder: Parameters<typeof budgetExhaustion>[1]): LiftReason {
    const rung = ladder[state.rung];
    if (!rung || rung.of !== state.dimension || rung.atPercent !== state.atPercent) return "ladder_changed";
    if (!m || m.limit === null) return "limit_removed";
    return "limit_raised";
  }

  private async lift(
    tx: QuotaStateTx,
    emit: (e: OutboxEvent, id?: string) => Promise<void>,
    tenantId: string,
    state: DegradationState,
    reason: LiftReason,
    m: QuotaMeasure | null,
    period: string,
    now: Date,
  ): Promise<boolean> {
    const eventId = tx.newEventId();
    const usage = m?.usage ?? 0n;
    const limit = m?.limit ?? null;
    if (!(await tx.liftDegradation(state, reason, usage, limit, eventId, now))) return false;
    await emit(
      events.degradationLifted(tenantId, state, { periodKind: periodKindOf(state.dimension), unit: unitOf(state.dimension) }, reason, { usage, limit, period }, now),
      eventId,
    );
    return true;
  }
}
