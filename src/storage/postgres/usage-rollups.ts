import { sql } from "drizzle-orm";
import type { Db } from "./db.js";
import type { Logger } from "../../lib/logger.js";
import type { RollupBatch, RollupPosition, RollupStore } from "../../domain/usage/rollup.service.js";
import { reservationExpired, usageOverage, type LedgerEventRow } from "../../domain/usage/events.js";
import { insertOutboxEvents } from "./usage-events.js";
import { pgCode, ROLLUP_STATE, rowsOf, type Executor } from "./usage-sql.js";

/**
 * Rollups of the usage ledger into usage_daily / usage_monthly.
 *
 * Why a "safe horizon" and not just max(id): ledger ids come from an identity sequence when a
 * row is inserted, but the inserting transactions commit in any order. A reader can see id 11
 * committed while id 10 is still in flight; a watermark moved to 11 would skip row 10 for good.
 * So the horizon is read under `LOCK TABLE usage_ledger IN SHARE MODE`: that lock waits for every
 * transaction holding the ledger's insert lock (the only ones that can hold unassigned-yet
 * invisible ids) to finish, and ids handed out later are larger than anything seen under it.
 * The lock is held for one index lookup and with a short lock_timeout: at worst ledger appends
 * wait that long, once per run, and a run that cannot get it simply rolls up to the previous
 * horizon. Usage reports stay exact either way: they add the tail above the watermark.
 */
const HORIZON_LOCK_TIMEOUT_MS = 200;

const FIGURE_COLUMNS = sql.raw(
  "input_tokens, output_tokens, cost_nano, requests, failed_requests, cancelled_requests, overage_requests, expired_reservations, updated_at",
);
/** Sums of a set of ledger rows, in FIGURE_COLUMNS order. */
const SUMS = sql.raw(`
  sum(input_tokens)::bigint, sum(output_tokens)::bigint, sum(cost_nano)::bigint,
  count(*) FILTER (WHERE entry = 'COMMIT'),
  count(*) FILTER (WHERE entry = 'COMMIT' AND status = 'FAILED'),
  count(*) FILTER (WHERE entry = 'COMMIT' AND status = 'CANCELLED'),
  count(*) FILTER (WHERE entry = 'COMMIT' AND overage),
  count(*) FILTER (WHERE entry = 'EXPIRY'),
  now()`);
/** ON CONFLICT: add the batch's deltas to the row (`u` is the target alias). */
const ADD_DELTAS = sql.raw(`
  input_tokens = u.input_tokens + excluded.input_tokens,
  output_tokens = u.output_tokens + excluded.output_tokens,
  cost_nano = u.cost_nano + excluded.cost_nano,
  requests = u.requests + excluded.requests,
  failed_requests = u.failed_requests + excluded.failed_requests,
  cancelled_requests = u.cancelled_requests + excluded.cancelled_requests,
  overage_requests = u.overage_requests + excluded.overage_requests,
  expired_reservations = u.expired_reservations + excluded.expired_reservations,
  updated_at = excluded.updated_at`);

export class PostgresRollupStore implements RollupStore {
  constructor(
    private readonly db: Db,
    private readonly opts: { logger: Logger; horizonLockTimeoutMs?: number },
  ) {}

  private async ensureState(exec: Executor): Promise<void> {
    await exec.execute(
      sql`INSERT INTO usage_rollup_state (name, watermark, safe_horizon, rows_rolled) VALUES (${ROLLUP_STATE}, 0, 0, 0) ON CONFLICT (name) DO NOTHING`,
    );
  }

