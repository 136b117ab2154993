import { afterAll, describe, expect, it } from "vitest";
import { Writable } from "node:stream";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { pino } from "pino";
import { JobSystem } from "../../src/jobs/job-system.js";
import { QUEUES, SCHEDULERS, queuePrefix } from "../../src/jobs/queues.js";
import { assertNoEviction, RedisEvictionPolicyError } from "../../src/jobs/redis-policy.js";
import type { RollupService } from "../../src/domain/usage/rollup.service.js";
import type { QuotaLifecycleService } from "../../src/domain/usage/quota-lifecycle.service.js";
import type { ReconciliationService } from "../../src/domain/usage/reconciliation.service.js";
import { createTestDatabase, REDIS_URL, uniqueName } from "../support/env.js";
import { startPrivateRedis, type PrivateRedis } from "../support/redis-server.js";
import { spawnServer } from "../support/process.js";
import { dropQueues } from "./support.js";

/**
 * Job schedulers with several processes: five job systems (each with its own Redis
 * connections, as five processes would have) start at once against one Redis. There must be
 * one scheduler per repeatable job, and each scheduled run must be processed once, not five times.
 * The processors here only count their runs: what they would do is tested elsewhere.
 */
const EVERY_MS = 400;

function countingServices(counts: Record<string, number>) {
  const bump = (k: string) => (counts[k] = (counts[k] ?? 0) + 1);
  const rollups = {
    runIncremental: async () => {
      bump("rollup.incremental");
      return { batches: 0, rows: 0, tenants: [], events: 0, position: { watermark: 0n, safeHorizon: 0n, ledgerMax: 0n } };
    },
    rebuild: async () => ({ dailyRows: 0, monthlyRows: 0, watermark: 0n }),
  } as unknown as RollupService;
  const quota = {
    tenantsDueForReset: async () => (bump("quota.reset-scan"), []),
    tenantsWithOpenState: async () => (bump("quota.open-scan"), []),
    evaluateTenant: async (tenantId: string) => ({ tenantId, events: [] }),
    tenantsAffectedBy: async () => [],
  } as unknown as QuotaLifecycleService;
  const reconciliation = {
    run: async () => (bump("counters.reconcile"), { tenants: 0, counters: 0, drifted: 0, repaired: 0, busy: 0 }),
  } as unknown as ReconciliationService;
  return { rollups, quota, reconciliation, sweepExpired: async () => (bump("reservations.sweep"), 0) };
}

function capturingLogger() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { logger: pino({ level: "warn" }, stream), lines };
}

