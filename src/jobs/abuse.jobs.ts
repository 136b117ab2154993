import { performance } from "node:perf_hooks";
import { Queue, Worker } from "bullmq";
import type { Logger } from "../lib/logger.js";
import { createQueueRedis, type RedisClient, type RedisSettings } from "../storage/redis/client.js";
import type { AbuseMonitor } from "../domain/abuse/monitor.js";
import { queuePrefix } from "./queues.js";

export const ABUSE_QUEUE = "abuse";
export const ABUSE_EVALUATE_JOB = "abuse.evaluate";
const SCHEDULER_ID = "abuse-evaluate";

export interface AbuseJobsOptions {
  redis: RedisSettings;
  monitor: AbuseMonitor;
  intervalMs: number;
  logger: Logger;
  onJobFinished?: (queue: string, job: string, ms: number, ok: boolean) => void;
}

/**
 * The abuse controls' background work on BullMQ: one repeatable job that evaluates every
 * active tenant's spend breaker and its keys' anomalies, then the global breaker (see
 * AbuseMonitor). Same queue prefix and hash tag as the other queues; its own connection
 * (BullMQ needs maxRetriesPerRequest null, never the hot path's). The scheduler id is fixed,
 * so every worker process upserting it leaves one schedule; a missed run is simply replaced
 * by the next, and the monitor's lease keeps two runs from overlapping.
 */
export class AbuseJobs {
  private connection: RedisClient | null = null;
  private queue: Queue | null = null;
  private worker: Worker | null = null;

  constructor(private readonly o: AbuseJobsOptions) {}

  async start(): Promise<void> {
    if (this.worker) return;
    const connection = createQueueRedis(this.o.redis);
    connection.on("error", (err: Error) => this.o.logger.warn({ err: err.message }, "abuse job redis error"));
    this.connection = connection;
    const prefix = queuePrefix(this.o.redis.keyPrefix);
    this.queue = new Queue(ABUSE_QUEUE, { connection, prefix });
    this.queue.on("error", (err) => this.o.logger.warn({ err: err.message }, "abuse queue error"));
    await this.queue.upsertJobScheduler(
      SCHEDULER_ID,
      { every: this.o.intervalMs },
      { name: ABUSE_EVALUATE_JOB, data: {}, opts: { attempts: 1, removeOnComplete: { count: 100 }, removeOnFail: { count: 1_000 } } },
    );
    this.worker = new Worker(
      ABUSE_QUEUE,
      async () => {
        const started = performance.now();
        let ok = false;
        try {
          const run = await this.o.monitor.evaluate();
          ok = run.failures === 0;
          return run;
        } finally {
          this.o.onJobFinished?.(ABUSE_QUEUE, ABUSE_EVALUATE_JOB, performance.now() - started, ok);
        }
      },
      { connection, prefix, concurrency: 1 },
    );
    this.worker.on("failed", (job, err) => this.o.logger.warn({ job: job?.name, err: err.message }, "abuse evaluation failed"));
    this.worker.on("error", (err) => this.o.logger.warn({ err: err.message }, "abuse worker error"));
  }

  async close(): Promise<void> {
    await this.worker?.close();
    await this.queue?.close();
    this.connection?.disconnect();
    this.worker = null;
    this.queue = null;
    this.connection = null;
  }
}