  async advanceHorizon(): Promise<RollupPosition> {
    await this.ensureState(this.db);
    const [state] = await rowsOf<{ w: string; h: string }>(
      this.db,
      sql`SELECT watermark::text AS w, safe_horizon::text AS h FROM usage_rollup_state WHERE name = ${ROLLUP_STATE}`,
    );
    const [top] = await rowsOf<{ m: string }>(this.db, sql`SELECT coalesce(max(id), 0)::text AS m FROM usage_ledger`);
    let horizon = BigInt(state!.h);
    const ledgerMax = BigInt(top!.m);
    if (ledgerMax > horizon) {
      const timeout = this.opts.horizonLockTimeoutMs ?? HORIZON_LOCK_TIMEOUT_MS;
      try {
        const safe = await this.db.transaction(async (tx) => {
          await tx.execute(sql.raw(`SET LOCAL lock_timeout = '${Math.max(1, Math.floor(timeout))}ms'`));
          await tx.execute(sql`LOCK TABLE usage_ledger IN SHARE MODE`);
          const [r] = await rowsOf<{ m: string }>(tx, sql`SELECT coalesce(max(id), 0)::text AS m FROM usage_ledger`);
          return BigInt(r!.m);
        });
        await this.db.execute(
          sql`UPDATE usage_rollup_state SET safe_horizon = greatest(safe_horizon, ${safe.toString()}::bigint), updated_at = now() WHERE name = ${ROLLUP_STATE}`,
        );
        if (safe > horizon) horizon = safe;
      } catch (err) {
        // 55P03 lock_not_available: a ledger insert is slow right now; the next run tries again.
        if (pgCode(err) !== "55P03") throw err;
        this.opts.logger.info({ ledgerMax: ledgerMax.toString(), horizon: horizon.toString() }, "rollup horizon not advanced: ledger inserts busy");
      }
    }
    return { watermark: BigInt(state!.w), safeHorizon: horizon, ledgerMax };
  }

  async rollBatch(maxRows: number, beforeCommit?: (b: RollupBatch) => void | Promise<void>): Promise<RollupBatch | null> {
    await this.ensureState(this.db);
    return this.db.transaction(async (tx) => {
      // The cursor row lock serializes batches (any number of workers may run) and keeps quota
      // evaluations, which read it FOR SHARE, from seeing rollups and watermark out of step.
      const [state] = await rowsOf<{ w: string; h: string }>(
        tx,
        sql`SELECT watermark::text AS w, safe_horizon::text AS h FROM usage_rollup_state WHERE name = ${ROLLUP_STATE} FOR UPDATE`,
      );
      const w = BigInt(state!.w);
      const h = BigInt(state!.h);
      if (w >= h) return null;
      const [agg] = await rowsOf<{ to_id: string | null; n: number; tenants: string[] | null }>(
        tx,
        sql`
        WITH batch AS MATERIALIZED (
          SELECT id, tenant_id, key_id, model, route, entry, status, input_tokens, output_tokens, cost_nano, overage, period_day, period_month
          FROM usage_ledger WHERE id > ${w.toString()}::bigint AND id <= ${h.toString()}::bigint ORDER BY id LIMIT ${maxRows}
        ), daily AS (
          INSERT INTO usage_daily AS u (tenant_id, period_day, period_month, key_id, model, route, ${FIGURE_COLUMNS})
          SELECT tenant_id, period_day, period_month, key_id, model, route, ${SUMS}
          FROM batch GROUP BY tenant_id, period_day, period_month, key_id, model, route
          ON CONFLICT (tenant_id, period_day, key_id, model, route) DO UPDATE SET ${ADD_DELTAS}
          RETURNING 1
        ), monthly AS (
          INSERT INTO usage_monthly AS u (tenant_id, period_month, key_id, model, route, ${FIGURE_COLUMNS})
          SELECT tenant_id, period_month, key_id, model, route, ${SUMS}
          FROM batch GROUP BY tenant_id, period_month, key_id, model, route
          ON CONFLICT (tenant_id, period_month, key_id, model, route) DO UPDATE SET ${ADD_DELTAS}
          RETURNING 1
        )
        SELECT (SELECT max(id) FROM batch)::text AS to_id,
               (SELECT count(*) FROM batch)::int AS n,
               (SELECT json_agg(DISTINCT tenant_id) FROM batch) AS tenants,
               (SELECT count(*) FROM daily)::int AS daily_rows,
               (SELECT count(*) FROM monthly)::int AS monthly_rows`,
      );
      if (!agg || agg.to_id === null) {
        // Ids between the watermark and the horizon that never committed (a rolled-back insert,
        // or a duplicate commit that ON CONFLICT skipped after taking an id): jump the gap.
        await tx.execute(sql`UPDATE usage_rollup_state SET watermark = ${h.toString()}::bigint, updated_at = now() WHERE name = ${ROLLUP_STATE}`);
        return { fromId: w, toId: h, rows: 0, tenants: [], events: 0 };
      }
      const toId = BigInt(agg.to_id);
      // Events that follow from single ledger rows, written with the rollup of those rows.
      const eventRows = await rowsOf<Record<string, unknown>>(
        tx,
        sql`SELECT id::text AS id, reservation_id, entry, tenant_id, key_id, route, model, status,
                   input_tokens::text AS input_tokens, output_tokens::text AS output_tokens,
                   reserved_input_tokens::text AS reserved_input_tokens, reserved_output_tokens::text AS reserved_output_tokens,
                   cost_nano::text AS cost_nano, overage, period_day, period_month, reserved_at, recorded_at
            FROM usage_ledger
            WHERE id > ${w.toString()}::bigint AND id <= ${toId.toString()}::bigint AND (overage OR entry = 'EXPIRY')
            ORDER BY id`,
      );
      const events = eventRows.map(toLedgerEventRow).map((r) => (r.entry === "EXPIRY" ? reservationExpired(r) : usageOverage(r)));
      await insertOutboxEvents(tx, events);
      await tx.execute(
        sql`UPDATE usage_rollup_state SET watermark = ${toId.toString()}::bigint, rows_rolled = rows_rolled + ${agg.n}, updated_at = now() WHERE name = ${ROLLUP_STATE}`,
      );
      const batch: RollupBatch = { fromId: w, toId, rows: agg.n, tenants: agg.tenants ?? [], events: events.length };
      await beforeCommit?.(batch);
      return batch;
    });
  }

