import type { Clock } from "../../lib/clock.js";
import type { Logger } from "../../lib/logger.js";
import { periodsAt } from "../enforcement/periods.js";
import type { KeyPeriodUsage, PeriodKind } from "./types.js";

/** One Redis quota counter hash: a scope ("tenant" | "key:<id>") in one tenant-local period. */
export interface CounterTarget {
  scope: string;
  periodKind: PeriodKind;
  period: string;
}

/** The used parts of a counter (tok, usd); the held parts (tokh, usdh) are in-flight reservations. */
export interface CounterUsed {
  tokens: bigint;
  costNano: bigint;
}

export type RepairOutcome = "repaired" | "unchanged" | "busy" | "missing";

/** The Redis side: read the used parts, and set them to the ledger's unless they moved meanwhile. */
export interface QuotaCounterPort {
  read(tenantId: string, targets: CounterTarget[]): Promise<Array<CounterUsed | null>>;
  /**
   * Atomically, per counter: if its used parts still equal `expected`, set them to `ledger`
   * (held parts untouched). One script call per tenant: every key in KEYS, one hash slot.
   */
  repair(tenantId: string, items: Array<{ target: CounterTarget; expected: CounterUsed; ledger: CounterUsed }>): Promise<RepairOutcome[]>;
}

export interface DriftRecord {
  tenantId: string;
  target: CounterTarget;
  redis: CounterUsed;
  ledger: CounterUsed;
  repaired: boolean;
  foundAt: Date;
}

/** The Postgres side: who to reconcile, the exact ledger totals, and where drift is recorded. */
export interface ReconciliationStore {
  tenants(tenantId?: string): Promise<Array<{ id: string; timezone: string }>>;
  keyIds(tenantId: string): Promise<string[]>;
  /** Exact committed usage per key in the periods (rollups plus the ledger tail). */
  usage(tenantId: string, day: string, month: string): Promise<KeyPeriodUsage[]>;
  recordDrift(rows: DriftRecord[]): Promise<void>;
}

export interface ReconciliationOptions {
  counters: QuotaCounterPort;
  store: ReconciliationStore;
  clock: Clock;
  logger: Logger;
  /**
   * How long after reading Redis the ledger is read. A commit settles its counters in Redis
   * first and appends its ledger row after (a few ms, group commit); waiting this long lets rows
   * of commits settled before the read become durable, so they are not mistaken for drift.
   */
  settleGraceMs?: number;
  /** Tenants whose counters are read before one shared grace wait. */
  tenantsPerBatch?: number;
}

export interface ReconciliationSummary {
  tenants: number;
  counters: number;
  drifted: number;
  repaired: number;
  /** Counters that changed while being checked (live traffic): left for the next run. */
  busy: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Reconciliation of the Redis quota counters with the ledger, which wins. Only the used parts
 * are compared and repaired; a counter that moved between the read and the repair is skipped,
 * never overwritten, so a repair can never erase a concurrent commit. A missing counter is not
 * drift: the hot path re-seeds it from the ledger before using it.
 */
export class ReconciliationService {
  private readonly graceMs: number;
  private readonly perBatch: number;

  constructor(private readonly o: ReconciliationOptions) {
    this.graceMs = o.settleGraceMs ?? 2_000;
    this.perBatch = o.tenantsPerBatch ?? 200;
  }

  async run(opts: { tenantId?: string; onProgress?: (done: number, total: number) => void | Promise<void> } = {}): Promise<ReconciliationSummary> {
    const tenants = await this.o.store.tenants(opts.tenantId);
    const summary: ReconciliationSummary = { tenants: tenants.length, counters: 0, drifted: 0, repaired: 0, busy: 0 };
    for (let i = 0; i < tenants.length; i += this.perBatch) {
      const batch = tenants.slice(i, i + this.perBatch);
      const now = this.o.clock.now();
      const observed = await Promise.all(
        batch.map(async (t) => {
          const p = periodsAt(now, t.timezone);
          const scopes = ["tenant", ...(await this.o.store.keyIds(t.id)).map((k) => `key:${k}`)];
          const targets: CounterTarget[] = scopes.flatMap((scope) => [
            { scope, periodKind: "day" as const, period: p.day },
            { scope, periodKind: "month" as const, period: p.month },
          ]);
          return { tenant: t, periods: p, targets, redis: await this.o.counters.read(t.id, targets) };
        }),
      );
      await sleep(this.graceMs);
      for (const obs of observed) {
        const usage = await this.o.store.usage(obs.tenant.id, obs.periods.day, obs.periods.month);
        const ledgerOf = (t: CounterTarget): CounterUsed => {
          const rows = t.scope === "tenant" ? usage : usage.filter((u) => `key:${u.keyId}` === t.scope);
          return rows.reduce(
            (acc, u) =>
              t.periodKind === "day"
                ? { tokens: acc.tokens + u.dayTokens, costNano: acc.costNano + u.dayCostNano }
                : { tokens: acc.tokens + u.monthTokens, costNano: acc.costNano + u.monthCostNano },
            { tokens: 0n, costNano: 0n },
          );
        };
        const candidates: Array<{ target: CounterTarget; expected: CounterUsed; ledger: CounterUsed }> = [];
        obs.targets.forEach((target, idx) => {
          const r = obs.redis[idx];
          if (!r) return;
          summary.counters++;
          const ledger = ledgerOf(target);
          if (r.tokens !== ledger.tokens || r.costNano !== ledger.costNano) candidates.push({ target, expected: r, ledger });
        });
        if (candidates.length === 0) continue;
        const outcomes = await this.o.counters.repair(obs.tenant.id, candidates);
        const drift: DriftRecord[] = [];
        const foundAt = this.o.clock.now();
        outcomes.forEach((o, idx) => {
          const c = candidates[idx]!;
          if (o === "busy") summary.busy++;
          if (o !== "repaired") return;
          summary.drifted++;
          summary.repaired++;
          drift.push({ tenantId: obs.tenant.id, target: c.target, redis: c.expected, ledger: c.ledger, repaired: true, foundAt });
        });
        if (drift.length > 0) {
          await this.o.store.recordDrift(drift);
          this.o.logger.warn(
            { tenantId: obs.tenant.id, drift: drift.map((d) => ({ ...d.target, tokens: String(d.redis.tokens - d.ledger.tokens), costNano: String(d.redis.costNano - d.ledger.costNano) })) },
            "quota counters drifted from the ledger; set to the ledger's totals",
          );
        }
      }
      await opts.onProgress?.(Math.min(i + this.perBatch, tenants.length), tenants.length);
    }
    return summary;
  }
}
