import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { sql } from "drizzle-orm";
import { startTestApp, type TestApp } from "../support/app.js";
import { errorCode, type GraphQLClient } from "../support/client.js";
import { insertTenant, insertTier } from "../support/enforcement.js";
import { credentialClient } from "../operator/support.js";
import { RollupService } from "../../src/domain/usage/rollup.service.js";
import { PostgresRollupStore } from "../../src/storage/postgres/usage-rollups.js";
import { formatUsd } from "../../src/domain/billing/money.js";
import { rowsOf } from "../../src/storage/postgres/usage-sql.js";
import {
  insertLedger,
  ledgerDaily,
  ledgerMonthly,
  outbox,
  prng,
  randomLedgerRows,
  rollupDaily,
  rollupMonthly,
  watermark,
  type LedgerSpec,
} from "./support.js";

/**
 * Rollups against the ledger they summarize: after incremental runs, after a run that dies in
 * the middle, after a full rebuild, and with a ledger insert that commits out of id order. And
 * the `usage` query over HTTP against SUM over the ledger, tail included.
 */

const SEED = Number(process.env.ROLLUP_SEED ?? 20_301_114);
const DAYS = ["2030-01-29", "2030-01-30", "2030-01-31", "2030-02-01", "2030-02-02", "2030-02-14", "2030-02-28", "2030-03-01"];