  async rebuild(tenantId: string | null): Promise<{ dailyRows: number; monthlyRows: number; watermark: bigint }> {
    await this.ensureState(this.db);
    return this.db.transaction(async (tx) => {
      const [state] = await rowsOf<{ w: string }>(tx, sql`SELECT watermark::text AS w FROM usage_rollup_state WHERE name = ${ROLLUP_STATE} FOR UPDATE`);
      const w = state!.w;
      const only = tenantId === null ? sql`TRUE` : sql`tenant_id = ${tenantId}`;
      await tx.execute(sql`DELETE FROM usage_daily WHERE ${only}`);
      await tx.execute(sql`DELETE FROM usage_monthly WHERE ${only}`);
      // Exactly the rows the incremental runs have rolled (id <= watermark), so the tail above
      // the watermark stays the incremental job's and nothing is counted twice.
      const daily = await rowsOf<{ n: number }>(
        tx,
        sql`WITH ins AS (
              INSERT INTO usage_daily (tenant_id, period_day, period_month, key_id, model, route, ${FIGURE_COLUMNS})
              SELECT tenant_id, period_day, period_month, key_id, model, route, ${SUMS}
              FROM usage_ledger WHERE id <= ${w}::bigint AND ${only}
              GROUP BY tenant_id, period_day, period_month, key_id, model, route
              RETURNING 1)
            SELECT count(*)::int AS n FROM ins`,
      );
      const monthly = await rowsOf<{ n: number }>(
        tx,
        sql`WITH ins AS (
              INSERT INTO usage_monthly (tenant_id, period_month, key_id, model, route, ${FIGURE_COLUMNS})
              SELECT tenant_id, period_month, key_id, model, route, ${SUMS}
              FROM usage_ledger WHERE id <= ${w}::bigint AND ${only}
              GROUP BY tenant_id, period_month, key_id, model, route
              RETURNING 1)
            SELECT count(*)::int AS n FROM ins`,
      );
      await tx.execute(sql`UPDATE usage_rollup_state SET rebuilt_at = now(), updated_at = now() WHERE name = ${ROLLUP_STATE}`);
      return { dailyRows: daily[0]!.n, monthlyRows: monthly[0]!.n, watermark: BigInt(w) };
    });
  }
}

function toLedgerEventRow(r: Record<string, unknown>): LedgerEventRow {
  return {
    id: BigInt(r.id as string),
    reservationId: r.reservation_id as string,
    entry: r.entry as "COMMIT" | "EXPIRY",
    tenantId: r.tenant_id as string,
    keyId: r.key_id as string,
    route: r.route as string,
    model: r.model as string,
    status: r.status as string,
    inputTokens: BigInt(r.input_tokens as string),
    outputTokens: BigInt(r.output_tokens as string),
    reservedInputTokens: BigInt(r.reserved_input_tokens as string),
    reservedOutputTokens: BigInt(r.reserved_output_tokens as string),
    costNano: BigInt(r.cost_nano as string),
    overage: r.overage === true,
    periodDay: r.period_day as string,
    periodMonth: r.period_month as string,
    reservedAt: new Date(r.reserved_at as string | Date),
    recordedAt: new Date(r.recorded_at as string | Date),
  };
}