describe("job schedulers across processes", () => {
  const keyPrefix = `${uniqueName("sched")}:`;
  const redis = { url: REDIS_URL, clusterNodes: [], keyPrefix, commandTimeoutMs: 100 };
  let systems: JobSystem[] = [];

  afterAll(async () => {
    await Promise.all(systems.map((s) => s.close()));
    await dropQueues(keyPrefix);
  });

  it("five job systems starting at once leave one scheduler per repeatable job, and each run is processed once", async () => {
    const counts: Record<string, number> = {};
    const { logger } = capturingLogger();
    systems = Array.from(
      { length: 5 },
      () =>
        new JobSystem({
          redis,
          logger,
          ...countingServices(counts),
          intervals: { rollupMs: EVERY_MS, resetScanMs: EVERY_MS, openScanMs: EVERY_MS, sweepMs: EVERY_MS, reconcileMs: EVERY_MS },
        }),
    );
    const started = Date.now();
    await Promise.all(systems.map((s) => s.startWorkers()));
    expect(systems.every((s) => s.workersRunning)).toBe(true);

    for (const [key, name] of Object.entries(QUEUES)) {
      const schedulers = await systems[0]!.queue(key as keyof typeof QUEUES).getJobSchedulers();
      const expected = SCHEDULERS.filter((s) => s.queue === key).map((s) => s.id).sort();
      expect(schedulers.map((s) => s.key).sort(), name).toEqual(expected);
      expect(schedulers.every((s) => s.every === EVERY_MS)).toBe(true);
    }

    await new Promise((r) => setTimeout(r, 3_000));
    await Promise.all(systems.map((s) => s.close()));
    const elapsed = Date.now() - started;
    const observer = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    try {
      for (const s of SCHEDULERS) {
        const q = new Queue(QUEUES[s.queue], { connection: observer, prefix: queuePrefix(keyPrefix) });
        const done = (await q.getJobs(["completed", "failed"])).filter((j) => j.id?.startsWith(`repeat:${s.id}:`));
        await q.close();
        // Each scheduled run is one job (its id is the scheduler id and the run's time) ...
        const times = done.map((j) => Number(j.id!.split(":").at(-1))).sort((a, b) => a - b);
        expect(new Set(times).size, s.id).toBe(times.length);
        for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!, s.id).toBe(EVERY_MS);
        // ... processed once, by one of the five (the processors ran exactly as often) ...
        expect(counts[s.job] ?? 0, s.id).toBe(done.filter((j) => j.finishedOn).length);
        // ... at one schedule's rate, not five schedules' rate.
        expect(done.length, s.id).toBeGreaterThanOrEqual(Math.floor(elapsed / EVERY_MS) - 3);
        expect(done.length, s.id).toBeLessThanOrEqual(Math.ceil(elapsed / EVERY_MS) + 1);
      }
    } finally {
      await observer.quit();
    }
  });
});

describe("Redis eviction policy", () => {
  let redis: PrivateRedis;
  afterAll(async () => redis?.stop());

  it("refuses a Redis that may evict, names the policy and the fix; warns when CONFIG is not allowed", async () => {
    redis = await startPrivateRedis();
    const admin = new Redis(redis.url);
    const { logger, lines } = capturingLogger();
    try {
      await assertNoEviction(admin, logger); // noeviction: accepted
      await admin.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lru");
      const refused = await assertNoEviction(admin, logger).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(RedisEvictionPolicyError);
      expect((refused as Error).message).toMatch(/maxmemory-policy "allkeys-lru".*need "noeviction".*CONFIG SET maxmemory-policy noeviction/s);

      // A managed Redis that forbids CONFIG: the check cannot run, so it warns and lets start go on.
      await admin.call("ACL", "SETUSER", "app", "on", ">app-password", "~*", "&*", "+@all", "-config");
      const limited = new Redis(redis.url.replace("redis://", "redis://app:app-password@"));
      await assertNoEviction(limited, logger);
      await limited.quit();
      expect(lines.join("")).toContain("could not read Redis maxmemory-policy (CONFIG is not allowed)");
    } finally {
      await admin.quit();
    }
  });

  it("does not hang start-up on a Redis that does not answer", async () => {
    const conn = new Redis(redis.url, { maxRetriesPerRequest: null });
    await conn.ping();
    redis.pause();
    try {
      const { logger } = capturingLogger();
      const started = Date.now();
      await expect(assertNoEviction(conn, logger, 300)).rejects.toThrow(/did not answer within 300 ms/);
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      redis.resume();
      await conn.quit();
    }
  });

  it("the service does not start on an evicting Redis, and says why", async () => {
    const admin = new Redis(redis.url);
    await admin.call("CONFIG", "SET", "maxmemory-policy", "volatile-lru");
    await admin.quit();
    const db = await createTestDatabase();
    try {
      const started = await spawnServer({ DATABASE_URL: db.url, REDIS_URL: redis.url, WORKERS_ENABLED: "false", BOOTSTRAP_ADMIN_TOKEN: undefined, PORT: "0" }).catch(
        (e: Error) => e,
      );
      expect(started).toBeInstanceOf(Error);
      expect((started as Error).message).toContain('maxmemory-policy \\"volatile-lru\\"');
      expect((started as Error).message).toContain("startup failed");
    } finally {
      await db.drop();
    }
  });
});
