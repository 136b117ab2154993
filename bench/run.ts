import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, existsSync } from "node:fs";
import { loadavg, tmpdir, cpus } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Redis, Cluster } from "ioredis";
import { sql } from "drizzle-orm";
import { compose } from "../src/compose.js";
import { loadConfig } from "../src/config/config.js";
import { createLogger } from "../src/lib/logger.js";
import { openDatabase } from "../src/storage/postgres/db.js";
import { PostgresLedgerWriter } from "../src/storage/postgres/ledger.writer.js";
import type { LedgerEntry } from "../src/domain/enforcement/types.js";
import { createBenchDatabase, seed } from "./setup.js";
import { fmtInt, fmtMs, summarize, table, type LatencySummary } from "./lib.js";
import type { LoadResult, LoadSpec } from "./loadgen.js";
import { PAIR } from "./loadgen.js";

/**
 * `npm run bench`: one command that starts what it needs (a bench_<ts> database on the local
 * Postgres; an empty numbered database on the local Redis, or a key prefix where there is none
 * free and on the local cluster), runs every measurement of issue #6 in one go on this machine,
 * and prints one table.
 *
 *   --quick          ~1 minute: shorter phases, a smaller rollup
 *   --cluster        also run the service and the floor against the local 3-master Redis Cluster
 *                    (started by .ci/redis-cluster.sh if needed) and print the change
 *   --workers=N      WEB_CONCURRENCY for the service (node:cluster workers); default 1
 *   --profile        write V8 CPU profiles of the service, floor and peer to bench/results/profiles/
 *   --rollup-rows=N  ledger rows for the full-rollup measurement (default 1,000,000; the
 *                    issue's 10,000,000 takes several minutes to generate on 2 cores)
 *   --only=a,b       run only these phases: service, floor, peer, open, ledger, rollup
 *   --node-flags=F,F node/V8 flags for the service and the floor in place of the heap flags
 *                    `npm start` uses (e.g. --max-semi-space-size=16,--single-threaded-gc)
 *   --env=K=V,K=V    extra settings for the service and the floor (e.g. GRAPHQL_JIT=false), to
 *                    measure one lever against the defaults
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    cluster: { type: "boolean", default: false },
    profile: { type: "boolean", default: false },
    workers: { type: "string", default: "1" },
    "rollup-rows": { type: "string" },
    only: { type: "string" },
    env: { type: "string" },
    "node-flags": { type: "string" },
    keep: { type: "boolean", default: false },
  },
});
const quick = args.quick!;
const WARMUP_MS = quick ? 1_000 : 2_000;
const PHASE_MS = quick ? 3_000 : 10_000;
const CONCURRENCY = 64;
const TENANTS = 1_000;
const KEYS_PER_TENANT = 5;
const ROLLUP_FULL_ROWS = Number(args["rollup-rows"] ?? (quick ? 200_000 : 1_000_000));
const ROLLUP_INCREMENT = 100_000;
/** Timed runs of each incremental-rollup case; the table shows their median and range. */
const ROLLUP_RUNS = quick ? 1 : 3;
/** The run with the median time (of an odd count; the lower middle of an even one). */
const medianRun = <T extends { ms: number }>(runs: T[]): T => [...runs].sort((a, b) => a.ms - b.ms)[Math.floor((runs.length - 1) / 2)]!;
const runRange = (runs: Array<{ ms: number }>) => (runs.length > 1 ? `; ${runs.length} runs ${fmtInt(Math.min(...runs.map((r) => r.ms)))}–${fmtInt(Math.max(...runs.map((r) => r.ms)))} ms` : "");
const only = args.only ? new Set(args.only.split(",")) : null;
const want = (phase: string) => !only || only.has(phase);
const CLUSTER_NODES = (process.env.BENCH_REDIS_CLUSTER_NODES ?? "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003").split(",");
const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";

const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const load1 = () => loadavg()[0]!.toFixed(2);

// ── child processes ──────────────────────────────────────────────────────────────────────────

interface Proc {
  child: ChildProcess;
  port: number;
  output(): string;
  stop(): Promise<number | null>;
}

function startNode(script: string, scriptArgs: string[], env: Record<string, string>, nodeFlags: string[] = []): Promise<Proc> {
  const child = spawn(process.execPath, [...nodeFlags, "--import", "tsx", path.join(ROOT, script), ...scriptArgs], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start:\n${out}`)), 90_000);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      // Keep only the head of a chatty log: the port line is near the top.
      if (out.length > 200_000) out = out.slice(0, 100_000);
      const m = /"port":(\d+)/.exec(out);
      if (m && timer) {
        clearTimeout(timer);
        resolve({
          child,
          port: Number(m[1]),
          output: () => out,
          stop: () =>
            new Promise((res) => {
              if (child.exitCode !== null || child.signalCode !== null) return res(child.exitCode);
              child.once("exit", (code) => res(code));
              child.kill("SIGTERM");
            }),
        });
      }
    });
    child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited with ${code} before listening:\n${out}`));
    });
  });
}

/** Peak resident set (VmHWM) of a process and all its descendants, in MB. */
function peakRssMb(pid: number): number {
  let kb = 0;
  const visit = (p: number) => {
    try {
      const status = readFileSync(`/proc/${p}/status`, "utf8");
      kb += Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
      for (const task of readdirSync(`/proc/${p}/task`)) {
        const kids = readFileSync(`/proc/${p}/task/${task}/children`, "utf8").trim();
        for (const k of kids ? kids.split(/\s+/) : []) visit(Number(k));
      }
    } catch {
      // The process ended meanwhile.
    }
  };
  visit(pid);
  return kb / 1024;
}

