import { Queue, Worker, type Job, type JobsOptions } from "bullmq";
import type { Logger } from "../lib/logger.js";
import { createQueueRedis, type RedisClient, type RedisSettings } from "../storage/redis/client.js";
import type { RollupService } from "../domain/usage/rollup.service.js";
import type { QuotaLifecycleService } from "../domain/usage/quota-lifecycle.service.js";
import type { ReconciliationService } from "../domain/usage/reconciliation.service.js";
import { assertNoEviction } from "./redis-policy.js";
import {
  DEFAULT_INTERVALS,
  JOBS,
  QUEUES,
  SCHEDULERS,
  queuePrefix,
  type EvaluateJobData,
  type JobIntervals,
  type QueueKey,
  type RebuildJobData,
  type ReconcileJobData,
} from "./queues.js";

export interface JobSystemOptions {
  /** Where the queues live; the system opens its own connections (never the hot path's). */
  redis: RedisSettings;
  logger: Logger;
  rollups: RollupService;
  quota: QuotaLifecycleService;
  reconciliation: ReconciliationService;
  /** Returns expired reservations' holds and writes their EXPIRY ledger rows. */
  sweepExpired: () => Promise<number>;
  intervals?: Partial<JobIntervals>;
  /** Commits of one tenant within this window share one threshold evaluation. */
  evaluateDebounceMs?: number;
  /**
   * Operator changes (cache invalidations): a raised limit or a new tier may resolve thresholds
   * or lift rungs with no new usage, so workers queue an evaluation of the tenants concerned.
   */
  operatorChanges?: { onInvalidate(listener: (m: { kind: string; id: string }) => void): () => void };
  /** Told each job run's outcome (metrics). */
  onJobFinished?: (queue: string, job: string, durationMs: number, ok: boolean) => void;
}

/** Finished jobs kept for inspection: enough to see recent runs, bounded for memory. */
const KEEP_COMPLETED = { age: 3_600, count: 1_000 };
const KEEP_FAILED = { age: 7 * 86_400, count: 5_000 };
/** Fire-and-forget enqueues in flight; beyond this the scans catch up instead. */
const MAX_PENDING_ENQUEUES = 1_000;
/** Workers refresh their heartbeat this often; it expires after the TTL if they stop. */
const HEARTBEAT_EVERY_MS = 10_000;
const HEARTBEAT_TTL_MS = 30_000;
const ALIVE_CACHE_MS = 5_000;
/**
 * A busy tenant commits many times a second; one evaluation per second each is plenty for
 * notifications and keeps the lifecycle's queries per tenant bounded.
 */
const DEFAULT_EVALUATE_DEBOUNCE_MS = 1_000;

/**
 * The BullMQ side of the quota lifecycle: queues (every process, so API replicas can enqueue),
 * and, where workers are enabled, the job schedulers and the workers that run rollups,
 * threshold/degradation evaluations, period resets, the reservation sweeper and reconciliation.
 * Processors only call domain services; the exactly-once guarantees live in Postgres (the
 * rollup watermark, the threshold state keys), so a job that runs twice changes nothing twice.
 */
export class JobSystem {
  private connection: RedisClient | null = null;
  private readonly queues = new Map<QueueKey, Queue>();
  private readonly workers: Worker[] = [];
  private readonly intervals: JobIntervals;
  private readonly debounceMs: number;
  private readonly lastEnqueued = new Map<string, number>();
  private pendingEnqueues = 0;
  private closed = false;
  private unsubscribe: (() => void) | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private alive: { checkedAt: number; value: boolean; pending: Promise<boolean> | null } = { checkedAt: 0, value: false, pending: null };
  private readonly heartbeatKey: string;
  readonly prefix: string;

  constructor(private readonly o: JobSystemOptions) {
    this.intervals = { ...DEFAULT_INTERVALS, ...o.intervals };
    this.debounceMs = o.evaluateDebounceMs ?? DEFAULT_EVALUATE_DEBOUNCE_MS;
    this.prefix = queuePrefix(o.redis.keyPrefix);
    // Same hash tag as the queues: one slot on Redis Cluster.
    this.heartbeatKey = `${this.prefix}:workers-alive`;
  }

  /** Opens the queue connection, refuses an evicting Redis, creates the queues. */
  async start(): Promise<void> {
    if (this.connection) return;
    const connection = createQueueRedis(this.o.redis);
    connection.on("error", (err: Error) => this.o.logger.warn({ err: err.message }, "job queue redis error"));
    this.connection = connection;
    await assertNoEviction(connection, this.o.logger);
    for (const key of Object.keys(QUEUES) as QueueKey[]) {
      const q = new Queue(QUEUES[key], {
        connection,
        prefix: this.prefix,
        defaultJobOptions: { removeOnComplete: KEEP_COMPLETED, removeOnFail: KEEP_FAILED },
      });
      q.on("error", (err) => this.o.logger.warn({ err: err.message, queue: QUEUES[key] }, "job queue error"));
      this.queues.set(key, q);
    }
  }

