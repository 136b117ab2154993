import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { startTestApp, type TestApp } from "../support/app.js";
import type { GraphQLClient } from "../support/client.js";
import { commit, createGateway, createKey, insertModel, insertTenant, insertTier, reserve } from "../support/enforcement.js";
import { ReconciliationService, type QuotaCounterPort } from "../../src/domain/usage/reconciliation.service.js";
import { PostgresReconciliationStore } from "../../src/storage/postgres/usage-reconciliation.js";
import { RedisQuotaCounters } from "../../src/storage/redis/usage-counters.js";
import { periodLabel, redisKeys } from "../../src/storage/redis/keys.js";
import { periodsAt } from "../../src/domain/enforcement/periods.js";
import { systemClock } from "../../src/lib/clock.js";
import { rowsOf } from "../../src/storage/postgres/usage-sql.js";
import { dropQueues } from "./support.js";

/**
 * Reconciliation against real Redis counters written by the real hot path: injected drift is
 * found, set to the ledger's figures (held reservations untouched) and recorded; a counter that
 * moves while it is being checked is left alone, never overwritten.
 */
describe("reconciliation of Redis quota counters with the ledger", () => {
  let t: TestApp;
  let gw: GraphQLClient;
  let tenantId: string;
  let key: { id: string; secret: string };
  let held: string;
  const today = () => periodsAt(new Date(), "UTC");
  const counterKey = (scope: "T" | string, kind: "d" | "m") =>
    redisKeys.quota(tenantId, kind === "d" ? periodLabel.day(today().day) : periodLabel.month(today().month), scope === "T" ? "T" : `k:${scope}`);
  const hash = (k: string) => t.app.services.redis.hgetall(k);
  const ledger = async (period: "day" | "month", keyId: string | null) => {
    const col = period === "day" ? sql`period_day = ${today().day}` : sql`period_month = ${today().month}`;
    const byKey = keyId === null ? sql`TRUE` : sql`key_id = ${keyId}`;
    const [r] = await rowsOf<{ tok: string; usd: string }>(
      t.app.services.db,
      sql`SELECT coalesce(sum(input_tokens + output_tokens), 0)::text AS tok, coalesce(sum(cost_nano), 0)::text AS usd FROM usage_ledger WHERE tenant_id = ${tenantId} AND ${col} AND ${byKey}`,
    );
    return r!;
  };
  const service = (counters: QuotaCounterPort = new RedisQuotaCounters(t.app.services.redis)) =>
    new ReconciliationService({ counters, store: new PostgresReconciliationStore(t.app.services.db), clock: systemClock, logger: t.app.logger, settleGraceMs: 50 });

  beforeAll(async () => {
    t = await startTestApp({ REDIS_COMMAND_TIMEOUT_MS: "3000" });
    await insertModel(t, "m-small", 1_000n, 2_000n);
    const tierId = await insertTier(t, { tenantLimits: { dailyTokens: 1_000_000, monthlyBudgetNano: 1_000_000_000n } });
    tenantId = await insertTenant(t, tierId);
    key = await createKey(t, tenantId);
    gw = await createGateway(t);
    for (let i = 0; i < 5; i++) {
      const d = await reserve(gw, { apiKey: key.secret, inputTokens: 100 + i, maxOutputTokens: 50 });
      expect((await commit(gw, d.reservation.id, 100 + i, 40)).errors).toBeUndefined();
    }
    // One reservation stays open: its holds must survive every repair.
    held = (await reserve(gw, { apiKey: key.secret, inputTokens: 300, maxOutputTokens: 200 })).reservation.id;
  });
  afterAll(async () => {
    if (!t) return;
    // Workers stop first, then the test's queues leave the shared Redis.
    await t.app.services.jobs.close();
    await dropQueues(t.env.REDIS_KEY_PREFIX!);
    await t.close();
  });

  it("finds no drift when the counters agree with the ledger", async () => {
    const tenantDay = await hash(counterKey("T", "d"));
    expect(tenantDay.tok).toBe((await ledger("day", null)).tok);
    const s = await service().run({ tenantId });
    expect(s).toMatchObject({ tenants: 1, counters: 4, drifted: 0, repaired: 0, busy: 0 });
  });

  it("repairs injected drift to the ledger's figures, keeps the holds, and records what it found", async () => {
    const r = t.app.services.redis;
    const before = { td: await hash(counterKey("T", "d")), km: await hash(counterKey(key.id, "m")) };
    await r.hincrby(counterKey("T", "d"), "tok", 500); // Redis counts usage the ledger never had
    await r.hincrby(counterKey(key.id, "m"), "usd", -7_000); // Redis lost some spend

    const s = await service().run({ tenantId });
    expect(s).toMatchObject({ counters: 4, drifted: 2, repaired: 2, busy: 0 });

    const td = await hash(counterKey("T", "d"));
    const km = await hash(counterKey(key.id, "m"));
    expect(td.tok).toBe((await ledger("day", null)).tok);
    expect(km.usd).toBe((await ledger("month", key.id)).usd);
    // The open reservation's holds are untouched.
    expect([td.tokh, km.usdh]).toEqual([before.td.tokh, before.km.usdh]);
    expect(BigInt(td.tokh!)).toBe(500n);

    const drift = await rowsOf<Record<string, string | boolean>>(
      t.app.services.db,
      sql`SELECT scope, period, period_kind, redis_tokens::text, ledger_tokens::text, token_drift::text, redis_cost_nano::text, ledger_cost_nano::text, cost_drift_nano::text, repaired
          FROM usage_counter_drift WHERE tenant_id = ${tenantId} ORDER BY id`,
    );
    const ledgerDay = await ledger("day", null);
    const ledgerMonthKey = await ledger("month", key.id);
    expect(drift).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          scope: "tenant",
          period: today().day,
          period_kind: "day",
          redis_tokens: (BigInt(ledgerDay.tok) + 500n).toString(),
          ledger_tokens: ledgerDay.tok,
          token_drift: "500",
          cost_drift_nano: "0",
          repaired: true,
        }),
        expect.objectContaining({
          scope: `key:${key.id}`,
          period: today().month,
          period_kind: "month",
          redis_cost_nano: (BigInt(ledgerMonthKey.usd) - 7_000n).toString(),
          ledger_cost_nano: ledgerMonthKey.usd,
          cost_drift_nano: "-7000",
          token_drift: "0",
          repaired: true,
        }),
      ]),
    );
    expect(drift).toHaveLength(2);

    // Repaired: the next run finds nothing, records nothing.
    expect(await service().run({ tenantId })).toMatchObject({ drifted: 0, repaired: 0 });
    expect(await rowsOf(t.app.services.db, sql`SELECT 1 FROM usage_counter_drift WHERE tenant_id = ${tenantId}`)).toHaveLength(2);
  });

  it("never overwrites a counter a commit moved while it was being checked", async () => {
    await t.app.services.redis.hincrby(counterKey("T", "d"), "tok", 123);
    const real = new RedisQuotaCounters(t.app.services.redis);
    // A commit lands between reading the counters and repairing them.
    const racing: QuotaCounterPort = {
      read: async (tenant, targets) => {
        const seen = await real.read(tenant, targets);
        const d = await reserve(gw, { apiKey: key.secret, inputTokens: 7, maxOutputTokens: 3 });
        await commit(gw, d.reservation.id, 7, 3);
        return seen;
      },
      repair: (tenant, items) => real.repair(tenant, items),
    };
    const s = await service(racing).run({ tenantId });
    expect(s.busy).toBeGreaterThanOrEqual(1);
    expect(s.repaired).toBe(0);
    // The racing commit's 10 tokens are in the counter, on top of the drift that is still there.
    expect(BigInt((await hash(counterKey("T", "d"))).tok!)).toBe(BigInt((await ledger("day", null)).tok) + 123n);
    // With the traffic gone the next run repairs it.
    expect(await service().run({ tenantId })).toMatchObject({ repaired: 1 });
    expect((await hash(counterKey("T", "d"))).tok).toBe((await ledger("day", null)).tok);
    await gw.request(`mutation($id: ID!) { release(reservationId: $id) { released } }`, { id: held });
  });

  it("runs as a BullMQ job and reports its progress", async () => {
    // No process ran workers so far: the commits above queued no evaluation nobody would run.
    const idle = await t.app.services.jobs.queue("quota").getJobCounts();
    expect(Object.values(idle).every((n) => n === 0), JSON.stringify(idle)).toBe(true);
    await t.app.services.redis.hincrby(counterKey(key.id, "d"), "tok", 42);
    await t.app.services.jobs.startWorkers();
    const jobId = await t.app.services.jobs.enqueueReconcile(tenantId);
    const queue = t.app.services.jobs.queue("reconcile");
    const deadline = Date.now() + 20_000;
    let state = "";
    while (Date.now() < deadline && state !== "completed" && state !== "failed") {
      await new Promise((r) => setTimeout(r, 200));
      state = (await (await queue.getJob(jobId))?.getState()) ?? "missing";
    }
    const job = (await queue.getJob(jobId))!;
    expect(state, job.failedReason).toBe("completed");
    expect(job.returnvalue).toMatchObject({ tenants: 1, counters: 4 });
    expect(job.progress).toEqual({ done: 1, total: 1 });
    // Repaired once, by this job or by the scheduler's first run (starting the workers queues one).
    expect((await hash(counterKey(key.id, "d"))).tok).toBe((await ledger("day", key.id)).tok);
    const found = await rowsOf<{ token_drift: string }>(
      t.app.services.db,
      sql`SELECT token_drift::text FROM usage_counter_drift WHERE tenant_id = ${tenantId} AND scope = ${`key:${key.id}`} AND period_kind = 'day'`,
    );
    expect(found).toEqual([{ token_drift: "42" }]);
  });
});
