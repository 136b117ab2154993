import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { startTestApp, type TestApp } from "../support/app.js";
import type { GraphQLClient } from "../support/client.js";
import { commit, createGateway, createKey, insertModel, insertTenant, insertTier, reserve } from "../support/enforcement.js";
import { QuotaLifecycleService } from "../../src/domain/usage/quota-lifecycle.service.js";
import { PostgresQuotaStateStore } from "../../src/storage/postgres/usage-quota-state.js";
import { periodsAt } from "../../src/domain/enforcement/periods.js";
import { systemClock } from "../../src/lib/clock.js";
import { rowsOf } from "../../src/storage/postgres/usage-sql.js";
import { dropQueues, outbox, waitFor } from "./support.js";

/**
 * Quota events caused through the real API and delivered to the outbox by the real BullMQ
 * workers: thresholds crossed exactly once under 50 concurrent commits, resolved when a limit
 * is raised, crossed again after; reservation expiry and overage from the sweeper and rollups.
 */
describe("quota events through the jobs", () => {
  let t: TestApp;
  let gw: GraphQLClient;
  let lifecycle: QuotaLifecycleService;
  let tenantId: string;
  let budgetKey: { id: string; secret: string };

  beforeAll(async () => {
    // A loaded test machine must not turn reserves into BACKEND_UNAVAILABLE (the 100 ms default
    // deadline): this file is about events, fail-closed timing is tested elsewhere.
    t = await startTestApp({ REDIS_COMMAND_TIMEOUT_MS: "3000" });
    await insertModel(t, "m-small", 1_000n, 2_000n); // 10 in + 10 out = 30 000 nano-USD
    const tierId = await insertTier(t, { tenantLimits: { dailyTokens: 1_000 }, notifyAtPercent: [80, 100] });
    tenantId = await insertTenant(t, tierId);
    // 50 requests of 30 000 nano-USD spend exactly this budget.
    budgetKey = await createKey(t, tenantId, { monthlyBudgetUsd: "0.0015" });
    gw = await createGateway(t);
    await t.app.services.jobs.startWorkers();
    lifecycle = new QuotaLifecycleService({ store: new PostgresQuotaStateStore(t.app.services.db), clock: systemClock, logger: t.app.logger });
  });
  afterAll(async () => {
    if (!t) return;
    // Workers stop first, then the test's queues leave the shared Redis.
    await t.app.services.jobs.close();
    await dropQueues(t.env.REDIS_KEY_PREFIX!);
    await t.close();
  });

  const crossed = async () => outbox(t.app.services.db, { type: "threshold.crossed", tenantId });
  const key = (e: { scope: string | null; payload: Record<string, any> }) => `${e.scope}|${e.payload.dimension}|${e.payload.thresholdPercent}|${e.payload.crossing}`;

  it("50 concurrent commits crossing 80 % and 100 % give exactly one event per threshold", async () => {
    const decisions = await Promise.all(Array.from({ length: 50 }, () => reserve(gw, { apiKey: budgetKey.secret, inputTokens: 10, maxOutputTokens: 10 })));
    expect(decisions.filter((d) => !d.allowed).map((d) => `${d.reason}: ${d.message}`)).toEqual([]);
    // The commits race each other, the commit-triggered jobs (4 concurrent on the quota queue)
    // and ten extra evaluations started alongside.
    const commits = decisions.map((d) => commit(gw, d.reservation.id, 10, 10));
    const evaluations = Array.from({ length: 10 }, (_, i) => new Promise((r) => setTimeout(r, i * 15)).then(() => lifecycle.evaluateTenant(tenantId)));
    const results = await Promise.all([...commits, ...evaluations]);
    expect(results.slice(0, 50).every((r: any) => r.data?.commit?.replayed === false)).toBe(true);

    const expected = [
      `tenant|DAILY_TOKENS|80|1`,
      `tenant|DAILY_TOKENS|100|1`,
      `key:${budgetKey.id}|MONTHLY_BUDGET|80|1`,
      `key:${budgetKey.id}|MONTHLY_BUDGET|100|1`,
    ].sort();
    await waitFor("the four threshold.crossed events", async () => (await crossed()).length >= 4);
    // Let every queued job run, and pile on more evaluations: nothing is emitted twice.
    await Promise.all(Array.from({ length: 20 }, () => lifecycle.evaluateTenant(tenantId)));
    await new Promise((r) => setTimeout(r, 1_000));
    const events = await crossed();
    expect(events.map(key).sort()).toEqual(expected);
    const exhausted = await outbox(t.app.services.db, { type: "budget.exhausted", tenantId });
    expect(exhausted.map((e) => `${e.scope}|${e.payload.dimension}`)).toEqual([`key:${budgetKey.id}|MONTHLY_BUDGET`]);

    const day = periodsAt(new Date(), "UTC").day;
    const tenant100 = events.find((e) => key(e) === "tenant|DAILY_TOKENS|100|1")!;
    expect(tenant100).toMatchObject({ tenant_id: tenantId, scope: "tenant", period: day });
    expect(tenant100.payload).toMatchObject({ dimension: "DAILY_TOKENS", periodKind: "day", period: day, unit: "tokens", usage: "1000", limit: "1000", percent: "100.00", thresholdPercent: 100 });
    const key100 = events.find((e) => key(e) === `key:${budgetKey.id}|MONTHLY_BUDGET|100|1`)!;
    expect(key100.payload).toMatchObject({ unit: "usd", usage: "0.001500000", limit: "0.001500000", percent: "100.00", period: day.slice(0, 7) });
    // The 80 % event carries the usage the evaluation that crossed it saw: at least 80 %.
    const tenant80 = events.find((e) => key(e) === "tenant|DAILY_TOKENS|80|1")!;
    expect(Number(tenant80.payload.usage)).toBeGreaterThanOrEqual(800);
    expect(exhausted[0]!.payload).toMatchObject({ blockedBy: "budget", usage: "0.001500000", limit: "0.001500000" });

    const [state] = await rowsOf<{ n: number; max: number }>(
      t.app.services.db,
      sql`SELECT count(*)::int AS n, max(crossings)::int AS max FROM quota_threshold_state WHERE tenant_id = ${tenantId}`,
    );
    expect(state).toEqual({ n: 5, max: 1 });
  });

  it("a raised limit resolves the thresholds it un-crossed; usage crossing again is a second crossing", async () => {
    const upd = await t.admin.request(`mutation($id: ID!, $input: UpdateTenantInput!) { updateTenant(id: $id, input: $input) { id } }`, {
      id: tenantId,
      input: { limitOverrides: { dailyTokens: "2000" } },
    });
    expect(upd.errors).toBeUndefined();
    // The invalidation message queues an evaluation: 1000 of 2000 is below both thresholds.
    const resolved = await waitFor("two threshold.resolved events", async () => {
      const r = await outbox(t.app.services.db, { type: "threshold.resolved", tenantId });
      return r.length >= 2 ? r : null;
    });
    expect(resolved.map((e) => `${e.scope}|${e.payload.dimension}|${e.payload.thresholdPercent}|${e.payload.reason}`).sort()).toEqual([
      "tenant|DAILY_TOKENS|100|limit_raised",
      "tenant|DAILY_TOKENS|80|limit_raised",
    ]);
    expect(resolved[0]!.payload).toMatchObject({ usage: "1000", limit: "2000", percent: "50.00", usageAtCrossing: expect.any(String), limitAtCrossing: "1000" });

    // Another key (the first one's budget is spent) takes the tenant to 1700 of 2000: 80 % again.
    const other = await createKey(t, tenantId);
    const d = await reserve(gw, { apiKey: other.secret, inputTokens: 350, maxOutputTokens: 350 });
    expect(d.allowed).toBe(true);
    expect((await commit(gw, d.reservation.id, 350, 350)).errors).toBeUndefined();
    const again = await waitFor("the second crossing of 80 %", async () => (await crossed()).find((e) => key(e) === "tenant|DAILY_TOKENS|80|2"));
    expect(again.payload).toMatchObject({ usage: "1700", limit: "2000", percent: "85.00" });
    await lifecycle.evaluateTenant(tenantId);
    expect((await crossed()).length).toBe(5);
  });

  it("expired reservations and overage commits become events via the sweeper and rollup jobs", async () => {
    const tierId = await insertTier(t, { reservationTtlSeconds: 1 });
    const tenant2 = await insertTenant(t, tierId);
    const k = await createKey(t, tenant2);
    const abandoned = await reserve(gw, { apiKey: k.secret, inputTokens: 5, maxOutputTokens: 7 });
    const over = await reserve(gw, { apiKey: k.secret, inputTokens: 10, maxOutputTokens: 10 });
    const c = await commit(gw, over.reservation.id, 10, 60);
    expect(c.data.commit).toMatchObject({ overage: true });

    const expired = await waitFor(
      "reservation.expired",
      async () => (await outbox(t.app.services.db, { type: "reservation.expired", tenantId: tenant2 }))[0],
      30_000,
      250,
    );
    expect(expired).toMatchObject({ scope: `key:${k.id}` });
    expect(expired.payload).toMatchObject({ reservationId: abandoned.reservation.id, keyId: k.id, reservedInputTokens: "5", reservedOutputTokens: "7", model: "m-small" });
    const overage = await waitFor("usage.overage", async () => (await outbox(t.app.services.db, { type: "usage.overage", tenantId: tenant2 }))[0], 30_000, 250);
    expect(overage.payload).toMatchObject({
      reservationId: over.reservation.id,
      outputTokens: "60",
      reservedOutputTokens: "10",
      overageOutputTokens: "50",
      overageInputTokens: "0",
      costUsd: "0.000130000",
    });
    // The incremental rollup reports progress; a finished run reaches 100 %.
    const done = await t.app.services.jobs.queue("rollup").getJobs(["completed"]);
    expect(done.some((j) => (j.progress as { percent?: number })?.percent === 100)).toBe(true);
  });
});

