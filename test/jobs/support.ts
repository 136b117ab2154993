import { sql } from "drizzle-orm";
import { usageLedger } from "../../src/storage/postgres/schema/index.js";
import type { Db } from "../../src/storage/postgres/db.js";
import { rowsOf } from "../../src/storage/postgres/usage-sql.js";

/** Shared pieces of the job tests: ledger rows, sums to compare with, outbox reads, polling. */

export interface LedgerSpec {
  tenantId: string;
  keyId: string;
  model: string;
  route: string;
  entry: "COMMIT" | "EXPIRY";
  status: "SUCCEEDED" | "FAILED" | "CANCELLED" | "EXPIRED";
  inputTokens: bigint;
  outputTokens: bigint;
  reservedInputTokens: bigint;
  reservedOutputTokens: bigint;
  costNano: bigint;
  overage: boolean;
  periodDay: string;
}

let seq = 0;
/** Writes ledger rows as the ledger writer does (the table is append-only by trigger). */
export async function insertLedger(db: Db, rows: LedgerSpec[]): Promise<void> {
  if (rows.length === 0) return;
  await db.insert(usageLedger).values(
    rows.map((r) => ({
      ...r,
      reservationId: `res_test${Date.now().toString(36)}${(seq++).toString(36).padStart(6, "0")}`,
      subject: null,
      periodMonth: r.periodDay.slice(0, 7),
      reservedAt: new Date(`${r.periodDay}T12:00:00Z`),
    })),
  );
}

/** A small deterministic PRNG, so a failing random case can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomLedgerRows(
  rand: () => number,
  n: number,
  dims: { tenants: string[]; keys: string[]; models: string[]; routes: string[]; days: string[] },
): LedgerSpec[] {
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)]!;
  return Array.from({ length: n }, () => {
    const expiry = rand() < 0.1;
    const reservedIn = BigInt(1 + Math.floor(rand() * 5_000));
    const reservedOut = BigInt(1 + Math.floor(rand() * 5_000));
    if (expiry) {
      return {
        tenantId: pick(dims.tenants),
        keyId: pick(dims.keys),
        model: pick(dims.models),
        route: pick(dims.routes),
        entry: "EXPIRY" as const,
        status: "EXPIRED" as const,
        inputTokens: 0n,
        outputTokens: 0n,
        reservedInputTokens: reservedIn,
        reservedOutputTokens: reservedOut,
        costNano: 0n,
        overage: false,
        periodDay: pick(dims.days),
      };
    }
    const overage = rand() < 0.1;
    const input = overage ? reservedIn + BigInt(Math.floor(rand() * 100)) : BigInt(Math.floor(rand() * Number(reservedIn + 1n)));
    const output = overage ? reservedOut + BigInt(1 + Math.floor(rand() * 1_000)) : BigInt(Math.floor(rand() * Number(reservedOut + 1n)));
    const status = pick(["SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "FAILED", "CANCELLED"] as const);
    return {
      tenantId: pick(dims.tenants),
      keyId: pick(dims.keys),
      model: pick(dims.models),
      route: pick(dims.routes),
      entry: "COMMIT" as const,
      status,
      inputTokens: input,
      outputTokens: output,
      reservedInputTokens: reservedIn,
      reservedOutputTokens: reservedOut,
      // Prices with odd nano figures, so sums exercise every digit.
      costNano: input * 1_337n + output * 4_099n,
      overage,
      periodDay: pick(dims.days),
    };
  });
}

const FIGURES = `sum(input_tokens)::text AS input_tokens, sum(output_tokens)::text AS output_tokens, sum(cost_nano)::text AS cost_nano`;
const LEDGER_FIGURES = `${FIGURES},
  count(*) FILTER (WHERE entry = 'COMMIT')::text AS requests,
  count(*) FILTER (WHERE entry = 'COMMIT' AND status = 'FAILED')::text AS failed_requests,
  count(*) FILTER (WHERE entry = 'COMMIT' AND status = 'CANCELLED')::text AS cancelled_requests,
  count(*) FILTER (WHERE entry = 'COMMIT' AND overage)::text AS overage_requests,
  count(*) FILTER (WHERE entry = 'EXPIRY')::text AS expired_reservations`;
const ROLLUP_FIGURES = `${FIGURES}, sum(requests)::text AS requests, sum(failed_requests)::text AS failed_requests,
  sum(cancelled_requests)::text AS cancelled_requests, sum(overage_requests)::text AS overage_requests,
  sum(expired_reservations)::text AS expired_reservations`;

type Row = Record<string, string>;
const byKey = (rows: Row[], keys: string[]) => Object.fromEntries(rows.map((r) => [keys.map((k) => r[k]).join("|"), r]));

/** The ledger (rows with id <= upTo, or all) grouped the way usage_daily is. */
export async function ledgerDaily(db: Db, upTo: bigint | null = null): Promise<Record<string, Row>> {
  const where = upTo === null ? "" : `WHERE id <= ${upTo.toString()}`;
  const rows = await rowsOf<Row>(
    db,
    sql.raw(`SELECT tenant_id, period_day, period_month, key_id, model, route, ${LEDGER_FIGURES} FROM usage_ledger ${where}
             GROUP BY tenant_id, period_day, period_month, key_id, model, route`),
  );
  return byKey(rows, ["tenant_id", "period_day", "key_id", "model", "route"]);
}