const tmp = mkdtempSync(path.join(tmpdir(), "llm-bench-"));
let specSeq = 0;

async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const file = path.join(tmp, `spec-${specSeq++}.json`);
  writeFileSync(file, JSON.stringify(spec));
  const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "bench/loadgen.ts"), file], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => child.once("exit", r));
  if (code !== 0) throw new Error(`load generator failed (${code}):\n${err}`);
  const r = JSON.parse(out.trim().split("\n").at(-1)!) as LoadResult;
  if (r.errors > 0) log(`  ${r.errors} errors; first: ${r.firstError}`);
  if (r.denied > 0) {
    const reasons = Object.entries(r.deniedReasons).map(([k, n]) => `${k} ${n}`).join(", ");
    log(`  ${r.denied} denials: ${reasons}`);
    report.notes.push(`${spec.kind} ${spec.mode} ${spec.mode === "open" ? `${spec.rate} pairs/s` : spec.dist}: ${r.denied} denials (${reasons})`);
  }
  return r;
}

/**
 * Redis's own slow log over a phase: commands that took at least `slowlog-log-slower-than`
 * (10 ms by default) inside Redis. A reserve or settle script does its work in tens of
 * microseconds, so an entry there is Redis itself held up (descheduled on the shared cores), a
 * stall every client of that Redis sees, whatever it is written in. Single Redis only.
 */
interface RedisStalls {
  count: number;
  maxMs: number;
  thresholdMs: number | null;
}

async function redisSlowlogSince(sinceUnixSec: number): Promise<RedisStalls | null> {
  const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await r.connect();
    const entries = (await r.call("SLOWLOG", "GET", "1000")) as Array<[number, number, number, ...unknown[]]>;
    const threshold = await r.call("CONFIG", "GET", "slowlog-log-slower-than").then(
      (v) => Number((v as string[])[1]) / 1000,
      () => null,
    );
    const inPhase = entries.filter((e) => Number(e[1]) >= sinceUnixSec);
    return { count: inPhase.length, maxMs: inPhase.reduce((m, e) => Math.max(m, Number(e[2]) / 1000), 0), thresholdMs: threshold };
  } catch {
    return null;
  } finally {
    r.disconnect();
  }
}

/** One open-loop phase at `rate` pairs/s, with Redis's slow log over the same seconds. */
async function openPhase(spec: Pick<LoadSpec, "kind" | "url" | "token" | "keysFile">, rate: number) {
  const since = Math.floor(Date.now() / 1000);
  const r = await runLoad({ ...spec, dist: "uniform", mode: "open", concurrency: 0, rate, durationMs: PHASE_MS, warmupMs: WARMUP_MS, prime: false });
  return { r, redisStalls: await redisSlowlogSince(since) };
}

// ── /metrics: the service's own commit → durable histogram ──────────────────────────────────

type Buckets = Map<number, number>;

async function scrapeHistogram(port: number, name: string): Promise<Buckets> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Buckets = new Map();
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}_bucket{`)) continue;
    const le = /le="([^"]+)"/.exec(line)![1]!;
    out.set(le === "+Inf" ? Infinity : Number(le), Number(line.slice(line.lastIndexOf(" ") + 1)));
  }
  return out;
}

/** The bucket bound (ms) under which p% of the observations between two scrapes fall. */
function bucketPercentile(before: Buckets, after: Buckets, p: number): number {
  const les = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  if (total <= 0) return NaN;
  for (const le of les) if ((after.get(le)! - (before.get(le) ?? 0)) / total >= p / 100) return le * 1000;
  return Infinity;
}

/** The service's own view of its memory at the end of a phase (from /metrics), for the RSS line. */
async function heapNow(port: number): Promise<string | null> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const v = (name: string) => Number(/^(\S+) (\S+)$/m.exec(text.split("\n").find((l) => l.startsWith(name + " ")) ?? "")?.[2] ?? NaN) / 1e6;
    const sample = (name: string, labels: string) => Number(text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`))?.split(" ").at(-1) ?? NaN);
    const gc = (kind: string) => `${sample("nodejs_gc_duration_seconds_count", `kind="${kind}"`)} ${kind} GCs ${(sample("nodejs_gc_duration_seconds_sum", `kind="${kind}"`) * 1000).toFixed(0)} ms`;
    return (
      `now: RSS ${v("process_resident_memory_bytes").toFixed(0)} MB, V8 heap ${v("nodejs_heap_size_used_bytes").toFixed(0)}/${v("nodejs_heap_size_total_bytes").toFixed(0)} MB, external ${v("nodejs_external_memory_bytes").toFixed(0)} MB; ` +
      `since start: ${gc("major")}, ${gc("minor")}`
    );
  } catch {
    return null;
  }
}

// ── measurements ─────────────────────────────────────────────────────────────────────────────

interface ClosedRow {
  label: string;
  uniform: LoadResult | null;
  zipf: LoadResult | null;
}

interface Report {
  closed: ClosedRow[];
  open: Array<{ percent: number; rate: number; r: LoadResult; redisStalls: RedisStalls | null }>;
  /** The floor and the null server in open loop at the service's rates (same percent keys). */
  openBaselines: Array<{ label: "floor" | "null"; percent: number; rate: number; r: LoadResult; redisStalls: RedisStalls | null }>;
  durableLag: { p50: number; p99: number; commits: number } | null;
  /** The same histogram over the open-loop phase at 50 % of the maximum. */
  durableLagOpen: { p50: number; p99: number; commits: number } | null;
  ledger: { rowsPerSec: number; lag: LatencySummary; batches: number; avgBatch: number } | null;
  rollup: string[][] | null;
  rollupNote: string | null;
  rss: Array<{ label: string; mb: number; heap: string | null }>;
  cluster: Array<{ label: string; single: number; cluster: number }>;
  notes: string[];
}

