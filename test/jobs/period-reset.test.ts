import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { startTestApp, type TestApp } from "../support/app.js";
import { createKey, insertModel, insertTenant, insertTier } from "../support/enforcement.js";
import { FakeClock } from "../../src/lib/clock.js";
import { EnforcementService } from "../../src/domain/enforcement/enforcement.service.js";
import { RedisCounterStore } from "../../src/storage/redis/counter-store.js";
import { PostgresReservationArchive } from "../../src/storage/postgres/reservation-archive.js";
import { QuotaLifecycleService } from "../../src/domain/usage/quota-lifecycle.service.js";
import { PostgresQuotaStateStore } from "../../src/storage/postgres/usage-quota-state.js";
import { rowsOf } from "../../src/storage/postgres/usage-sql.js";
import type { Actor } from "../../src/domain/tenancy/types.js";
import { outbox } from "./support.js";

/**
 * A degraded tenant in New York is restored at New York's midnight (05:00 UTC in January), not
 * at UTC's: the clock is injected, so the hot path and the lifecycle both see the night pass.
 * Dates are in the future because the reserve script compares the caller's deadline with Redis
 * TIME: a fake clock behind Redis would make every reserve "late".
 */
const TZ = "America/New_York";
const BEFORE_MIDNIGHT = new Date("2030-01-15T04:59:00Z"); // 2030-01-14 23:59 EST
const AFTER_MIDNIGHT = new Date("2030-01-15T05:00:30Z"); // 2030-01-15 00:00:30 EST, same UTC day

