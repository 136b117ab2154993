import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { Queue, Worker } from "bullmq";
import { startTestApp, type TestApp } from "../support/app.js";
import type { GraphQLClient } from "../support/client.js";
import { startPrivateRedis, type PrivateRedis } from "../support/redis-server.js";
import { uniqueName } from "../support/env.js";
import { commit, createGateway, createKey, insertModel, insertTenant, insertTier, reserve } from "../support/enforcement.js";
import { createQueueRedis } from "../../src/storage/redis/client.js";

/** One sample of the Prometheus text format: name, labels and value. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

async function scrape(baseUrl: string): Promise<{ samples: Sample[]; text: string; contentType: string | null }> {
  const res = await fetch(`${baseUrl}/metrics`);
  expect(res.status).toBe(200);
  const text = await res.text();
  return { samples: parseExposition(text), text, contentType: res.headers.get("content-type") };
}

/** The value of the one sample with this name and these labels (undefined when absent). */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (hits.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${hits.length} series`);
  return hits[0]?.value;
}

describe("/metrics on the shared Redis", () => {
  let t: TestApp;
  let base: string;
  let gw: GraphQLClient;
  let key: { id: string; secret: string };
  const RESERVES = 12;

  beforeAll(async () => {
    t = await startTestApp();
    base = t.url.replace(/\/graphql$/, "");
    await insertModel(t, "m-small", 1_000n, 2_000n);
    // A bucket of exactly RESERVES requests: the next ones are RATE_LIMITED.
    const tierId = await insertTier(t, { tenantLimits: { requestsPerMinute: { perMinute: 1, burst: RESERVES }, dailyTokens: 1_000_000 } });
    key = await createKey(t, await insertTenant(t, tierId));
    gw = await createGateway(t);
  });
  afterAll(async () => t?.close());

  it("counts decisions by outcome and reason, times each operation, and records ledger batches and lag", async () => {
    const ids: string[] = [];
    for (let i = 0; i < RESERVES; i++) {
      const d = await reserve(gw, { apiKey: key.secret, inputTokens: 10, maxOutputTokens: 10 });
      expect(d.allowed).toBe(true);
      ids.push(d.reservation.id);
    }
    for (let i = 0; i < 3; i++) expect((await reserve(gw, { apiKey: key.secret })).reason).toBe("RATE_LIMITED");
    expect((await reserve(gw, { apiKey: "llm_nope_nope" })).reason).toBe("KEY_INVALID");
    // Commits in parallel, so the group commit has company.
    const commits = await Promise.all(ids.map((id) => commit(gw, id, 10, 5)));
    for (const c of commits) expect(c.errors).toBeUndefined();
    // One bad commit (unknown reservation): an operation that ends in an error.
    expect((await commit(gw, "res_unknown", 1, 1)).errors?.[0]?.extensions?.code).toBe("NOT_FOUND");

    const { samples, contentType } = await scrape(base);
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);

    expect(value(samples, "llm_enforcement_decisions_total", { outcome: "ALLOW", reason: "NONE" })).toBe(RESERVES);
    expect(value(samples, "llm_enforcement_decisions_total", { outcome: "DENY", reason: "RATE_LIMITED" })).toBe(3);
    expect(value(samples, "llm_enforcement_decisions_total", { outcome: "DENY", reason: "KEY_INVALID" })).toBe(1);

    const h = "llm_graphql_operation_duration_seconds";
    const reserveCount = value(samples, `${h}_count`, { operation: "checkAndReserve", type: "mutation", status: "ok" })!;
    const reserveSum = value(samples, `${h}_sum`, { operation: "checkAndReserve", type: "mutation", status: "ok" })!;
    expect(reserveCount).toBe(RESERVES + 4);
    // Each took more than nothing and, on an idle test machine, far less than a second.
    expect(reserveSum).toBeGreaterThan(0);
    expect(reserveSum / reserveCount).toBeLessThan(1);
    // Cumulative buckets: +Inf holds every observation, and the buckets never decrease.
    const buckets = samples.filter((s) => s.name === `${h}_bucket` && s.labels.operation === "checkAndReserve" && s.labels.status === "ok");
    expect(buckets.at(-1)).toMatchObject({ labels: { le: "+Inf" }, value: reserveCount });
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
    expect(value(samples, `${h}_count`, { operation: "commit", status: "ok" })).toBe(RESERVES);
    expect(value(samples, `${h}_count`, { operation: "commit", status: "error" })).toBe(1);
    // The fixtures' operator mutations are timed too, under their own root field.
    expect(value(samples, `${h}_count`, { operation: "createApiKey", status: "ok" })).toBe(1);

    // Ledger: every committed row went through a batch; batches had company; the lag is sane.
    expect(value(samples, "llm_ledger_batch_size_sum")).toBe(RESERVES);
    const batches = value(samples, "llm_ledger_batch_size_count")!;
    expect(batches).toBeGreaterThanOrEqual(1);
    expect(batches).toBeLessThan(RESERVES);
    // One lag per commit, not per batch.
    expect(value(samples, "llm_ledger_commit_durable_seconds_count")).toBe(RESERVES);
    const lag = value(samples, "llm_ledger_commit_durable_seconds_sum")! / RESERVES;
    expect(lag).toBeGreaterThan(0);
    expect(lag).toBeLessThan(1);

    // The process is visible (default series), and nothing failed against the healthy Redis.
    expect(value(samples, "process_resident_memory_bytes")).toBeGreaterThan(10_000_000);
    expect(samples.some((s) => s.name === "llm_redis_errors_total")).toBe(false);
  });

  it("reports the outbox backlog: unpublished events and the age of the oldest, read on each scrape", async () => {
    const before = await scrape(base);
    expect(value(before.samples, "llm_outbox_unpublished_events")).toBe(0);
    expect(value(before.samples, "llm_outbox_oldest_unpublished_age_seconds")).toBe(0);
    const rows = ((await t.app.services.db.execute(sql`select id from tenants limit 1`)) as unknown as { rows: Array<{ id: string }> }).rows;
    const tenantId = rows[0]!.id;
    // Plain SQL with only the base columns: the relay adds its own, and this must not care.
    await t.app.services.db.execute(sql`
      insert into outbox_events (id, type, tenant_id, payload, occurred_at, published_at) values
        (${uniqueName("evt")}, 'quota.threshold', ${tenantId}, '{}'::jsonb, now() - interval '90 seconds', null),
        (${uniqueName("evt")}, 'quota.threshold', ${tenantId}, '{}'::jsonb, now() - interval '5 seconds', null),
        (${uniqueName("evt")}, 'quota.threshold', ${tenantId}, '{}'::jsonb, now() - interval '300 seconds', now())`);
    const after = await scrape(base);
    expect(value(after.samples, "llm_outbox_unpublished_events")).toBe(2);
    const age = value(after.samples, "llm_outbox_oldest_unpublished_age_seconds")!;
    expect(age).toBeGreaterThanOrEqual(90);
    expect(age).toBeLessThan(150);
  });

  it("records the durations and failures of BullMQ jobs through the workers' helper", async () => {
    const connection = createQueueRedis({ url: t.app.redisUrl, clusterNodes: t.app.config.redis.clusterNodes, keyPrefix: "", commandTimeoutMs: 1_000 });
    // The hash tag keeps all of the queue's keys in one slot, as BullMQ needs on Redis Cluster.
    const prefix = `{${uniqueName("mq")}}`;
    const queue = new Queue("metrics-probe", { connection, prefix });
    const worker = new Worker(
      "metrics-probe",
      async (job) => {
        await new Promise((r) => setTimeout(r, 30));
        if (job.name === "boom") throw new Error("the job failed on purpose");
      },
      { connection, prefix },
    );
    const stop = t.app.services.metrics.jobs.instrumentWorker(worker);
    try {
      const settled = new Promise<void>((resolve) => {
        let n = 0;
        const one = () => ++n === 3 && resolve();
        worker.on("completed", one);
        worker.on("failed", one);
      });
      await queue.add("fine", {});
      await queue.add("fine", {});
      await queue.add("boom", {}, { attempts: 1 });
      await settled;
    } finally {
      stop();
      await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
      connection.disconnect();
    }
    const { samples } = await scrape(base);
    const d = "llm_job_duration_seconds";
    expect(value(samples, `${d}_count`, { queue: "metrics-probe", job: "fine", status: "completed" })).toBe(2);
    expect(value(samples, `${d}_count`, { queue: "metrics-probe", job: "boom", status: "failed" })).toBe(1);
    expect(value(samples, `${d}_sum`, { queue: "metrics-probe", job: "fine", status: "completed" })).toBeGreaterThanOrEqual(0.05);
    expect(value(samples, "llm_job_failures_total", { queue: "metrics-probe", job: "boom" })).toBe(1);
    expect(value(samples, "llm_job_failures_total", { queue: "metrics-probe", job: "fine" })).toBeUndefined();
  });
});

/** Failure series need Redis to hang and die: a private redis-server. */
describe("/metrics when Redis hangs or dies", () => {
  let redisServer: PrivateRedis;
  let t: TestApp;
  let base: string;
  let gw: GraphQLClient;
  let quotaKey: { secret: string };
  let rateOnlyKey: { secret: string };

  beforeAll(async () => {
    redisServer = await startPrivateRedis();
    t = await startTestApp({ REDIS_URL: redisServer.url });
    base = t.url.replace(/\/graphql$/, "");
    await insertModel(t, "m-small", 1_000n, 2_000n);
    const quotaTier = await insertTier(t, { failOpenRateLimits: true, tenantLimits: { dailyTokens: 1_000_000 } });
    const rateTier = await insertTier(t, { failOpenRateLimits: true, tenantLimits: { requestsPerMinute: { perMinute: 100, burst: null } } });
    quotaKey = await createKey(t, await insertTenant(t, quotaTier));
    rateOnlyKey = await createKey(t, await insertTenant(t, rateTier));
    gw = await createGateway(t);
    // Warm the key and policy caches while Redis is up.
    expect((await reserve(gw, { apiKey: quotaKey.secret })).allowed).toBe(true);
    expect((await reserve(gw, { apiKey: rateOnlyKey.secret })).allowed).toBe(true);
  });
  let redisStopped = false;
  afterAll(async () => {
    await t?.close();
    // stop() waits for an exit; a second call after the test stopped it would wait forever.
    if (!redisStopped) await redisServer?.stop();
  });

  it("tells timeouts (hung Redis) from connection errors (dead Redis), and counts fail-open decisions", async () => {
    redisServer.pause();
    try {
      for (let i = 0; i < 3; i++) expect((await reserve(gw, { apiKey: quotaKey.secret })).reason).toBe("BACKEND_UNAVAILABLE");
    } finally {
      redisServer.resume();
    }
    let s = (await scrape(base)).samples;
    expect(value(s, "llm_redis_errors_total", { op: "reserve", kind: "timeout" })).toBe(3);
    expect(value(s, "llm_enforcement_backend_unavailable_total", { op: "reserve" })).toBe(3);
    expect(value(s, "llm_enforcement_decisions_total", { outcome: "DENY", reason: "BACKEND_UNAVAILABLE" })).toBe(3);
    expect(value(s, "llm_enforcement_fail_open_total")).toBe(0);

    await redisServer.stop();
    redisStopped = true;
    expect((await reserve(gw, { apiKey: quotaKey.secret })).reason).toBe("BACKEND_UNAVAILABLE");
    const open = await reserve(gw, { apiKey: rateOnlyKey.secret });
    expect(open).toMatchObject({ allowed: true, outcome: "ALLOW" });
    s = (await scrape(base)).samples;
    expect(value(s, "llm_redis_errors_total", { op: "reserve", kind: "connection" })).toBe(2);
    expect(value(s, "llm_redis_errors_total", { op: "reserve", kind: "timeout" })).toBe(3);
    expect(value(s, "llm_enforcement_fail_open_total")).toBe(1);
    // 2 plain allows while warming up + the fail-open one.
    expect(value(s, "llm_enforcement_decisions_total", { outcome: "ALLOW", reason: "NONE" })).toBe(3);
    // The client reports the lost connection on its own schedule (reconnect attempts).
    const deadline = Date.now() + 5_000;
    while (!value(s, "llm_redis_connection_errors_total", { client: "hot-path" }) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      s = (await scrape(base)).samples;
    }
    expect(value(s, "llm_redis_connection_errors_total", { client: "hot-path" })).toBeGreaterThanOrEqual(1);
  });
});

describe("a scrape while the outbox query fails or hangs", () => {
  it("still renders every other series, with the outbox gauges as NaN", async () => {
    const { ServiceMetrics } = await import("../../src/metrics/service-metrics.js");
    const failing = new ServiceMetrics({ outboxLag: () => Promise.reject(new Error("connection refused")) });
    failing.enforcement.decision("ALLOW", null);
    const hung = new ServiceMetrics({ outboxLag: () => new Promise(() => {}), outboxLagTimeoutMs: 50 });
    for (const m of [failing, hung]) {
      const samples = parseExposition((await m.render()).body);
      expect(value(samples, "llm_outbox_unpublished_events")).toBeNaN();
      expect(value(samples, "llm_outbox_oldest_unpublished_age_seconds")).toBeNaN();
    }
    expect(value(parseExposition((await failing.render()).body), "llm_enforcement_decisions_total", { outcome: "ALLOW", reason: "NONE" })).toBe(1);
  });
});