const report: Report = { closed: [], open: [], openBaselines: [], durableLag: null, durableLagOpen: null, ledger: null, rollup: null, rollupNote: null, rss: [], cluster: [], notes: [] };

function closedSpec(kind: LoadSpec["kind"], url: string, token: string, keysFile: string, dist: LoadSpec["dist"], prime = false): LoadSpec {
  return { kind, url, token, keysFile, dist, mode: "closed", concurrency: CONCURRENCY, rate: 0, durationMs: PHASE_MS, warmupMs: WARMUP_MS, prime };
}

async function measureTarget(
  label: string,
  start: () => Promise<Proc>,
  kind: LoadSpec["kind"],
  pathName: string,
  token: string,
  keysFile: string,
  opts: { zipf: boolean; after?: (p: Proc, uniform: LoadResult) => Promise<void>; lag?: boolean },
): Promise<ClosedRow> {
  log(`${label}: starting (load ${load1()})`);
  const proc = await start();
  const url = `http://127.0.0.1:${proc.port}${pathName}`;
  try {
    // The lag window starts after priming: the first use of each key seeds its counters from
    // the ledger, a start-up cost that is not the group commit's.
    if (opts.lag) await runLoad({ ...closedSpec(kind, url, token, keysFile, "uniform", true), durationMs: 500, warmupMs: 0 });
    const before = opts.lag ? await scrapeHistogram(proc.port, "llm_ledger_commit_durable_seconds") : null;
    const uniform = await runLoad(closedSpec(kind, url, token, keysFile, "uniform", !opts.lag));
    log(`${label} uniform: ${fmtInt(uniform.pairsPerSec)} pairs/s (load ${load1()})`);
    if (before) {
      const after = await scrapeHistogram(proc.port, "llm_ledger_commit_durable_seconds");
      report.durableLag = {
        p50: bucketPercentile(before, after, 50),
        p99: bucketPercentile(before, after, 99),
        commits: (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0),
      };
    }
    let zipf: LoadResult | null = null;
    if (opts.zipf) {
      zipf = await runLoad(closedSpec(kind, url, token, keysFile, "zipf"));
      log(`${label} zipf: ${fmtInt(zipf.pairsPerSec)} pairs/s (load ${load1()})`);
    }
    await opts.after?.(proc, uniform);
    report.rss.push({ label, mb: peakRssMb(proc.child.pid!), heap: kind === "graphql" ? await heapNow(proc.port) : null });
    return { label, uniform, zipf };
  } finally {
    const code = await proc.stop();
    if (code !== 0) log(`${label}: exited ${code}\n${proc.output().slice(-2000)}`);
  }
}

async function ledgerIsolation(databaseUrl: string): Promise<void> {
  log(`ledger group commit in isolation (load ${load1()})`);
  const logger = createLogger({ level: "warn" });
  const database = await openDatabase({ url: databaseUrl, poolSize: 10, dataDir: tmp });
  const writer = new PostgresLedgerWriter(database.db, { lingerMs: 2, maxBatch: 1_000, logger });
  const day = new Date().toISOString().slice(0, 10);
  let seq = 0;
  const entry = (): LedgerEntry => ({
    reservationId: `res_benchledger${seq++}`,
    entry: "COMMIT",
    tenantId: "tenant_bench",
    keyId: "key_bench",
    subject: null,
    route: PAIR.route,
    model: PAIR.model,
    status: "SUCCEEDED",
    inputTokens: 200n,
    outputTokens: 150n,
    reservedInputTokens: 200n,
    reservedOutputTokens: 300n,
    costNano: 500_000n,
    overage: false,
    periodDay: day,
    periodMonth: day.slice(0, 7),
    reservedAt: new Date(),
  });
  // As many commits waiting as a busy fleet of API replicas would have: the writer batches them.
  const OUTSTANDING = 4_000;
  const lags: number[] = [];
  let done = 0;
  let recording = false;
  const end = performance.now() + WARMUP_MS + PHASE_MS;
  let startedAt = 0;
  const startBatches = { b: 0, r: 0 };
  setTimeout(() => {
    recording = true;
    startedAt = performance.now();
    startBatches.b = writer.stats.batches;
    startBatches.r = writer.stats.rows;
  }, WARMUP_MS);
  const lane = async () => {
    while (performance.now() < end) {
      const t = performance.now();
      await writer.append(entry());
      if (recording) {
        done++;
        lags.push(performance.now() - t);
      }
    }
  };
  await Promise.all(Array.from({ length: OUTSTANDING }, lane));
  const seconds = (performance.now() - startedAt) / 1000;
  const batches = writer.stats.batches - startBatches.b;
  report.ledger = { rowsPerSec: done / seconds, lag: summarize(lags), batches, avgBatch: (writer.stats.rows - startBatches.r) / Math.max(1, batches) };
  await writer.flush();
  await database.db.execute(sql`DELETE FROM usage_ledger WHERE tenant_id = 'tenant_bench'`).catch(() => {
    // The ledger is append-only (a trigger refuses DELETE): the rows stay in the bench database.
  });
  await database.close();
  log(`ledger: ${fmtInt(report.ledger.rowsPerSec)} rows/s`);
}