describe("threshold state without the evaluation lock", () => {
  let t: TestApp;
  afterAll(async () => t?.close());

  it("the unique threshold key alone lets exactly one of 20 concurrent transactions cross and emit", async () => {
    t = await startTestApp();
    const db = t.app.services.db;
    const { PostgresQuotaStateTx } = await import("../../src/storage/postgres/usage-quota-state.js");
    const { thresholdCrossed } = await import("../../src/domain/usage/events.js");
    const tenantId = "ten_racetest00000001";
    const measure = { scope: "tenant", dimension: "DAILY_TOKENS" as const, periodKind: "day" as const, period: "2030-01-14", unit: "tokens" as const, usage: 900n, limit: 1_000n };
    const key = { scope: "tenant", dimension: "DAILY_TOKENS" as const, period: "2030-01-14", kind: "NOTIFY" as const, thresholdPercent: 80 };
    const at = new Date();
    // Each transaction is held open a moment after its insert, so they overlap for real.
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, () =>
        db.transaction(async (tx) => {
          const s = new PostgresQuotaStateTx(tx, tenantId);
          const crossing = await s.crossThreshold(key, measure.usage, measure.limit, at);
          if (crossing !== null) await s.emit(thresholdCrossed(tenantId, measure, 80, crossing, at));
          await new Promise((r) => setTimeout(r, 20));
          return crossing;
        }),
      ),
    );
    expect(outcomes.filter((c) => c !== null)).toEqual([1]);
    expect((await outbox(db, { type: "threshold.crossed", tenantId })).length).toBe(1);
  });
});
