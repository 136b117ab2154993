import { and, eq, inArray, sql } from "drizzle-orm";
import type { Db } from "./db.js";
import { apiKeys, tenants, tiers } from "./schema/index.js";
import { quotaDegradationHistory, quotaDegradationState, quotaTenantPeriods, quotaThresholdState } from "./schema/usage.js";
import { apiKeyFromRow, tenantFromRow, tierFromRow } from "./mapping.js";
import { newId } from "../../lib/ids.js";
import { isQuotaDimension } from "../../domain/usage/quota-rules.js";
import type { ApiKey } from "../../domain/tenancy/types.js";
import type {
  DegradationState,
  KeyPeriodUsage,
  LiftReason,
  OutboxEvent,
  QuotaDimension,
  QuotaStateStore,
  QuotaStateTx,
  TenantPeriodState,
  TenantPolicy,
  ThresholdKey,
  ThresholdResolution,
  ThresholdState,
} from "../../domain/usage/types.js";
import { insertOutboxEvents } from "./usage-events.js";
import { keyPeriodUsage, lockedWatermark, rowsOf, type Tx } from "./usage-sql.js";

/** Advisory-lock namespace of quota evaluations (the second key is the tenant id's hash). */
const EVALUATION_LOCK_NAMESPACE = 72_420_004;

const dim = (d: string): QuotaDimension => {
  if (!isQuotaDimension(d)) throw new Error(`unexpected quota dimension ${d} in stored state`);
  return d;
};

const thresholdWhere = (tenantId: string, k: ThresholdKey) =>
  and(
    eq(quotaThresholdState.tenantId, tenantId),
    eq(quotaThresholdState.scope, k.scope),
    eq(quotaThresholdState.dimension, k.dimension),
    eq(quotaThresholdState.period, k.period),
    eq(quotaThresholdState.kind, k.kind),
    eq(quotaThresholdState.thresholdPercent, k.thresholdPercent),
  );

export class PostgresQuotaStateTx implements QuotaStateTx {
  constructor(
    private readonly tx: Tx,
    private readonly tenantId: string,
  ) {}

  async policy(): Promise<Omit<TenantPolicy, "keys"> | null> {
    const [t] = await this.tx.select().from(tenants).where(eq(tenants.id, this.tenantId));
    if (!t) return null;
    const [tier] = await this.tx.select().from(tiers).where(eq(tiers.id, t.tierId));
    if (!tier) return null;
    return { tenant: tenantFromRow(t), tier: tierFromRow(tier) };
  }

  async keys(ids: string[]): Promise<ApiKey[]> {
    if (ids.length === 0) return [];
    const rows = await this.tx
      .select()
      .from(apiKeys)
      .where(and(eq(apiKeys.tenantId, this.tenantId), inArray(apiKeys.id, ids)));
    return rows.map(apiKeyFromRow);
  }

  async periodState(): Promise<TenantPeriodState | null> {
    const [r] = await this.tx.select().from(quotaTenantPeriods).where(eq(quotaTenantPeriods.tenantId, this.tenantId));
    return r ? { tenantId: r.tenantId, timezone: r.timezone, day: r.day, month: r.month, dayEndsAt: r.dayEndsAt, monthEndsAt: r.monthEndsAt } : null;
  }

  async savePeriodState(next: TenantPeriodState, expected: { day: string; month: string } | null): Promise<boolean> {
    const values = {
      tenantId: this.tenantId,
      timezone: next.timezone,
      day: next.day,
      month: next.month,
      dayEndsAt: next.dayEndsAt,
      monthEndsAt: next.monthEndsAt,
      updatedAt: new Date(),
    };
    if (expected === null) {
      const r = await this.tx.insert(quotaTenantPeriods).values(values).onConflictDoNothing().returning({ t: quotaTenantPeriods.tenantId });
      return r.length === 1;
    }
    const r = await this.tx
      .update(quotaTenantPeriods)
      .set(values)
      .where(and(eq(quotaTenantPeriods.tenantId, this.tenantId), eq(quotaTenantPeriods.day, expected.day), eq(quotaTenantPeriods.month, expected.month)))
      .returning({ t: quotaTenantPeriods.tenantId });
    return r.length === 1;
  }