async function rollupCost(databaseUrl: string): Promise<void> {
  const servicePath = path.join(ROOT, "src/domain/usage/rollup.service.ts");
  const storePath = path.join(ROOT, "src/storage/postgres/usage-rollups.ts");
  if (!existsSync(servicePath) || !existsSync(storePath)) {
    report.rollupNote = "rollup: not available (no rollup job in src/ yet)";
    return;
  }
  log(`rollup cost (load ${load1()})`);
  const { RollupService } = await import("../src/domain/usage/rollup.service.js");
  const { PostgresRollupStore } = await import("../src/storage/postgres/usage-rollups.js");
  const logger = createLogger({ level: "warn" });
  const database = await openDatabase({ url: databaseUrl, poolSize: 4, dataDir: tmp });
  const db = database.db;
  const rollups = new RollupService({ store: new PostgresRollupStore(db, { logger }), logger, maxBatches: 1_000_000 });
  const keys = ((await db.execute(sql`SELECT id, tenant_id FROM api_keys`)) as unknown as { rows: Array<{ id: string; tenant_id: string }> }).rows;
  const day = new Date().toISOString().slice(0, 10);
  let generated = 0;
  /**
   * n ledger rows over the seeded keys, 3 models and 2 routes, on `days` consecutive days
   * ending `back` days before today: row g goes to key g mod 5,000, model g mod 3, route g mod 2
   * and day g mod `days`, so one day holds 15,000 key × model × route series.
   */
  const generate = async (n: number, shape: { days: number; back: number } = { days: 28, back: 0 }) => {
    const CHUNK = 250_000;
    for (let done = 0; done < n; done += CHUNK) {
      const m = Math.min(CHUNK, n - done);
      await db.execute(sql`
        WITH k AS (SELECT id, tenant_id, row_number() OVER (ORDER BY id) - 1 AS i FROM api_keys)
        INSERT INTO usage_ledger (reservation_id, entry, tenant_id, key_id, subject, route, model, status, input_tokens, output_tokens,
                                  reserved_input_tokens, reserved_output_tokens, cost_nano, overage, period_day, period_month, reserved_at)
        SELECT 'res_rollup' || (${generated} + g), 'COMMIT', k.tenant_id, k.id, NULL,
               CASE WHEN g % 2 = 0 THEN 'chat.completions' ELSE 'embeddings' END,
               'model-' || (g % 3), CASE WHEN g % 50 = 0 THEN 'FAILED' ELSE 'SUCCEEDED' END,
               200 + g % 100, 150 + g % 50, 200, 300, 500000 + g % 1000, false,
               to_char(${day}::date - ${shape.back}::int - (g % ${shape.days}::int), 'YYYY-MM-DD'),
               to_char(${day}::date - ${shape.back}::int - (g % ${shape.days}::int), 'YYYY-MM'), now()
        FROM generate_series(1, ${m}) g JOIN k ON k.i = g % ${keys.length}`);
      generated += m;
    }
  };
  const timedIncremental = async () => {
    await db.execute(sql`CHECKPOINT`); // the same start for every measurement: no dirty pages of the generator's left
    const t0 = performance.now();
    const run = await rollups.runIncremental();
    return { rows: run.rows, ms: performance.now() - t0 };
  };
  /** ROLLUP_RUNS times: ROLLUP_INCREMENT new ledger rows of `shape(run)`, then a timed incremental run. */
  const timedRuns = async (shape: (run: number) => { days: number; back: number }) => {
    const runs: Array<{ rows: number; ms: number }> = [];
    for (let r = 0; r < ROLLUP_RUNS; r++) {
      await generate(ROLLUP_INCREMENT, shape(r));
      runs.push(await timedIncremental());
    }
    return runs;
  };
  // Catch up with whatever the earlier phases wrote, so each run below rolls only its new rows.
  await rollups.runIncremental();
  // Each case is timed ROLLUP_RUNS times and reported by its median: one timing swings by a
  // third on this shared machine (939–1,613 ms for the same worst case in one afternoon).
  // Steady state: the job runs every 5 s through the day, so today's series already have their
  // rollup rows and a batch adds to them. 100,000 rows of today's traffic are rolled first
  // (untimed, as earlier runs of the day would have), then 100,000 more are timed, and again.
  const today = { days: 1, back: 0 };
  await generate(ROLLUP_INCREMENT, today);
  await rollups.runIncremental();
  const steadyRuns = await timedRuns(() => today);
  const steady = medianRun(steadyRuns);
  log(`rollup incremental, a day's traffic: ${steady.rows} rows in ${steadyRuns.map((x) => x.ms.toFixed(0)).join(", ")} ms`);
  // Worst case: every ledger row starts a new rollup row (a backfill of 28 days that have no
  // rollups yet): each batch inserts its daily rows, and its first batch its monthly rows. Each
  // run backfills 28 days of other months (100 to 127 days back, then 170 to 197, …).
  const worstRuns = await timedRuns((r) => ({ days: 28, back: 100 + 70 * r }));
  const worst = medianRun(worstRuns);
  log(`rollup incremental, every row a new rollup row: ${worst.rows} rows in ${worstRuns.map((x) => x.ms.toFixed(0)).join(", ")} ms`);
  const existing = Number(((await db.execute(sql`SELECT count(*)::bigint AS n FROM usage_ledger`)) as unknown as { rows: Array<{ n: string }> }).rows[0]!.n);
  const more = Math.max(0, ROLLUP_FULL_ROWS - existing);
  log(`rollup: generating ${fmtInt(more)} more ledger rows (load ${load1()})`);
  await generate(more);
  await rollups.runIncremental();
  await db.execute(sql`ANALYZE usage_ledger`);
  const total = Number(((await db.execute(sql`SELECT count(*)::bigint AS n FROM usage_ledger`)) as unknown as { rows: Array<{ n: string }> }).rows[0]!.n);
  let t = performance.now();
  const full = await rollups.rebuild(null);
  const fullMs = performance.now() - t;
  // The same aggregations, read only: what Postgres needs for the GROUP BYs themselves. Same
  // figures, same rows (id <= watermark) and the same work_mem as the rebuild, so the ratio is
  // the rebuild's own overhead and not a baseline that computes less or spills to disk. The
  // `IS NOT NULL` reads every column: under a bare count(*) the planner drops the unread sums
  // and the "GROUP BY" only finds the distinct keys.
  const { ROLLUP_WORK_MEM } = await import("../src/storage/postgres/usage-rollups.js");
  const watermark = full.watermark.toString();
  const figures = sql.raw(`sum(input_tokens), sum(output_tokens), sum(cost_nano), count(*) FILTER (WHERE entry = 'COMMIT'),
            count(*) FILTER (WHERE entry = 'COMMIT' AND status = 'FAILED'), count(*) FILTER (WHERE entry = 'COMMIT' AND status = 'CANCELLED'),
            count(*) FILTER (WHERE entry = 'COMMIT' AND overage), count(*) FILTER (WHERE entry = 'EXPIRY')`);
  const plain = async (q: ReturnType<typeof sql>) => {
    const started = performance.now();
    await db.transaction(async (tx) => {
      await tx.execute(sql.raw(`SET LOCAL work_mem = '${ROLLUP_WORK_MEM}'`));
      await tx.execute(q);
    });
    return performance.now() - started;
  };
  const dailyMs = await plain(sql`SELECT count(*) FROM (SELECT tenant_id, period_day, period_month, key_id, model, route, ${figures}
            FROM usage_ledger WHERE id <= ${watermark}::bigint GROUP BY tenant_id, period_day, period_month, key_id, model, route) d WHERE d IS NOT NULL`);
  const plainMs =
    dailyMs +
    (await plain(sql`SELECT count(*) FROM (SELECT tenant_id, period_month, key_id, model, route, ${figures}
            FROM usage_ledger WHERE id <= ${watermark}::bigint GROUP BY tenant_id, period_month, key_id, model, route) m WHERE m IS NOT NULL`));
  // The rebuild above found the rollups right and wrote nothing to them; from empty rollups it
  // writes every row: the worst case, measured too.
  await db.execute(sql`TRUNCATE usage_daily, usage_monthly`);
  t = performance.now();
  await rollups.rebuild(null);
  const emptyMs = performance.now() - t;
  report.rollup = [
    ["incremental, a day's traffic", `${fmtInt(steady.rows)} new rows`, `${fmtInt(steady.ms)} ms`, `${(steady.ms / (steady.rows / 100_000)).toFixed(0)} ms per 100k rows (15,000 series, rows exist)${runRange(steadyRuns)}`],
    ["incremental, worst case", `${fmtInt(worst.rows)} new rows`, `${fmtInt(worst.ms)} ms`, `${(worst.ms / (worst.rows / 100_000)).toFixed(0)} ms per 100k rows (each a new rollup row)${runRange(worstRuns)}`],
    ["full rebuild (daily + monthly)", `${fmtInt(total)} rows`, `${fmtInt(fullMs)} ms`, `${fmtInt(full.dailyRows)} daily + ${fmtInt(full.monthlyRows)} monthly rows`],
    ["full rebuild from empty rollups", `${fmtInt(total)} rows`, `${fmtInt(emptyMs)} ms`, `÷ GROUP BY = ${(emptyMs / plainMs).toFixed(2)}; ÷ daily GROUP BY = ${(emptyMs / dailyMs).toFixed(2)}`],
    ["plain GROUP BY (same two)", `${fmtInt(total)} rows`, `${fmtInt(plainMs)} ms`, `rebuild ÷ GROUP BY = ${(fullMs / plainMs).toFixed(2)}`],
    ["plain GROUP BY (daily only)", `${fmtInt(total)} rows`, `${fmtInt(dailyMs)} ms`, `rebuild ÷ daily GROUP BY = ${(fullMs / dailyMs).toFixed(2)}`],
  ];
  await database.close();
}