  queue(key: QueueKey): Queue {
    const q = this.queues.get(key);
    if (!q) throw new Error("the job system is not started");
    return q;
  }

  /** Upserts the schedulers (fixed ids: one each however many processes do this) and starts workers. */
  async startWorkers(opts: { concurrency?: Partial<Record<QueueKey, number>> } = {}): Promise<void> {
    if (!this.connection) await this.start();
    if (this.workers.length > 0) return;
    for (const s of SCHEDULERS) {
      await this.queue(s.queue).upsertJobScheduler(
        s.id,
        { every: this.intervals[s.interval] },
        // A missed run is replaced by the next one: no retries for scheduled runs.
        { name: s.job, data: {}, opts: { attempts: 1, removeOnComplete: { count: 100 }, removeOnFail: { count: 1_000 } } },
      );
    }
    const concurrency = { rollup: 1, quota: 4, reservations: 1, reconcile: 1, ...opts.concurrency };
    for (const key of Object.keys(QUEUES) as QueueKey[]) {
      const worker = new Worker(QUEUES[key], (job) => this.timed(key, job), {
        connection: this.connection!,
        prefix: this.prefix,
        concurrency: concurrency[key],
      });
      worker.on("failed", (job, err) =>
        this.o.logger.warn({ queue: QUEUES[key], job: job?.name, jobId: job?.id, attempts: job?.attemptsMade, err: err.message }, "job failed"),
      );
      worker.on("error", (err) => this.o.logger.warn({ queue: QUEUES[key], err: err.message }, "job worker error"));
      this.workers.push(worker);
    }
    await this.beat();
    this.heartbeat = setInterval(() => {
      this.beat().catch((err) => this.o.logger.warn({ err: (err as Error).message }, "worker heartbeat failed"));
    }, HEARTBEAT_EVERY_MS);
    this.heartbeat.unref();
    this.unsubscribe =
      this.o.operatorChanges?.onInvalidate((m) => {
        if (m.kind !== "tier" && m.kind !== "tenant" && m.kind !== "apiKey") return;
        this.o.quota
          .tenantsAffectedBy({ kind: m.kind, id: m.id })
          .then((ids) => ids.forEach((t) => this.enqueueEvaluation(t)))
          .catch((err) => this.o.logger.warn({ err: (err as Error).message }, "could not queue quota evaluations after an operator change"));
      }) ?? null;
    this.o.logger.info({ prefix: this.prefix, schedulers: SCHEDULERS.map((s) => s.id) }, "job workers started");
  }

  get workersRunning(): boolean {
    return this.workers.length > 0;
  }

  private async timed(queue: QueueKey, job: Job): Promise<unknown> {
    const started = performance.now();
    let ok = false;
    try {
      const out = await this.process(queue, job);
      ok = true;
      return out;
    } finally {
      try {
        this.o.onJobFinished?.(QUEUES[queue], job.name, performance.now() - started, ok);
      } catch (err) {
        this.o.logger.warn({ err: (err as Error).message }, "onJobFinished failed");
      }
    }
  }

  private async process(queue: QueueKey, job: Job): Promise<unknown> {
    switch (job.name) {
      case JOBS.rollupIncremental: {
        const run = await this.o.rollups.runIncremental({ onProgress: (p) => job.updateProgress(p) });
        // Tenants with new usage get their thresholds and rungs checked (commits usually got
        // there first; this covers commits whose own trigger was lost).
        for (const t of run.tenants) this.enqueueEvaluation(t);
        return { batches: run.batches, rows: run.rows, events: run.events, watermark: run.position.watermark.toString(), tenants: run.tenants.length };
      }
      case JOBS.rollupRebuild: {
        const data = job.data as RebuildJobData;
        await job.updateProgress({ phase: "rebuilding", tenantId: data.tenantId });
        const r = await this.o.rollups.rebuild(data.tenantId ?? null);
        await job.updateProgress({ phase: "done", tenantId: data.tenantId, percent: 100 });
        return { dailyRows: r.dailyRows, monthlyRows: r.monthlyRows, watermark: r.watermark.toString() };
      }
      case JOBS.quotaEvaluate: {
        const r = await this.o.quota.evaluateTenant((job.data as EvaluateJobData).tenantId);
        return { events: r.events };
      }
      case JOBS.quotaResetScan:
        return this.evaluateAll(job, await this.o.quota.tenantsDueForReset());
      case JOBS.quotaOpenScan:
        return this.evaluateAll(job, await this.o.quota.tenantsWithOpenState());
      case JOBS.reservationSweep:
        return { expired: await this.o.sweepExpired() };
      case JOBS.reconcile: {
        const data = job.data as ReconcileJobData;
        return this.o.reconciliation.run({ tenantId: data.tenantId, onProgress: (done, total) => job.updateProgress({ done, total }) });
      }
      default:
        throw new Error(`unknown job ${job.name} on queue ${QUEUES[queue]}`);
    }
  }

