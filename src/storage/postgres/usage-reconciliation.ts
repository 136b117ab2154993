import { asc, eq } from "drizzle-orm";
import type { Db } from "./db.js";
import { apiKeys, tenants } from "./schema/index.js";
import { usageCounterDrift } from "./schema/usage.js";
import type { DriftRecord, ReconciliationStore } from "../../domain/usage/reconciliation.service.js";
import type { KeyPeriodUsage } from "../../domain/usage/types.js";
import { keyPeriodUsage, snapshotWatermark } from "./usage-sql.js";

/** Reconciliation's Postgres side: tenants and keys to check, exact ledger totals, the drift log. */
export class PostgresReconciliationStore implements ReconciliationStore {
  constructor(private readonly db: Db) {}

  async tenants(tenantId?: string): Promise<Array<{ id: string; timezone: string }>> {
    const q = this.db.select({ id: tenants.id, timezone: tenants.timezone }).from(tenants);
    return tenantId === undefined ? q.orderBy(asc(tenants.id)) : q.where(eq(tenants.id, tenantId));
  }

  async keyIds(tenantId: string): Promise<string[]> {
    const rows = await this.db.select({ id: apiKeys.id }).from(apiKeys).where(eq(apiKeys.tenantId, tenantId)).orderBy(asc(apiKeys.id));
    return rows.map((r) => r.id);
  }

  /** One REPEATABLE READ snapshot: the watermark, the rollups and the tail agree. */
  usage(tenantId: string, day: string, month: string): Promise<KeyPeriodUsage[]> {
    return this.db.transaction(async (tx) => keyPeriodUsage(tx, tenantId, day, month, await snapshotWatermark(tx)), {
      isolationLevel: "repeatable read",
      accessMode: "read only",
    });
  }

  async recordDrift(rows: DriftRecord[]): Promise<void> {
    if (rows.length === 0) return;
    await this.db.insert(usageCounterDrift).values(
      rows.map((d) => ({
        tenantId: d.tenantId,
        scope: d.target.scope,
        period: d.target.period,
        periodKind: d.target.periodKind,
        redisTokens: d.redis.tokens,
        ledgerTokens: d.ledger.tokens,
        redisCostNano: d.redis.costNano,
        ledgerCostNano: d.ledger.costNano,
        tokenDrift: d.redis.tokens - d.ledger.tokens,
        costDriftNano: d.redis.costNano - d.ledger.costNano,
        repaired: d.repaired,
        foundAt: d.foundAt,
      })),
    );
  }
}