// ── main ─────────────────────────────────────────────────────────────────────────────────────

async function ensureCluster(): Promise<void> {
  const script = path.join(ROOT, ".ci/redis-cluster.sh");
  const child = spawn("bash", [script, "start"], { stdio: ["ignore", "inherit", "inherit"] });
  const code = await new Promise<number | null>((r) => child.once("exit", r));
  if (code !== 0) throw new Error(`${script} start failed (${code})`);
}

/**
 * An empty numbered database on the local Redis, claimed with a marker key, or null when there
 * is none (or the server has only one). The service then runs with no key prefix, as `npm start`
 * does by default: with a prefix, ioredis builds a prefixed copy of every key of every command,
 * and those strings (V8 pretenures them) made the service's scavenges keep about a quarter more
 * (1.08 MB against 0.82–0.86 at 100 pairs/s), the floor's 0.53–0.58 MB against 0.08–0.16.
 */
async function claimRedisDb(owner: string): Promise<number | null> {
  const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await r.connect();
    for (let db = 1; db < 16; db++) {
      try {
        await r.select(db);
      } catch {
        return null;
      }
      if ((await r.dbsize()) === 0 && (await r.set("bench:claimed-by", owner, "NX")) === "OK") return db;
    }
    return null;
  } finally {
    r.disconnect();
  }
}