  private async evaluateAll(job: Job, tenantIds: string[]): Promise<unknown> {
    let events = 0;
    let failed = 0;
    for (let i = 0; i < tenantIds.length; i++) {
      try {
        events += (await this.o.quota.evaluateTenant(tenantIds[i]!)).events.length;
      } catch (err) {
        // One tenant's failure must not starve the others; the next scan retries it.
        failed++;
        this.o.logger.warn({ tenantId: tenantIds[i], err: (err as Error).message }, "quota evaluation failed");
      }
      if ((i + 1) % 50 === 0 || i === tenantIds.length - 1) await job.updateProgress({ done: i + 1, total: tenantIds.length });
    }
    return { tenants: tenantIds.length, events, failed };
  }

  /**
   * Called by the enforcement service after a commit is durable: must not block or throw.
   * One evaluation job per tenant per debounce window, delayed to the window's end so it sees
   * every commit of the window; its id is derived from the window, so processes that see
   * commits of the same tenant in the same window enqueue the same job once.
   */
  notifyCommitted(info: { tenantId: string }): void {
    this.enqueueEvaluation(info.tenantId);
  }

  enqueueEvaluation(tenantId: string): void {
    const queue = this.queues.get("quota");
    if (this.closed || !queue) return;
    const now = Date.now();
    const windowIdx = Math.floor(now / this.debounceMs);
    if (this.lastEnqueued.get(tenantId) === windowIdx) return;
    if (this.pendingEnqueues >= MAX_PENDING_ENQUEUES) return;
    this.lastEnqueued.set(tenantId, windowIdx);
    if (this.lastEnqueued.size > 100_000) this.lastEnqueued.clear();
    this.pendingEnqueues++;
    const opts: JobsOptions = {
      jobId: `evaluate-${tenantId}-${windowIdx}`,
      delay: (windowIdx + 1) * this.debounceMs - now,
      attempts: 5,
      backoff: { type: "exponential", delay: 500 },
    };
    this.workersAlive()
      .then((alive) => (alive ? queue.add(JOBS.quotaEvaluate, { tenantId } satisfies EvaluateJobData, opts) : undefined))
      .catch((err) => this.o.logger.warn({ tenantId, err: (err as Error).message }, "could not enqueue a quota evaluation; the scans will catch up"))
      .finally(() => this.pendingEnqueues--);
  }

  /**
   * Whether any process runs the workers (their heartbeat key is fresh). With none, triggered
   * evaluations are not queued: nobody would run them, and when workers start, the rollup of
   * the backlog queues an evaluation of every tenant with new usage, so nothing is missed.
   */
  private workersAlive(): Promise<boolean> {
    if (this.workers.length > 0) return Promise.resolve(true);
    const now = Date.now();
    if (now - this.alive.checkedAt < ALIVE_CACHE_MS) return Promise.resolve(this.alive.value);
    if (!this.alive.pending) {
      this.alive.pending = this.connection!.exists(this.heartbeatKey)
        .then((n) => {
          this.alive = { checkedAt: Date.now(), value: n > 0, pending: null };
          return n > 0;
        })
        .finally(() => {
          this.alive.pending = null;
        });
    }
    return this.alive.pending;
  }

  private async beat(): Promise<void> {
    await this.connection!.set(this.heartbeatKey, String(Date.now()), "PX", HEARTBEAT_TTL_MS);
  }


  /** Full rebuild of the rollups (all tenants, or one) from the ledger. `requestKey` dedupes retries. */
  async enqueueRebuild(tenantId: string | null, requestKey: string = String(Date.now())): Promise<string> {
    const job = await this.queue("rollup").add(JOBS.rollupRebuild, { tenantId } satisfies RebuildJobData, {
      jobId: `rebuild-${tenantId ?? "all"}-${requestKey}`,
      attempts: 3,
      backoff: { type: "exponential", delay: 5_000 },
    });
    return job.id!;
  }

  async enqueueRollup(requestKey: string = String(Date.now())): Promise<string> {
    const job = await this.queue("rollup").add(JOBS.rollupIncremental, {}, { jobId: `rollup-${requestKey}`, attempts: 3 });
    return job.id!;
  }

  async enqueueReconcile(tenantId?: string, requestKey: string = String(Date.now())): Promise<string> {
    const job = await this.queue("reconcile").add(JOBS.reconcile, { tenantId } satisfies ReconcileJobData, {
      jobId: `reconcile-${tenantId ?? "all"}-${requestKey}`,
      attempts: 1,
    });
    return job.id!;
  }

  /** Stops the workers (finishing the jobs they run), then the queues and the connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe?.();
    if (this.heartbeat) clearInterval(this.heartbeat);
    await Promise.all(this.workers.map((w) => w.close().catch((err) => this.o.logger.warn({ err }, "worker close failed"))));
    await Promise.all([...this.queues.values()].map((q) => q.close().catch((err) => this.o.logger.warn({ err }, "queue close failed"))));
    if (this.connection) {
      await this.connection.quit().catch(() => this.connection?.disconnect());
    }
  }
}