describe("period reset in a non-UTC time zone", () => {
  let t: TestApp;
  let clock: FakeClock;
  let enforcement: EnforcementService;
  let lifecycle: QuotaLifecycleService;
  let tenantId: string;
  let secret: string;
  const gateway: Actor = { kind: "credential", id: "cred_test", role: "GATEWAY", tenantId: null, name: "test gateway" };

  beforeAll(async () => {
    t = await startTestApp();
    await insertModel(t, "m-small", 1_000n, 2_000n);
    const tierId = await insertTier(t, {
      tenantLimits: { dailyTokens: 1_000, monthlyTokens: 1_000_000 },
      notifyAtPercent: [80],
      degradationLadder: [{ atPercent: 80, of: "DAILY_TOKENS", maxOutputTokens: 5, maxInputTokens: null, priority: "BACKGROUND", modelMap: [], block: false }],
    });
    tenantId = await insertTenant(t, tierId, { timezone: TZ });
    secret = (await createKey(t, tenantId)).secret;
    clock = new FakeClock(BEFORE_MIDNIGHT.getTime());
    const s = t.app.services;
    // The real hot path over the app's Redis, Postgres and caches, with the injected clock.
    enforcement = new EnforcementService({
      keys: s.apiKeyVerifier,
      policy: s.policyCache,
      counters: new RedisCounterStore(s.redis),
      ledger: s.ledger,
      archive: new PostgresReservationArchive(s.db, { lingerMs: 5, maxBatch: 100, logger: s.logger }),
      clock,
      logger: s.logger,
      storeTimeoutMs: 1_000,
    });
    lifecycle = new QuotaLifecycleService({ store: new PostgresQuotaStateStore(s.db), clock, logger: s.logger });
  });
  afterAll(async () => t?.close());

  const request = (maxOutputTokens: number) => ({
    apiKey: secret,
    route: "chat.completions",
    model: "m-small",
    inputTokens: 10,
    maxOutputTokens,
    idempotencyKey: null,
    subject: null,
    priority: "NORMAL" as const,
    tools: [],
  });
  const events = () => outbox(t.app.services.db, { tenantId });

  it("degrades on the local day, then restores at local midnight with period.rolled and degradation.lifted", async () => {
    // 850 of 1000 tokens on local 14 January: past the 80 % rung.
    const d = await enforcement.checkAndReserve({ ...request(840), inputTokens: 10 }, gateway);
    expect(d).toMatchObject({ allowed: true, outcome: "ALLOW" });
    await enforcement.commit({ reservationId: d.reservation!.id, inputTokens: 10, outputTokens: 840, status: "SUCCEEDED" }, gateway);

    const first = await lifecycle.evaluateTenant(tenantId);
    expect(first.events.sort()).toEqual(["degradation.applied", "threshold.crossed"]);
    const applied = (await events()).find((e) => e.type === "degradation.applied")!;
    expect(applied).toMatchObject({ scope: "tenant", period: "2030-01-14" });
    expect(applied.payload).toMatchObject({ rung: 0, previousRung: null, dimension: "DAILY_TOKENS", atPercent: 80, usage: "850", limit: "1000", percent: "85.00", directives: { maxOutputTokens: 5, priority: "BACKGROUND" } });
    const [stateRow] = await rowsOf<Record<string, unknown>>(t.app.services.db, sql`SELECT scope, rung, period, reason FROM quota_degradation_state WHERE tenant_id = ${tenantId}`);
    expect(stateRow).toMatchObject({ scope: "tenant", rung: 0, period: "2030-01-14" });
    expect(String(stateRow!.reason)).toContain("reached 80% of DAILY_TOKENS");

    // The hot path agrees: the tenant is degraded for the rest of the local day.
    const degraded = await enforcement.checkAndReserve(request(100), gateway);
    expect(degraded).toMatchObject({ allowed: true, outcome: "ALLOW_DEGRADED" });
    expect(degraded.directives).toMatchObject({ maxOutputTokens: 5, priority: "BACKGROUND" });
    await enforcement.release(degraded.reservation!.id, gateway);

    // Not midnight yet in New York: no reset is due, an evaluation changes nothing.
    expect(await lifecycle.tenantsDueForReset()).toEqual([]);
    expect((await lifecycle.evaluateTenant(tenantId)).events).toEqual([]);

    // 05:00:30 UTC: still 15 January in UTC as before, but a new day in New York.
    clock.set(AFTER_MIDNIGHT);
    expect(await lifecycle.tenantsDueForReset()).toEqual([tenantId]);
    const reset = await lifecycle.evaluateTenant(tenantId);
    expect(reset.events).toEqual(["period.rolled", "threshold.resolved", "degradation.lifted"]);
    const all = await events();
    const rolled = all.find((e) => e.type === "period.rolled")!;
    expect(rolled).toMatchObject({ scope: "tenant", period: "2030-01-15" });
    expect(rolled.payload).toEqual({ periodKind: "day", previousPeriod: "2030-01-14", period: "2030-01-15", timezone: TZ, startedAt: "2030-01-15T05:00:00.000Z" });
    const lifted = all.find((e) => e.type === "degradation.lifted")!;
    expect(lifted).toMatchObject({ scope: "tenant", period: "2030-01-14" });
    expect(lifted.payload).toMatchObject({ reason: "period_reset", previousRung: 0, previousPeriod: "2030-01-14", period: "2030-01-15", usage: "0", usageWhenApplied: "850" });
    const resolved = all.find((e) => e.type === "threshold.resolved")!;
    expect(resolved.payload).toMatchObject({ reason: "period_ended", thresholdPercent: 80, period: "2030-01-14" });
    expect(await rowsOf(t.app.services.db, sql`SELECT 1 FROM quota_degradation_state WHERE tenant_id = ${tenantId}`)).toEqual([]);
    const history = await rowsOf<{ action: string; reason: string }>(
      t.app.services.db,
      sql`SELECT action, reason FROM quota_degradation_history WHERE tenant_id = ${tenantId} ORDER BY id`,
    );
    expect(history.map((h) => h.action)).toEqual(["APPLIED", "LIFTED"]);
    expect(history[1]!.reason).toBe("period_reset");

    // Restored: the hot path admits the full request on the new local day.
    const restored = await enforcement.checkAndReserve(request(100), gateway);
    expect(restored).toMatchObject({ allowed: true, outcome: "ALLOW" });
    expect(restored.directives).toMatchObject({ maxOutputTokens: 100, priority: "NORMAL" });
    await enforcement.release(restored.reservation!.id, gateway);

    // The reset happened once: evaluating again (as every replica's scan would) emits nothing.
    expect((await lifecycle.evaluateTenant(tenantId)).events).toEqual([]);
    expect(await lifecycle.tenantsDueForReset()).toEqual([]);
    expect((await events()).filter((e) => e.type === "period.rolled")).toHaveLength(1);
  });

  it("a month boundary rolls both the day and the month", async () => {
    clock.set(new Date("2030-02-01T05:00:01Z")); // 2030-02-01 00:00:01 EST
    const r = await lifecycle.evaluateTenant(tenantId);
    expect(r.events).toEqual(["period.rolled", "period.rolled"]);
    const rolled = (await events()).filter((e) => e.type === "period.rolled").slice(-2);
    expect(rolled.map((e) => [e.payload.periodKind, e.payload.previousPeriod, e.payload.period])).toEqual([
      ["day", "2030-01-15", "2030-02-01"],
      ["month", "2030-01", "2030-02"],
    ]);
    expect(rolled[1]!.payload.startedAt).toBe("2030-02-01T05:00:00.000Z");
  });
});