function redisUrlWithDb(url: string, db: number): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

async function flushRedisDb(db: number, owner: string): Promise<void> {
  const r = new Redis(redisUrlWithDb(REDIS_URL, db));
  try {
    // Only a database this run still owns: a stray run must not empty someone else's.
    if ((await r.get("bench:claimed-by")) === owner) await r.flushdb();
  } finally {
    r.disconnect();
  }
}

async function cleanRedis(prefix: string, cluster: boolean): Promise<void> {
  const clients: Redis[] = [];
  if (cluster) {
    const c = new Cluster(CLUSTER_NODES.map((n) => ({ host: n.split(":")[0]!, port: Number(n.split(":")[1]) })));
    await new Promise((r) => c.once("ready", r));
    clients.push(...c.nodes("master"));
    const unlinkAll = async () => {
      for (const node of clients) {
        let cursor = "0";
        do {
          const [next, keys] = await node.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
          cursor = next;
          for (const k of keys) await node.unlink(k).catch(() => {});
        } while (cursor !== "0");
      }
    };
    await unlinkAll();
    c.disconnect();
    return;
  }
  const r = new Redis(REDIS_URL);
  let cursor = "0";
  do {
    const [next, keys] = await r.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    cursor = next;
    if (keys.length) await r.unlink(...keys);
  } while (cursor !== "0");
  r.disconnect();
}

