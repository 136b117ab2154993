import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { EnforcementMetrics } from "../domain/enforcement/enforcement.service.js";
import { JobMetrics } from "./job-metrics.js";

/**
 * Every Prometheus series the service exports, on one registry built by the composition root
 * (never the prom-client global: two apps in one test process must not share counters).
 * Label values come from closed sets (enum values, schema field names, fixed op names), never
 * from callers or tenants, so the series count stays bounded whatever the traffic.
 */

/** Latency buckets for the hot path: sub-millisecond resolution where the targets are. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const BATCH_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];
const JOB_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900];

export type RedisErrorKind = "timeout" | "connection" | "reply" | "late";

export interface OutboxLag {
  unpublished: number;
  /** Seconds since the oldest unpublished event occurred; 0 when none is waiting. */
  oldestAgeSeconds: number;
}

export interface ServiceMetricsOptions {
  /** Process-level series (RSS, heap, event-loop lag, GC): on in the service, off in unit tests. */
  defaultMetrics?: boolean;
  /** Read on every scrape; absent when there is no outbox to watch. */
  outboxLag?: () => Promise<OutboxLag>;
  /** How long a scrape waits for the outbox query before reporting NaN (default 2 s). */
  outboxLagTimeoutMs?: number;
}

export class ServiceMetrics {
  readonly registry = new Registry();
  readonly jobs: JobMetrics;

  private readonly decisions: Counter<"outcome" | "reason">;
  private readonly failOpens: Counter;
  private readonly backendUnavailable: Counter<"op">;
  private readonly redisErrors: Counter<"op" | "kind">;
  private readonly redisConnectionErrors: Counter<"client">;
  readonly operationDuration: Histogram<"operation" | "type" | "status">;
  private readonly ledgerBatchSize: Histogram;
  private readonly ledgerDurableSeconds: Histogram;

  // Bound children: the hot path increments without building a label key per call.
  private readonly decisionChildren = new Map<string, Counter.Internal>();
  private readonly redisErrorChildren = new Map<string, Counter.Internal>();

  constructor(opts: ServiceMetricsOptions = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry });

    this.decisions = new Counter({
      name: "llm_enforcement_decisions_total",
      help: "checkAndReserve decisions by outcome (ALLOW, ALLOW_DEGRADED, DENY) and reason (NONE when allowed plainly)",
      labelNames: ["outcome", "reason"],
      registers,
    });
    this.failOpens = new Counter({
      name: "llm_enforcement_fail_open_total",
      help: "Requests allowed without checking their rate limits because Redis was unavailable and the tier fails open",
      registers,
    });
    this.backendUnavailable = new Counter({
      name: "llm_enforcement_backend_unavailable_total",
      help: "Hot-path operations that met an unavailable or late limit store (reserve: failed closed or open; commit: settled from the archive)",
      labelNames: ["op"],
      registers,
    });
    this.redisErrors = new Counter({
      name: "llm_redis_errors_total",
      help: "Failed Redis calls of the counter store by operation and kind (timeout, connection, reply, late = script ran past its deadline)",
      labelNames: ["op", "kind"],
      registers,
    });
    this.redisConnectionErrors = new Counter({
      name: "llm_redis_connection_errors_total",
      help: "Error events of the Redis connections (hot-path client, subscriber)",
      labelNames: ["client"],
      registers,
    });
    this.operationDuration = new Histogram({
      name: "llm_graphql_operation_duration_seconds",
      help: "GraphQL operation latency inside Apollo (parse to response), by root field (or 'multiple'), operation type and status",
      labelNames: ["operation", "type", "status"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.ledgerBatchSize = new Histogram({
      name: "llm_ledger_batch_size",
      help: "Rows per group-committed ledger INSERT",
      buckets: BATCH_BUCKETS,
      registers,
    });
    this.ledgerDurableSeconds = new Histogram({
      name: "llm_ledger_commit_durable_seconds",
      help: "Time from a commit's ledger row being enqueued to its batch being durable in Postgres, per commit",
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.jobs = new JobMetrics(this.registry, JOB_BUCKETS);

    if (opts.outboxLag) {
      const read = opts.outboxLag;
      const timeoutMs = opts.outboxLagTimeoutMs ?? 2_000;
      const unknown: OutboxLag = { unpublished: NaN, oldestAgeSeconds: NaN };
      // One query per scrape feeds both gauges: the first collect starts it, the second reuses it.
      // A failing or hung database reads as NaN: the rest of the scrape (Redis errors, decisions)
      // is what an operator needs most during such an outage, so it must not fail with it.
      let pending: Promise<OutboxLag> | null = null;
      const lag = () => {
        if (!pending) {
          let timer: NodeJS.Timeout | undefined;
          const timeout = new Promise<OutboxLag>((resolve) => (timer = setTimeout(() => resolve(unknown), timeoutMs)));
          pending = Promise.race([read().catch(() => unknown), timeout]).finally(() => {
            clearTimeout(timer);
            setImmediate(() => (pending = null));
          });
        }
        return pending;
      };
      new Gauge({
        name: "llm_outbox_unpublished_events",
        help: "Outbox events not yet published to subscribers and webhooks",
        registers,
        async collect() {
          this.set((await lag()).unpublished);
        },
      });
      new Gauge({
        name: "llm_outbox_oldest_unpublished_age_seconds",
        help: "Age of the oldest unpublished outbox event (0 when none waits): the relay's lag",
        registers,
        async collect() {
          this.set((await lag()).oldestAgeSeconds);
        },
      });
    }
  }

  /** The enforcement service's port, backed by these counters. */
  readonly enforcement: EnforcementMetrics = {
    decision: (outcome, reason) => {
      const k = `${outcome}|${reason ?? "NONE"}`;
      let c = this.decisionChildren.get(k);
      if (!c) {
        c = this.decisions.labels(outcome, reason ?? "NONE");
        this.decisionChildren.set(k, c);
      }
      c.inc();
    },
    failOpen: () => this.failOpens.inc(),
    backendError: (op) => this.backendUnavailable.labels(op).inc(),
  };

  redisError(op: string, kind: RedisErrorKind): void {
    const k = `${op}|${kind}`;
    let c = this.redisErrorChildren.get(k);
    if (!c) {
      c = this.redisErrors.labels(op, kind);
      this.redisErrorChildren.set(k, c);
    }
    c.inc();
  }

  redisConnectionError(client: string): void {
    this.redisConnectionErrors.labels(client).inc();
  }

  /** The ledger writer's onBatch hook. */
  ledgerBatch = (size: number): void => {
    this.ledgerBatchSize.observe(size);
  };

  /** The ledger writer's onDurable hook: one observation per commit. */
  ledgerDurable = (ms: number): void => {
    this.ledgerDurableSeconds.observe(ms / 1000);
  };

  private renderer: (() => Promise<{ contentType: string; body: string }>) | null = null;

  /** Serve the whole process group's series (WEB_CONCURRENCY > 1) instead of this process's. */
  renderWith(renderer: () => Promise<{ contentType: string; body: string }>): void {
    this.renderer = renderer;
  }

  /** The text exposition, for /metrics. */
  async render(): Promise<{ contentType: string; body: string }> {
    if (this.renderer) return this.renderer();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