  async usage(day: string, month: string): Promise<KeyPeriodUsage[]> {
    return keyPeriodUsage(this.tx, this.tenantId, day, month, await lockedWatermark(this.tx));
  }

  async openThresholds(): Promise<ThresholdState[]> {
    const rows = await this.tx
      .select()
      .from(quotaThresholdState)
      .where(and(eq(quotaThresholdState.tenantId, this.tenantId), eq(quotaThresholdState.state, "CROSSED")));
    return rows.map((r) => ({
      scope: r.scope,
      dimension: dim(r.dimension),
      period: r.period,
      kind: r.kind,
      thresholdPercent: r.thresholdPercent,
      state: r.state,
      crossings: r.crossings,
      usage: r.usage,
      limit: r.limitValue,
      crossedAt: r.crossedAt,
    }));
  }

  async crossThreshold(key: ThresholdKey, usage: bigint, limit: bigint, at: Date): Promise<number | null> {
    // Insert-or-nothing on the primary key; a RESOLVED row (its limit was raised) may cross again.
    // Under concurrency the second transaction waits on the first's row and then finds it CROSSED.
    const r = await this.tx
      .insert(quotaThresholdState)
      .values({
        tenantId: this.tenantId,
        ...key,
        state: "CROSSED",
        crossings: 1,
        usage,
        limitValue: limit,
        crossedAt: at,
        resolvedAt: null,
        resolution: null,
      })
      .onConflictDoUpdate({
        target: [
          quotaThresholdState.tenantId,
          quotaThresholdState.scope,
          quotaThresholdState.dimension,
          quotaThresholdState.period,
          quotaThresholdState.kind,
          quotaThresholdState.thresholdPercent,
        ],
        set: {
          state: "CROSSED",
          crossings: sql`${quotaThresholdState.crossings} + 1`,
          usage,
          limitValue: limit,
          crossedAt: at,
          resolvedAt: null,
          resolution: null,
        },
        setWhere: eq(quotaThresholdState.state, "RESOLVED"),
      })
      .returning({ crossings: quotaThresholdState.crossings });
    return r.length === 1 ? r[0]!.crossings : null;
  }

  async resolveThreshold(key: ThresholdKey, resolution: ThresholdResolution, at: Date): Promise<boolean> {
    const r = await this.tx
      .update(quotaThresholdState)
      .set({ state: "RESOLVED", resolvedAt: at, resolution })
      .where(and(thresholdWhere(this.tenantId, key), eq(quotaThresholdState.state, "CROSSED")))
      .returning({ k: quotaThresholdState.tenantId });
    return r.length === 1;
  }

  async degradations(): Promise<DegradationState[]> {
    const rows = await this.tx.select().from(quotaDegradationState).where(eq(quotaDegradationState.tenantId, this.tenantId));
    return rows.map((r) => ({
      scope: r.scope,
      rung: r.rung,
      dimension: dim(r.dimension),
      atPercent: r.atPercent,
      blocking: r.blocking,
      period: r.period,
      usage: r.usage,
      limit: r.limitValue,
      reason: r.reason,
      appliedAt: r.appliedAt,
    }));
  }

  private sameState(s: DegradationState) {
    return and(
      eq(quotaDegradationState.tenantId, this.tenantId),
      eq(quotaDegradationState.scope, s.scope),
      eq(quotaDegradationState.rung, s.rung),
      eq(quotaDegradationState.dimension, s.dimension),
      eq(quotaDegradationState.period, s.period),
    );
  }