async function main() {
  const started = Date.now();
  log(`machine: ${cpus().length} cores, load ${loadavg().map((x) => x.toFixed(2)).join(" ")}; phases ${PHASE_MS / 1000} s + ${WARMUP_MS / 1000} s warm-up`);
  if (args.cluster) await ensureCluster();
  const database = await createBenchDatabase();
  const prefix = `${database.name}:`;
  const redisDb = await claimRedisDb(database.name);
  const baseEnv: Record<string, string> = {
    NODE_ENV: "production",
    HOST: "127.0.0.1",
    PORT: "0",
    LOG_LEVEL: "info",
    DATABASE_URL: database.url,
    REDIS_URL: redisDb === null ? REDIS_URL : redisUrlWithDb(REDIS_URL, redisDb),
    REDIS_CLUSTER_NODES: "",
    REDIS_KEY_PREFIX: redisDb === null ? prefix : "",
    WORKERS_ENABLED: "false",
    WEBHOOK_SECRET_KEY: "bench-only-webhook-secret-key-0123456789abcdef",
    // Set, so the service does not print a generated bootstrap token into the bench output.
    BOOTSTRAP_ADMIN_TOKEN: "bench-only-bootstrap-admin-token-0123456789",
    WEB_CONCURRENCY: args.workers!,
    ...Object.fromEntries((args.env ? args.env.split(",") : []).map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)])),
  };
  // A cluster has no numbered databases: there the run's keys carry its prefix.
  const clusterEnv = { ...baseEnv, REDIS_URL: "", REDIS_CLUSTER_NODES: CLUSTER_NODES.join(","), REDIS_KEY_PREFIX: prefix };
  log(redisDb === null ? `redis: keys prefixed ${prefix}` : `redis: database ${redisDb} (no key prefix, as npm start runs)`);
  try {
    log(`database ${database.name}: migrating and seeding ${TENANTS} tenants × ${KEYS_PER_TENANT} keys`);
    const setupApp = await compose(loadConfig(baseEnv), { logger: createLogger({ level: "error" }) });
    const { keys, gatewayToken } = await seed(setupApp, { tenants: TENANTS, keysPerTenant: KEYS_PER_TENANT, model: PAIR.model });
    await setupApp.stop();
    const keysFile = path.join(tmp, "keys.json");
    writeFileSync(keysFile, JSON.stringify(keys));
    log(`seeded in ${((Date.now() - started) / 1000).toFixed(0)} s`);

    const profileFlags = args.profile ? ["--cpu-prof", `--cpu-prof-dir=${path.join(ROOT, "bench/results/profiles")}`] : [];
    // The heap flags `npm start` and the Docker image give node (MAX_HEAP_MB), unless
    // --node-flags replaces them: the service is measured as it runs, and the floor the same
    // way so the two stay comparable.
    const nodeFlags = args["node-flags"] ? args["node-flags"].split(",") : [`--max-old-space-size=${process.env.MAX_HEAP_MB ?? "256"}`, "--max-semi-space-size=32", "--no-allocation-site-pretenuring"];
    const startService = (env: Record<string, string>) => () => startNode("src/main.ts", [], env, [...nodeFlags, ...profileFlags]);
    const startBare = (mode: "floor" | "peer" | "null", env: Record<string, string>) => () =>
      startNode("bench/bare-server.ts", [mode], env, mode === "floor" ? [...nodeFlags, ...profileFlags] : profileFlags);

    let serviceMax = 0;
    if (want("service") || want("open")) {
      const row = await measureTarget("service (GraphQL over HTTP)", startService(baseEnv), "graphql", "/graphql", gatewayToken, keysFile, {
        zipf: want("service"),
        lag: true,
        after: async (proc, uniform) => {
          serviceMax = uniform.pairsPerSec;
          if (!want("open")) return;
          for (const percent of [25, 50, 75]) {
            const rate = Math.max(1, Math.round((serviceMax * percent) / 100));
            const before = percent === 50 ? await scrapeHistogram(proc.port, "llm_ledger_commit_durable_seconds") : null;
            const { r, redisStalls } = await openPhase({ kind: "graphql", url: `http://127.0.0.1:${proc.port}/graphql`, token: gatewayToken, keysFile }, rate);
            log(`open loop ${percent}% = ${rate} pairs/s: reserve p99 ${fmtMs(r.reserve.p99)} ms (load ${load1()})`);
            if (before) {
              const after = await scrapeHistogram(proc.port, "llm_ledger_commit_durable_seconds");
              report.durableLagOpen = { p50: bucketPercentile(before, after, 50), p99: bucketPercentile(before, after, 99), commits: (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0) };
            }
            report.open.push({ percent, rate, r, redisStalls });
          }
        },
      });
      report.closed.push(row);
    }
    // The baselines at the service's open-loop rates: how much of its latency is the service's.
    const openBaselines = (label: "floor" | "null") => async (proc: Proc) => {
      for (const { percent, rate } of report.open) {
        const { r, redisStalls } = await openPhase({ kind: "bare", url: `http://127.0.0.1:${proc.port}/`, token: gatewayToken, keysFile }, rate);
        log(`${label}, open loop at ${rate} pairs/s: reserve p99 ${fmtMs(r.reserve.p99)} ms (load ${load1()})`);
        report.openBaselines.push({ label, percent, rate, r, redisStalls });
      }
    };
    if (want("floor")) {
      report.closed.push(
        await measureTarget("floor (same path, bare node:http)", startBare("floor", baseEnv), "bare", "/", gatewayToken, keysFile, { zipf: true, after: openBaselines("floor") }),
      );
    }
    if (want("open") && report.open.length) {
      log(`null server (no Redis, no Postgres): starting (load ${load1()})`);
      const nul = await startBare("null", baseEnv)();
      try {
        await openBaselines("null")(nul);
      } finally {
        await nul.stop();
      }
    }
    if (want("peer")) report.closed.push(await measureTarget("peer (rate-limiter-flexible)", startBare("peer", baseEnv), "bare", "/", gatewayToken, keysFile, { zipf: true }));
    if (args.cluster) {
      const svc = report.closed.find((r) => r.label.startsWith("service"));
      const flr = report.closed.find((r) => r.label.startsWith("floor"));
      const cs = await measureTarget("service on Redis Cluster", startService(clusterEnv), "graphql", "/graphql", gatewayToken, keysFile, { zipf: false });
      const cf = await measureTarget("floor on Redis Cluster", startBare("floor", clusterEnv), "bare", "/", gatewayToken, keysFile, { zipf: false });
      report.closed.push(cs, cf);
      if (svc?.uniform) report.cluster.push({ label: "service", single: svc.uniform.pairsPerSec, cluster: cs.uniform!.pairsPerSec });
      if (flr?.uniform) report.cluster.push({ label: "floor", single: flr.uniform.pairsPerSec, cluster: cf.uniform!.pairsPerSec });
    }
    if (want("ledger")) await ledgerIsolation(database.url);
    if (want("rollup")) await rollupCost(database.url);
  } finally {
    if (!args.keep) {
      await database.drop().catch((e) => log(`could not drop ${database.name}: ${e}`));
      if (redisDb === null) await cleanRedis(prefix, false).catch((e) => log(`could not clean Redis keys: ${e}`));
      else await flushRedisDb(redisDb, database.name).catch((e) => log(`could not empty Redis database ${redisDb}: ${e}`));
      if (args.cluster) await cleanRedis(prefix, true).catch((e) => log(`could not clean cluster keys: ${e}`));
    }
  }
  print(Date.now() - started);
}