describe("usage rollups", () => {
  let t: TestApp;
  let rollups: RollupService;
  let tenants: string[];
  const rand = prng(SEED);
  const dims = () => ({ tenants, keys: ["key_A000000000000001", "key_B000000000000002", "key_C000000000000003"], models: ["m-a", "m-b", "m-c"], routes: ["chat.completions", "embeddings"], days: DAYS });

  const expectRollupsMatchLedger = async (upTo: bigint | null) => {
    expect(await rollupDaily(t.app.services.db)).toEqual(await ledgerDaily(t.app.services.db, upTo));
    expect(await rollupMonthly(t.app.services.db)).toEqual(await ledgerMonthly(t.app.services.db, upTo));
  };
  const maxLedgerId = async () => BigInt((await rowsOf<{ m: string }>(t.app.services.db, sql`SELECT coalesce(max(id), 0)::text AS m FROM usage_ledger`))[0]!.m);

  beforeAll(async () => {
    t = await startTestApp();
    const tierId = await insertTier(t);
    tenants = [await insertTenant(t, tierId), await insertTenant(t, tierId), await insertTenant(t, tierId, { timezone: "Asia/Kolkata" })];
    rollups = new RollupService({ store: new PostgresRollupStore(t.app.services.db, { logger: t.app.logger }), logger: t.app.logger });
  });
  afterAll(async () => t?.close());

  it(`incremental runs, a crash mid-run and a full rebuild all equal SUM over the ledger (seed ${SEED})`, async () => {
    const db = t.app.services.db;
    // Incremental: rows arrive between runs; small batches so each run takes several transactions.
    for (let round = 0; round < 4; round++) {
      await insertLedger(db, randomLedgerRows(rand, 150, dims()));
      const progress: number[] = [];
      const run = await rollups.runIncremental({ batchSize: 37, onProgress: (p) => void progress.push(p.percent) });
      expect(run.batches).toBeGreaterThanOrEqual(5);
      expect(run.position.watermark).toBe(await maxLedgerId());
      // Progress is reported per batch, rising to 100 %.
      expect(progress.length).toBe(run.batches);
      expect(progress).toEqual([...progress].sort((a, b) => a - b));
      expect(progress.at(-1)).toBe(100);
      await expectRollupsMatchLedger(null);
    }

    // A crash inside the second batch's transaction: everything it wrote is rolled back.
    await insertLedger(db, randomLedgerRows(rand, 120, dims()));
    const before = await watermark(db);
    let batches = 0;
    await expect(
      rollups.runIncremental({
        batchSize: 30,
        beforeCommit: () => {
          if (++batches === 2) throw new Error("worker killed mid-run");
        },
      }),
    ).rejects.toThrow("worker killed mid-run");
    const afterCrash = await watermark(db);
    expect(afterCrash).toBeGreaterThan(before);
    expect(afterCrash).toBeLessThan(await maxLedgerId());
    await expectRollupsMatchLedger(afterCrash);
    // The job runs again: totals are exactly the ledger's, nothing added twice.
    await rollups.runIncremental({ batchSize: 30 });
    await expectRollupsMatchLedger(null);
    // A run with nothing new changes nothing.
    const idle = await rollups.runIncremental();
    expect(idle.rows).toBe(0);
    await expectRollupsMatchLedger(null);

    // Every overage commit and every expiry produced exactly one event, in the rollup's transaction.
    const [counts] = await rowsOf<{ overage: number; expired: number }>(
      db,
      sql`SELECT count(*) FILTER (WHERE overage)::int AS overage, count(*) FILTER (WHERE entry = 'EXPIRY')::int AS expired FROM usage_ledger`,
    );
    const overageEvents = await outbox(db, { type: "usage.overage" });
    const expiredEvents = await outbox(db, { type: "reservation.expired" });
    expect(overageEvents.length).toBe(counts!.overage);
    expect(expiredEvents.length).toBe(counts!.expired);
    expect(new Set(overageEvents.map((e) => e.payload.reservationId)).size).toBe(overageEvents.length);
    expect(new Set(expiredEvents.map((e) => e.payload.reservationId)).size).toBe(expiredEvents.length);
    const sample = overageEvents[0]!;
    const [row] = await rowsOf<Record<string, string>>(
      db,
      sql`SELECT input_tokens::text, output_tokens::text, reserved_output_tokens::text, cost_nano::text, key_id, period_day FROM usage_ledger WHERE reservation_id = ${sample.payload.reservationId}`,
    );
    expect(sample).toMatchObject({ scope: `key:${row!.key_id}`, period: row!.period_day });
    expect(sample.payload).toMatchObject({
      inputTokens: row!.input_tokens,
      outputTokens: row!.output_tokens,
      overageOutputTokens: (BigInt(row!.output_tokens!) - BigInt(row!.reserved_output_tokens!)).toString(),
      costUsd: formatUsd(BigInt(row!.cost_nano!)),
    });

    // Repairs: damage the rollups, then rebuild one tenant, then all.
    await db.execute(sql`UPDATE usage_daily SET input_tokens = input_tokens + 7 WHERE tenant_id = ${tenants[0]!}`);
    await db.execute(sql`DELETE FROM usage_monthly WHERE tenant_id = ${tenants[1]!}`);
    await db.execute(sql`UPDATE usage_monthly SET cost_nano = 0 WHERE tenant_id = ${tenants[2]!}`);
    expect(await rollupDaily(db)).not.toEqual(await ledgerDaily(db));
    const one = await rollups.rebuild(tenants[0]!);
    expect(one.dailyRows).toBeGreaterThan(0);
    const ofTenant = (m: Record<string, unknown>, tenantId: string) => Object.fromEntries(Object.entries(m).filter(([k]) => k.startsWith(`${tenantId}|`)));
    expect(ofTenant(await rollupDaily(db), tenants[0]!)).toEqual(ofTenant(await ledgerDaily(db), tenants[0]!));
    // The other tenants' damage is untouched by a one-tenant rebuild.
    expect(ofTenant(await rollupMonthly(db), tenants[1]!)).toEqual({});
    await rollups.rebuild(null);
    await expectRollupsMatchLedger(null);
    // Events are not re-emitted by a rebuild.
    expect((await outbox(db, { type: "usage.overage" })).length).toBe(counts!.overage);
  });

  it("never skips a ledger row whose insert commits after a row with a higher id", async () => {
    const db = t.app.services.db;
    await rollups.runIncremental();
    const slow = new pg.Client({ connectionString: t.databaseUrl });
    await slow.connect();
    try {
      const spec = (tokens: bigint): LedgerSpec => ({
        tenantId: tenants[0]!,
        keyId: "key_A000000000000001",
        model: "m-a",
        route: "chat.completions",
        entry: "COMMIT",
        status: "SUCCEEDED",
        inputTokens: tokens,
        outputTokens: 0n,
        reservedInputTokens: tokens,
        reservedOutputTokens: 0n,
        costNano: tokens,
        overage: false,
        periodDay: "2030-02-14",
      });
      // Transaction A takes an id and stays open; B takes the next id and commits.
      await slow.query("BEGIN");
      const { rows } = await slow.query<{ id: string }>(
        `INSERT INTO usage_ledger (reservation_id, entry, tenant_id, key_id, route, model, status, input_tokens, output_tokens,
           reserved_input_tokens, reserved_output_tokens, cost_nano, overage, period_day, period_month, reserved_at)
         VALUES ('res_slowinsert0001', 'COMMIT', $1, 'key_A000000000000001', 'chat.completions', 'm-a', 'SUCCEEDED', 1000, 0, 1000, 0, 1000, false, '2030-02-14', '2030-02', now())
         RETURNING id::text`,
        [tenants[0]],
      );
      const slowId = BigInt(rows[0]!.id);
      await insertLedger(db, [spec(5n)]);
      expect(await maxLedgerId()).toBeGreaterThan(slowId);

      // A naive watermark would now move past the open row. The horizon cannot: the rollup
      // leaves the committed row in the tail until the open insert has finished.
      const stuck = await rollups.runIncremental();
      expect(stuck.position.watermark).toBeLessThan(slowId);
      const [usage] = await rowsOf<{ n: string }>(db, sql`SELECT coalesce(sum(input_tokens), 0)::text AS n FROM usage_ledger WHERE tenant_id = ${tenants[0]!} AND period_day = '2030-02-14'`);

      await slow.query("COMMIT");
      const done = await rollups.runIncremental();
      expect(done.position.watermark).toBe(await maxLedgerId());
      await expectRollupsMatchLedger(null);
      const [after] = await rowsOf<{ n: string }>(db, sql`SELECT sum(input_tokens)::text AS n FROM usage_daily WHERE tenant_id = ${tenants[0]!} AND period_day = '2030-02-14'`);
      expect(BigInt(after!.n)).toBe(BigInt(usage!.n) + 1000n);
    } finally {
      await slow.end();
    }
  });

  it("a rebuild rewrites only the rollup rows that differ from the ledger, and removes rows with no ledger rows", async () => {
    const db = t.app.services.db;
    await insertLedger(db, randomLedgerRows(rand, 200, dims()));
    await rollups.runIncremental();
    await expectRollupsMatchLedger(null);
    // The row version of every rollup row: a row the rebuild leaves alone keeps it.
    const versions = async (table: "usage_daily" | "usage_monthly", period: "period_day" | "period_month") =>
      Object.fromEntries(
        (await rowsOf<{ k: string; v: string }>(db, sql`SELECT concat_ws('|', tenant_id, ${sql.raw(period)}, key_id, model, route) AS k, xmin::text AS v FROM ${sql.raw(table)}`)).map((r) => [r.k, r.v]),
      );
    const dailyBefore = await versions("usage_daily", "period_day");
    const monthlyBefore = await versions("usage_monthly", "period_month");

    // Damage: one wrong figure, one missing month, and rows for a key no ledger row has.
    const [wrong] = await rowsOf<{ k: string }>(
      db,
      sql`UPDATE usage_daily SET output_tokens = output_tokens + 1
          WHERE (tenant_id, period_day, key_id, model, route) = (SELECT tenant_id, period_day, key_id, model, route FROM usage_daily WHERE tenant_id = ${tenants[0]!} LIMIT 1)
          RETURNING concat_ws('|', tenant_id, period_day, key_id, model, route) AS k`,
    );
    const [missing] = await rowsOf<{ k: string }>(
      db,
      sql`DELETE FROM usage_monthly WHERE (tenant_id, period_month, key_id, model, route) = (SELECT tenant_id, period_month, key_id, model, route FROM usage_monthly WHERE tenant_id = ${tenants[1]!} LIMIT 1)
          RETURNING concat_ws('|', tenant_id, period_month, key_id, model, route) AS k`,
    );
    const stray = async (tenantId: string) => {
      await db.execute(sql`INSERT INTO usage_daily (tenant_id, period_day, period_month, key_id, model, route, input_tokens, output_tokens, cost_nano, requests,
                             failed_requests, cancelled_requests, overage_requests, expired_reservations)
                           VALUES (${tenantId}, '2030-02-14', '2030-02', 'key_Z000000000000009', 'm-a', 'embeddings', 5, 5, 5, 1, 0, 0, 0, 0)`);
      await db.execute(sql`INSERT INTO usage_monthly (tenant_id, period_month, key_id, model, route, input_tokens, output_tokens, cost_nano, requests,
                             failed_requests, cancelled_requests, overage_requests, expired_reservations)
                           VALUES (${tenantId}, '2030-02', 'key_Z000000000000009', 'm-a', 'embeddings', 5, 5, 5, 1, 0, 0, 0, 0)`);
    };
    await stray(tenants[0]!);
    await stray(tenants[2]!);

    // One tenant's rebuild repairs that tenant only: another tenant's stray rows stay.
    await rollups.rebuild(tenants[0]!);
    const strayKeys = (tenantId: string) => ({ day: `${tenantId}|2030-02-14|key_Z000000000000009|m-a|embeddings`, month: `${tenantId}|2030-02|key_Z000000000000009|m-a|embeddings` });
    expect(await versions("usage_daily", "period_day")).not.toHaveProperty([strayKeys(tenants[0]!).day]);
    expect(await versions("usage_monthly", "period_month")).not.toHaveProperty([strayKeys(tenants[0]!).month]);
    expect(await versions("usage_daily", "period_day")).toHaveProperty([strayKeys(tenants[2]!).day]);

    const r = await rollups.rebuild(null);
    await expectRollupsMatchLedger(null);
    expect(r.dailyRows).toBe(Object.keys(await ledgerDaily(db)).length);
    expect(r.monthlyRows).toBe(Object.keys(await ledgerMonthly(db)).length);
    // Only the damaged rows were written: every other row is the version the rollup wrote.
    const dailyAfter = await versions("usage_daily", "period_day");
    const monthlyAfter = await versions("usage_monthly", "period_month");
    const changed = (before: Record<string, string>, after: Record<string, string>) => Object.keys(after).filter((k) => before[k] !== after[k]);
    expect(changed(dailyBefore, dailyAfter)).toEqual([wrong!.k]);
    expect(changed(monthlyBefore, monthlyAfter)).toEqual([missing!.k]);
  });

  it("writes a batch's events to the outbox in ledger order, ids of different lengths included", async () => {
    const db = t.app.services.db;
    await rollups.runIncremental();
    const before = await maxLedgerId();
    // Enough rows for the batch to run from ids of n digits to ids of n + 1 digits (e.g. 999 → 1000).
    const nextPower = 10n ** BigInt(before.toString().length);
    const rows = randomLedgerRows(rand, Number(nextPower - before) + 20, dims()).map((r) => (r.entry === "COMMIT" ? { ...r, overage: true } : r));
    for (let i = 0; i < rows.length; i += 1_000) await insertLedger(db, rows.slice(i, i + 1_000));
    const run = await rollups.runIncremental({ batchSize: rows.length });
    expect(run.batches).toBe(1);
    expect(run.events).toBe(rows.length);
    const ledgerIds = (await outbox(db))
      .filter((e) => e.type === "usage.overage" || e.type === "reservation.expired")
      .map((e) => BigInt(e.payload.ledgerId as string))
      .filter((id) => id > before);
    expect(ledgerIds.length).toBe(rows.length);
    expect(ledgerIds).toEqual([...ledgerIds].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    expect(ledgerIds.at(-1)).toBeGreaterThanOrEqual(nextPower);
  });

  it("writes new rollup rows without ON CONFLICT, and a batch whose sample missed an existing key again with it", async () => {
    const db = t.app.services.db;
    await rollups.runIncremental();
    const logged: string[] = [];
    const logger = Object.create(t.app.logger) as typeof t.app.logger;
    logger.debug = ((_: unknown, msg?: string) => void logged.push(String(msg))) as typeof logger.debug;
    const service = new RollupService({ store: new PostgresRollupStore(db, { logger }), logger });
    const again = "rollup batch written again with ON CONFLICT: a key outside the sample had a row";
    const spec = (model: string, periodDay: string): LedgerSpec => ({
      tenantId: tenants[0]!,
      keyId: "key_A000000000000001",
      model,
      route: "embeddings",
      entry: "COMMIT",
      status: "SUCCEEDED",
      inputTokens: 3n,
      outputTokens: 5n,
      reservedInputTokens: 3n,
      reservedOutputTokens: 5n,
      costNano: 7n,
      overage: false,
      periodDay,
    });
    // A batch of new series only: written without ON CONFLICT, once.
    await insertLedger(db, Array.from({ length: 100 }, (_, i) => spec(`m-new-${i}`, "2030-05-10")));
    expect((await service.runIncremental()).batches).toBe(1);
    expect(logged).not.toContain(again);
    await expectRollupsMatchLedger(null);
    // 200 new series and, as the batch's second row, one with daily and monthly rows: the sample
    // (the batch's rows 1, 5, 9, …) misses it, the plain INSERT meets its key and the batch is
    // written again with ON CONFLICT, adding to the existing rows.
    const rows = Array.from({ length: 200 }, (_, i) => spec(`m-more-${i}`, "2030-05-11"));
    rows.splice(1, 0, spec("m-new-0", "2030-05-10"));
    await insertLedger(db, rows);
    expect((await service.runIncremental()).batches).toBe(1);
    expect(logged).toContain(again);
    await expectRollupsMatchLedger(null);
  });

  it("refuses a batch of no rows instead of moving the watermark past rows it did not roll", async () => {
    const db = t.app.services.db;
    await rollups.runIncremental();
    await insertLedger(db, [
      { tenantId: tenants[1]!, keyId: "key_B000000000000002", model: "m-a", route: "embeddings", entry: "COMMIT", status: "SUCCEEDED", inputTokens: 1n, outputTokens: 1n, reservedInputTokens: 1n, reservedOutputTokens: 1n, costNano: 1n, overage: false, periodDay: "2030-06-01" },
    ]);
    const before = await rowsOf<{ w: string }>(db, sql`SELECT watermark::text AS w FROM usage_rollup_state`);
    await expect(rollups.runIncremental({ batchSize: 0 })).rejects.toThrow(/positive integer/);
    expect(await rowsOf<{ w: string }>(db, sql`SELECT watermark::text AS w FROM usage_rollup_state`)).toEqual(before);
    await rollups.runIncremental();
    await expectRollupsMatchLedger(null);
  });

  it("keys the rollup tables with byte-order (COLLATE \"C\") text, whatever the database's default", async () => {
    const db = t.app.services.db;
    // Columns, and the primary keys' columns as their indexes compare them (indcollation).
    const columns = await rowsOf<{ t: string; c: string; coll: string }>(
      db,
      sql`SELECT a.attrelid::regclass::text AS t, a.attname AS c, co.collname AS coll
          FROM pg_attribute a JOIN pg_collation co ON co.oid = a.attcollation
          WHERE a.attrelid IN ('usage_daily'::regclass, 'usage_monthly'::regclass) AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY 1, 2`,
    );
    expect(columns.map((r) => `${r.t}.${r.c}:${r.coll}`)).toEqual([
      "usage_daily.key_id:C", "usage_daily.model:C", "usage_daily.period_day:C", "usage_daily.period_month:C", "usage_daily.route:C", "usage_daily.tenant_id:C",
      "usage_monthly.key_id:C", "usage_monthly.model:C", "usage_monthly.period_month:C", "usage_monthly.route:C", "usage_monthly.tenant_id:C",
    ]);
    const keys = await rowsOf<{ i: string; coll: string[] }>(
      db,
      sql`SELECT i.indexrelid::regclass::text AS i, array(SELECT co.collname::text FROM unnest(i.indcollation) c JOIN pg_collation co ON co.oid = c) AS coll
          FROM pg_index i WHERE i.indrelid IN ('usage_daily'::regclass, 'usage_monthly'::regclass) ORDER BY 1`,
    );
    expect(keys).toEqual([
      { i: "usage_daily_pk", coll: ["C", "C", "C", "C", "C"] },
      { i: "usage_monthly_pk", coll: ["C", "C", "C", "C", "C"] },
    ]);
    // The batch statement's rows come from the ledger (default collation) and join the rollup
    // rows by key: the probe, the upserts and a report over both still find each other.
    await rollups.runIncremental();
    await expectRollupsMatchLedger(null);
  });

  describe("usage over HTTP", () => {
    let billing: GraphQLClient;
    const USAGE = `query($tenantId: ID!, $from: DateTimeISO!, $to: DateTimeISO!, $groupBy: [UsageGroupBy!]) {
      usage(tenantId: $tenantId, from: $from, to: $to, groupBy: $groupBy) {
        tenantId timezone fromDay toDay groupBy rolledUpTo
        totals { inputTokens outputTokens totalTokens costUsd requests failedRequests cancelledRequests overageRequests expiredReservations }
        groups { day month keyId model route inputTokens outputTokens totalTokens costUsd requests failedRequests cancelledRequests overageRequests expiredReservations }
      }
    }`;

    beforeAll(async () => {
      billing = await credentialClient(t, "BILLING", null);
    });

    /** The ledger's own sums for the report, straight SQL over every row (no rollups). */
    const ledgerReport = async (tenantId: string, fromDay: string, toDay: string, cols: string[]) => {
      const sel = cols.length ? `${cols.join(", ")}, ` : "";
      const grp = cols.length ? `GROUP BY ${cols.join(", ")} ORDER BY ${cols.join(", ")}` : "";
      return rowsOf<Record<string, string>>(
        t.app.services.db,
        sql.raw(`SELECT ${sel} sum(input_tokens)::text AS "inputTokens", sum(output_tokens)::text AS "outputTokens",
            sum(input_tokens + output_tokens)::text AS "totalTokens", sum(cost_nano)::text AS cost,
            count(*) FILTER (WHERE entry = 'COMMIT')::text AS requests,
            count(*) FILTER (WHERE entry = 'COMMIT' AND status = 'FAILED')::text AS "failedRequests",
            count(*) FILTER (WHERE entry = 'COMMIT' AND status = 'CANCELLED')::text AS "cancelledRequests",
            count(*) FILTER (WHERE entry = 'COMMIT' AND overage)::text AS "overageRequests",
            count(*) FILTER (WHERE entry = 'EXPIRY')::text AS "expiredReservations"
          FROM usage_ledger WHERE tenant_id = '${tenantId}' AND period_day >= '${fromDay}' AND period_day <= '${toDay}' ${grp}`),
      );
    };
    const figures = (r: Record<string, string>) => ({
      inputTokens: r.inputTokens,
      outputTokens: r.outputTokens,
      totalTokens: r.totalTokens,
      costUsd: formatUsd(BigInt(r.cost!)),
      requests: r.requests,
      failedRequests: r.failedRequests,
      cancelledRequests: r.cancelledRequests,
      overageRequests: r.overageRequests,
      expiredReservations: r.expiredReservations,
    });

    it("equals the ledger's sum, not-yet-rolled tail included, for every grouping", async () => {
      const db = t.app.services.db;
      await rollups.runIncremental();
      // A tail the rollups have not seen.
      await insertLedger(db, randomLedgerRows(rand, 80, dims()));
      const tenantId = tenants[1]!;
      const cases: Array<{ from: string; to: string; fromDay: string; toDay: string; groupBy: string[]; cols: string[] }> = [
        // All of it, every breakdown at once.
        { from: "2030-01-01T00:00:00Z", to: "2030-04-01T00:00:00Z", fromDay: "2030-01-01", toDay: "2030-03-31", groupBy: ["DAY", "KEY", "MODEL", "ROUTE"], cols: ["period_day", "key_id", "model", "route"] },
        // February is whole: answered from usage_monthly, January and March from usage_daily.
        { from: "2030-01-30T00:00:00Z", to: "2030-03-02T00:00:00Z", fromDay: "2030-01-30", toDay: "2030-03-01", groupBy: ["MONTH", "KEY"], cols: ["period_month", "key_id"] },
        // A partial range, no grouping.
        { from: "2030-01-31T00:00:00Z", to: "2030-02-02T00:00:00Z", fromDay: "2030-01-31", toDay: "2030-02-01", groupBy: [], cols: [] },
        { from: "2030-02-01T00:00:00Z", to: "2030-03-01T00:00:00Z", fromDay: "2030-02-01", toDay: "2030-02-28", groupBy: ["MODEL"], cols: ["model"] },
      ];
      for (const c of cases) {
        const r = await billing.request(USAGE, { tenantId, from: c.from, to: c.to, groupBy: c.groupBy });
        expect(r.errors, JSON.stringify(r.errors)).toBeUndefined();
        const report = r.data.usage;
        expect(report).toMatchObject({ tenantId, timezone: "UTC", fromDay: c.fromDay, toDay: c.toDay, groupBy: c.groupBy });
        expect(BigInt(report.rolledUpTo)).toBeLessThan(await maxLedgerId()); // the tail is really there
        const expected = await ledgerReport(tenantId, c.fromDay, c.toDay, c.cols);
        const expectedGroups = expected.map((e) => ({
          day: e.period_day ?? null,
          month: e.period_month ?? (e.period_day ? e.period_day.slice(0, 7) : null),
          keyId: e.key_id ?? null,
          model: e.model ?? null,
          route: e.route ?? null,
          ...figures(e),
        }));
        if (c.cols.length === 0) {
          expect(report.groups).toEqual([{ day: null, month: null, keyId: null, model: null, route: null, ...figures(expected[0]!) }]);
        } else {
          expect(report.groups).toEqual(expectedGroups);
        }
        const [total] = await ledgerReport(tenantId, c.fromDay, c.toDay, []);
        expect(report.totals).toEqual(figures(total!));
      }
    });

    it("reads days in the tenant's time zone", async () => {
      // Asia/Kolkata is UTC+05:30: [2030-02-01T18:30Z, 2030-02-02T18:30Z) is exactly local 2 February.
      const tenantId = tenants[2]!;
      const r = await billing.ok(USAGE, { tenantId, from: "2030-02-01T18:30:00Z", to: "2030-02-02T18:30:00Z", groupBy: ["DAY"] });
      expect(r.usage).toMatchObject({ fromDay: "2030-02-02", toDay: "2030-02-02", timezone: "Asia/Kolkata" });
      const [e] = await ledgerReport(tenantId, "2030-02-02", "2030-02-02", []);
      expect(r.usage.totals.costUsd).toBe(formatUsd(BigInt(e!.cost ?? "0")));
    });

    it("lets a tenant admin read its own tenant only; another tenant reads as NOT_FOUND", async () => {
      const own = await credentialClient(t, "TENANT_ADMIN", tenants[0]!);
      const vars = { from: "2030-01-01T00:00:00Z", to: "2030-04-01T00:00:00Z" };
      const mine = await own.request(USAGE, { ...vars, tenantId: tenants[0] });
      expect(mine.errors).toBeUndefined();
      const theirs = await own.request(USAGE, { ...vars, tenantId: tenants[1] });
      expect(errorCode(theirs)).toBe("NOT_FOUND");
      const unknown = await billing.request(USAGE, { ...vars, tenantId: "ten_doesnotexist0000" });
      expect(errorCode(unknown)).toBe("NOT_FOUND");
      expect(theirs.errors![0]!.message.replace(tenants[1]!, "X")).toBe(unknown.errors![0]!.message.replace("ten_doesnotexist0000", "X"));
      const gateway = await credentialClient(t, "GATEWAY", null);
      expect(errorCode(await gateway.request(USAGE, { ...vars, tenantId: tenants[0] }))).toBe("FORBIDDEN");
      const backwards = await billing.request(USAGE, { tenantId: tenants[0], from: vars.to, to: vars.from });
      expect(errorCode(backwards)).toBe("BAD_USER_INPUT");
    });
  });
});
