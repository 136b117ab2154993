import { Counter, Histogram, type Registry } from "prom-client";

/**
 * Durations and failures of background jobs, for whoever runs them: BullMQ workers
 * (`instrumentWorker`) and plain timers (`time`). `queue` and `job` are code-chosen names
 * (queue name, job name), never ids.
 */
export interface WorkerLike {
  readonly name: string;
  on(event: "completed", listener: (job: JobLike) => void): unknown;
  on(event: "failed", listener: (job: JobLike | undefined, err: Error) => void): unknown;
  off(event: "completed", listener: (job: JobLike) => void): unknown;
  off(event: "failed", listener: (job: JobLike | undefined, err: Error) => void): unknown;
}

/** The fields of a BullMQ Job this needs (ms timestamps set by BullMQ). */
export interface JobLike {
  name: string;
  processedOn?: number;
  finishedOn?: number;
}

export class JobMetrics {
  private readonly duration: Histogram<"queue" | "job" | "status">;
  private readonly failures: Counter<"queue" | "job">;

  constructor(registry: Registry, buckets: number[]) {
    this.duration = new Histogram({
      name: "llm_job_duration_seconds",
      help: "Background job run time by queue, job name and status (completed, failed)",
      labelNames: ["queue", "job", "status"],
      buckets,
      registers: [registry],
    });
    this.failures = new Counter({
      name: "llm_job_failures_total",
      help: "Background job runs that failed (each attempt counts)",
      labelNames: ["queue", "job"],
      registers: [registry],
    });
  }

  record(queue: string, job: string, durationMs: number, ok: boolean): void {
    this.duration.labels(queue, job, ok ? "completed" : "failed").observe(Math.max(0, durationMs) / 1000);
    if (!ok) this.failures.labels(queue, job).inc();
  }

  /** Runs `fn`, recording its duration and whether it threw (the error is rethrown). */
  async time<T>(queue: string, job: string, fn: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      const out = await fn();
      this.record(queue, job, performance.now() - started, true);
      return out;
    } catch (err) {
      this.record(queue, job, performance.now() - started, false);
      throw err;
    }
  }

  /**
   * Records every completed and failed job of a BullMQ Worker from its events (processedOn →
   * finishedOn, as BullMQ measured them). Returns a function that stops listening.
   */
  instrumentWorker(worker: WorkerLike): () => void {
    const span = (job: JobLike | undefined) =>
      job?.processedOn !== undefined && job.finishedOn !== undefined ? job.finishedOn - job.processedOn : 0;
    const onCompleted = (job: JobLike) => this.record(worker.name, job.name, span(job), true);
    const onFailed = (job: JobLike | undefined, _err: Error) => this.record(worker.name, job?.name ?? "unknown", span(job), false);
    worker.on("completed", onCompleted);
    worker.on("failed", onFailed);
    return () => {
      worker.off("completed", onCompleted);
      worker.off("failed", onFailed);
    };
  }
}