function print(elapsedMs: number) {
  const out: string[] = [];
  out.push("");
  out.push(`LLM usage service benchmark — ${new Date().toISOString()}; ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), load average after the run ${loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  out.push(`${TENANTS} tenants × ${KEYS_PER_TENANT} keys; closed loop at concurrency ${CONCURRENCY}; ${PHASE_MS / 1000} s per phase after ${WARMUP_MS / 1000} s warm-up; service WEB_CONCURRENCY=${args.workers}${args.env ? `, ${args.env}` : ""}${args["node-flags"] ? `, node flags ${args["node-flags"]}` : ""}; load generator in its own process on the same cores`);
  out.push("");
  const rows: string[][] = [];
  for (const c of report.closed) {
    for (const [dist, r] of [["uniform", c.uniform], ["zipf", c.zipf]] as const) {
      if (!r) continue;
      rows.push([`${c.label}, ${dist}`, fmtInt(r.pairsPerSec), fmtMs(r.reserve.p50), fmtMs(r.reserve.p99), fmtMs(r.commit.p50), fmtMs(r.commit.p99), String(r.errors + r.denied)]);
    }
  }
  out.push(table(["reserve+commit pairs, closed loop", "pairs/s", "reserve p50 ms", "p99", "commit p50 ms", "p99", "errors+denials"], rows));
  const svc = report.closed.find((r) => r.label.startsWith("service ("));
  const flr = report.closed.find((r) => r.label.startsWith("floor ("));
  const peer = report.closed.find((r) => r.label.startsWith("peer"));
  const ratio = (a?: LoadResult | null, b?: LoadResult | null) => (a && b ? (a.pairsPerSec / b.pairsPerSec).toFixed(2) : "–");
  out.push("");
  out.push(`ratios (pairs/s): service ÷ floor = ${ratio(svc?.uniform, flr?.uniform)} uniform, ${ratio(svc?.zipf, flr?.zipf)} zipf (target ≥ 0.5); service ÷ peer = ${ratio(svc?.uniform, peer?.uniform)} uniform, ${ratio(svc?.zipf, peer?.zipf)} zipf`);
  if (report.open.length) {
    out.push("");
    out.push(
      table(
        ["open loop on the service (CO-corrected)", "pairs/s", "reserve p50 ms", "p99", "p99.9", "commit p50 ms", "p99", "errors"],
        report.open.map(({ percent, rate, r }) => [`${percent} % of max`, fmtInt(rate), fmtMs(r.reserve.p50), fmtMs(r.reserve.p99), fmtMs(r.reserve.p999), fmtMs(r.commit.p50), fmtMs(r.commit.p99), String(r.errors)]),
      ),
    );
    out.push("(target: reserve p99 ≤ 5 ms at 50 %)");
    if (report.openBaselines.length) {
      const base = (label: string, percent: number) => report.openBaselines.find((b) => b.label === label && b.percent === percent);
      const stalls = (x: RedisStalls | null | undefined) => (x ? (x.count ? `${x.count} (max ${fmtMs(x.maxMs)} ms)` : "0") : "–");
      out.push("");
      out.push(
        table(
          ["same rates, reserve ms (CO-corrected)", "pairs/s", "service p50", "p99", "floor p50", "p99", "null p50", "p99", "added p50 (service − floor)", "Redis stalls: service / floor"],
          report.open.map(({ percent, rate, r, redisStalls }) => {
            const f = base("floor", percent);
            const n = base("null", percent);
            return [
              `${percent} % of max`,
              fmtInt(rate),
              fmtMs(r.reserve.p50),
              fmtMs(r.reserve.p99),
              f ? fmtMs(f.r.reserve.p50) : "–",
              f ? fmtMs(f.r.reserve.p99) : "–",
              n ? fmtMs(n.r.reserve.p50) : "–",
              n ? fmtMs(n.r.reserve.p99) : "–",
              f ? fmtMs(r.reserve.p50 - f.r.reserve.p50) : "–",
              `${stalls(redisStalls)} / ${stalls(f?.redisStalls)}`,
            ];
          }),
        ),
      );
      const threshold = [...report.open, ...report.openBaselines].find((x) => x.redisStalls?.thresholdMs != null)?.redisStalls?.thresholdMs;
      out.push(
        `(floor: the same enforcement path without GraphQL; null: a server that answers at once, i.e. the load generator and loopback alone; Redis stalls: commands its slow log timed at ≥ ${threshold ?? "?"} ms inside Redis during the phase; target: added p50 < 1 ms)`,
      );
    }
    const lag = report.open.map(({ percent, r }) => (r.sendLag ? `${percent} %: p50 ${fmtMs(r.sendLag.p50)}, p99 ${fmtMs(r.sendLag.p99)} ms` : null)).filter(Boolean);
    if (lag.length) out.push(`of which the load generator's own send lag (scheduled → sent): ${lag.join("; ")}`);
  }
  out.push("");
  if (report.ledger) {
    const l = report.ledger;
    out.push(`ledger group commit in isolation: ${fmtInt(l.rowsPerSec)} commits/s (target ≥ 20,000), ${fmtInt(l.batches)} batches of ${fmtInt(l.avgBatch)} rows on average; append → durable p50 ${fmtMs(l.lag.p50)} ms, p99 ${fmtMs(l.lag.p99)} ms with 4,000 waiting`);
  }
  if (report.durableLag) {
    out.push(`commit → durable under the service's closed-loop load (service's own histogram, per commit, after priming, bucket bound): p50 ≤ ${fmtMs(report.durableLag.p50)} ms, p99 ≤ ${fmtMs(report.durableLag.p99)} ms over ${fmtInt(report.durableLag.commits)} commits (target p99 < 20 ms)`);
  }
  if (report.durableLagOpen) {
    out.push(`commit → durable at 50 % of the maximum (open loop): p50 ≤ ${fmtMs(report.durableLagOpen.p50)} ms, p99 ≤ ${fmtMs(report.durableLagOpen.p99)} ms over ${fmtInt(report.durableLagOpen.commits)} commits`);
  }
  if (report.rollup) {
    out.push("");
    out.push(table(["rollup", "rows", "time", ""], report.rollup));
    out.push("(targets: incremental < 1 s per 100k rows; full within 2× the plain GROUP BY)");
  } else if (report.rollupNote) out.push(report.rollupNote);
  if (report.cluster.length) {
    out.push("");
    out.push(table(["Redis Cluster (3 masters) vs single", "single pairs/s", "cluster pairs/s", "change"], report.cluster.map((c) => [c.label, fmtInt(c.single), fmtInt(c.cluster), `${(((c.cluster - c.single) / c.single) * 100).toFixed(0)} %`])));
  }
  out.push("");
  out.push(`peak RSS (VmHWM, process and workers): ${report.rss.map((r) => `${r.label} ${r.mb.toFixed(0)} MB${r.heap ? ` (${r.heap})` : ""}`).join("; ")} (target: service < 300 MB)`);
  out.push(`total bench time ${(elapsedMs / 1000).toFixed(0)} s`);
  for (const n of report.notes) out.push(n);
  process.stdout.write(out.join("\n") + "\n");
}

await main();
process.exit(0);