  async applyDegradation(next: DegradationState, expected: DegradationState | null, eventId: string): Promise<boolean> {
    const values = {
      tenantId: this.tenantId,
      scope: next.scope,
      rung: next.rung,
      dimension: next.dimension,
      atPercent: next.atPercent,
      blocking: next.blocking,
      period: next.period,
      usage: next.usage,
      limitValue: next.limit,
      reason: next.reason,
      appliedAt: next.appliedAt,
      updatedAt: next.appliedAt,
    };
    const changed =
      expected === null
        ? await this.tx.insert(quotaDegradationState).values(values).onConflictDoNothing().returning({ s: quotaDegradationState.scope })
        : await this.tx.update(quotaDegradationState).set(values).where(this.sameState(expected)).returning({ s: quotaDegradationState.scope });
    if (changed.length !== 1) return false;
    await this.tx.insert(quotaDegradationHistory).values({
      tenantId: this.tenantId,
      scope: next.scope,
      action: "APPLIED",
      fromRung: expected?.rung ?? null,
      toRung: next.rung,
      dimension: next.dimension,
      atPercent: next.atPercent,
      period: next.period,
      usage: next.usage,
      limitValue: next.limit,
      reason: next.reason,
      eventId,
      at: next.appliedAt,
    });
    return true;
  }

  async liftDegradation(current: DegradationState, reason: LiftReason, usage: bigint, limit: bigint | null, eventId: string, at: Date): Promise<boolean> {
    const gone = await this.tx.delete(quotaDegradationState).where(this.sameState(current)).returning({ s: quotaDegradationState.scope });
    if (gone.length !== 1) return false;
    await this.tx.insert(quotaDegradationHistory).values({
      tenantId: this.tenantId,
      scope: current.scope,
      action: "LIFTED",
      fromRung: current.rung,
      toRung: null,
      dimension: current.dimension,
      atPercent: current.atPercent,
      period: current.period,
      usage,
      limitValue: limit,
      reason,
      eventId,
      at,
    });
    return true;
  }

  async emit(e: OutboxEvent, id?: string): Promise<string> {
    const [written] = await insertOutboxEvents(this.tx, [{ ...e, id }]);
    return written!;
  }

  newEventId(): string {
    return newId("event");
  }
}

/** The quota lifecycle's state in Postgres: one transaction per tenant evaluation. */
export class PostgresQuotaStateStore implements QuotaStateStore {
  constructor(private readonly db: Db) {}

  withTenant<T>(tenantId: string, fn: (tx: QuotaStateTx) => Promise<T>): Promise<T> {
    return this.db.transaction(async (tx) => {
      // Evaluations of one tenant queue here; each then reads what the previous one committed.
      await tx.execute(sql`SELECT pg_advisory_xact_lock(${EVALUATION_LOCK_NAMESPACE}, hashtext(${tenantId}))`);
      return fn(new PostgresQuotaStateTx(tx, tenantId));
    });
  }

  async tenantsWithOpenState(limit: number): Promise<string[]> {
    const rows = await rowsOf<{ tenant_id: string }>(
      this.db,
      sql`SELECT tenant_id FROM quota_threshold_state WHERE state = 'CROSSED'
          UNION SELECT tenant_id FROM quota_degradation_state
          LIMIT ${limit}`,
    );
    return rows.map((r) => r.tenant_id);
  }

  async tenantsDueForReset(now: Date, limit: number): Promise<string[]> {
    const rows = await rowsOf<{ tenant_id: string }>(
      this.db,
      sql`SELECT tenant_id FROM quota_tenant_periods WHERE day_ends_at <= ${now.toISOString()}::timestamptz ORDER BY day_ends_at LIMIT ${limit}`,
    );
    return rows.map((r) => r.tenant_id);
  }

  async tenantOfKey(keyId: string): Promise<string | null> {
    const [r] = await this.db.select({ t: apiKeys.tenantId }).from(apiKeys).where(eq(apiKeys.id, keyId));
    return r?.t ?? null;
  }

  async tenantsOnTier(tierId: string): Promise<string[]> {
    // Tenants the lifecycle has seen (a period row exists once a tenant had any usage).
    const rows = await rowsOf<{ tenant_id: string }>(
      this.db,
      sql`SELECT t.id AS tenant_id FROM tenants t JOIN quota_tenant_periods p ON p.tenant_id = t.id WHERE t.tier_id = ${tierId}`,
    );
    return rows.map((r) => r.tenant_id);
  }
}