export async function ledgerMonthly(db: Db, upTo: bigint | null = null): Promise<Record<string, Row>> {
  const where = upTo === null ? "" : `WHERE id <= ${upTo.toString()}`;
  const rows = await rowsOf<Row>(
    db,
    sql.raw(`SELECT tenant_id, period_month, key_id, model, route, ${LEDGER_FIGURES} FROM usage_ledger ${where}
             GROUP BY tenant_id, period_month, key_id, model, route`),
  );
  return byKey(rows, ["tenant_id", "period_month", "key_id", "model", "route"]);
}

export async function rollupDaily(db: Db): Promise<Record<string, Row>> {
  const rows = await rowsOf<Row>(
    db,
    sql.raw(`SELECT tenant_id, period_day, period_month, key_id, model, route, ${ROLLUP_FIGURES} FROM usage_daily
             GROUP BY tenant_id, period_day, period_month, key_id, model, route`),
  );
  return byKey(rows, ["tenant_id", "period_day", "key_id", "model", "route"]);
}

export async function rollupMonthly(db: Db): Promise<Record<string, Row>> {
  const rows = await rowsOf<Row>(
    db,
    sql.raw(`SELECT tenant_id, period_month, key_id, model, route, ${ROLLUP_FIGURES} FROM usage_monthly
             GROUP BY tenant_id, period_month, key_id, model, route`),
  );
  return byKey(rows, ["tenant_id", "period_month", "key_id", "model", "route"]);
}

export async function watermark(db: Db): Promise<bigint> {
  const rows = await rowsOf<{ w: string }>(db, sql`SELECT watermark::text AS w FROM usage_rollup_state WHERE name = 'ledger'`);
  return rows[0] ? BigInt(rows[0].w) : 0n;
}

export interface StoredEvent {
  seq: string;
  id: string;
  type: string;
  tenant_id: string | null;
  scope: string | null;
  period: string | null;
  payload: Record<string, any>;
}

export async function outbox(db: Db, filter: { type?: string; tenantId?: string } = {}): Promise<StoredEvent[]> {
  const conds = [sql`TRUE`];
  if (filter.type) conds.push(sql`type = ${filter.type}`);
  if (filter.tenantId) conds.push(sql`tenant_id = ${filter.tenantId}`);
  return rowsOf<StoredEvent & Record<string, unknown>>(
    db,
    sql`SELECT seq::text AS seq, id, type, tenant_id, scope, period, payload FROM outbox_events WHERE ${sql.join(conds, sql` AND `)} ORDER BY seq`,
  );
}

export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 20_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Removes a test's BullMQ queues (jobs, schedulers, metadata) from the shared Redis. */
export async function dropQueues(keyPrefix: string): Promise<void> {
  const { Queue } = await import("bullmq");
  const { Redis } = await import("ioredis");
  const { QUEUES, queuePrefix } = await import("../../src/jobs/queues.js");
  const { REDIS_URL } = await import("../support/env.js");
  const conn = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  try {
    for (const name of Object.values(QUEUES)) {
      const q = new Queue(name, { connection: conn, prefix: queuePrefix(keyPrefix) });
      await q.obliterate({ force: true }).catch(() => {});
      await q.close();
    }
    await conn.del(`${queuePrefix(keyPrefix)}:workers-alive`);
  } finally {
    await conn.quit();
  }
}
