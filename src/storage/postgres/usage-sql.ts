import { sql, type SQL } from "drizzle-orm";
import type { Db } from "./db.js";
import type { KeyPeriodUsage } from "../../domain/usage/types.js";

/** A drizzle database or a transaction on it: anything that can run a statement. */
export type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];
export type Executor = Db | Tx;

/** Rows of a raw statement (node-postgres and PGlite both answer `{ rows }`). */
export async function rowsOf<T extends Record<string, unknown>>(exec: Executor, query: SQL): Promise<T[]> {
  const r = (await exec.execute(query)) as unknown as { rows: T[] };
  return r.rows;
}

/** The name of the one rollup cursor over the ledger. */
export const ROLLUP_STATE = "ledger";

/** Postgres error code of `e`, whether drizzle wrapped the driver error or not. */
export function pgCode(e: unknown): string | undefined {
  for (let err: any = e, depth = 0; err && depth < 4; err = err.cause, depth++) {
    if (typeof err.code === "string") return err.code;
  }
  return undefined;
}

/**
 * The rollup watermark, read with a share lock on the cursor row: until the caller's
 * transaction ends no rollup batch can commit (each takes the row FOR UPDATE first), so the
 * rollups and the ledger tail read afterwards in the same transaction agree with this value
 * even under READ COMMITTED.
 */
export async function lockedWatermark(tx: Tx): Promise<bigint> {
  // The row must exist to be locked: otherwise the very first rollup batch could commit between
  // this read (no row: watermark 0, the whole ledger is tail) and the rollup read that follows.
  await tx.execute(
    sql`INSERT INTO usage_rollup_state (name, watermark, safe_horizon, rows_rolled) VALUES (${ROLLUP_STATE}, 0, 0, 0) ON CONFLICT (name) DO NOTHING`,
  );
  const rows = await rowsOf<{ w: string }>(tx, sql`SELECT watermark::text AS w FROM usage_rollup_state WHERE name = ${ROLLUP_STATE} FOR SHARE`);
  return rows[0] ? BigInt(rows[0].w) : 0n;
}

/** The watermark as seen by the caller's snapshot (for REPEATABLE READ readers). */
export async function snapshotWatermark(exec: Executor): Promise<bigint> {
  const rows = await rowsOf<{ w: string }>(exec, sql`SELECT watermark::text AS w FROM usage_rollup_state WHERE name = ${ROLLUP_STATE}`);
  return rows[0] ? BigInt(rows[0].w) : 0n;
}

/**
 * Exact committed usage per key of one tenant in one day and one month: the rollups plus the
 * ledger rows above `watermark`. The caller makes `watermark` consistent with the rollups
 * (lockedWatermark, or one REPEATABLE READ snapshot). The tail is filtered by id first so it is
 * a primary-key range scan of the few rows not rolled up yet.
 */
export async function keyPeriodUsage(exec: Executor, tenantId: string, day: string, month: string, watermark: bigint): Promise<KeyPeriodUsage[]> {
  const w = watermark.toString();
  const rows = await rowsOf<{ key_id: string; dt: string; du: string; mt: string; mu: string }>(
    exec,
    sql`
    WITH d AS (
      SELECT key_id, sum(t) AS t, sum(u) AS u FROM (
        SELECT key_id, input_tokens + output_tokens AS t, cost_nano AS u FROM usage_daily WHERE tenant_id = ${tenantId} AND period_day = ${day}
        UNION ALL
        SELECT key_id, input_tokens + output_tokens, cost_nano FROM usage_ledger WHERE id > ${w}::bigint AND tenant_id = ${tenantId} AND period_day = ${day}
      ) s GROUP BY key_id
    ), m AS (
      SELECT key_id, sum(t) AS t, sum(u) AS u FROM (
        SELECT key_id, input_tokens + output_tokens AS t, cost_nano AS u FROM usage_monthly WHERE tenant_id = ${tenantId} AND period_month = ${month}
        UNION ALL
        SELECT key_id, input_tokens + output_tokens, cost_nano FROM usage_ledger WHERE id > ${w}::bigint AND tenant_id = ${tenantId} AND period_month = ${month}
      ) s GROUP BY key_id
    )
    SELECT coalesce(d.key_id, m.key_id) AS key_id,
      coalesce(d.t, 0)::text AS dt, coalesce(d.u, 0)::text AS du, coalesce(m.t, 0)::text AS mt, coalesce(m.u, 0)::text AS mu
    FROM d FULL JOIN m ON d.key_id = m.key_id
    ORDER BY 1`,
  );
  return rows.map((r) => ({
    keyId: r.key_id,
    dayTokens: BigInt(r.dt),
    dayCostNano: BigInt(r.du),
    monthTokens: BigInt(r.mt),
    monthCostNano: BigInt(r.mu),
  }));
}
