/**
 * Queue names, job names and the fixed ids of the repeatable jobs' schedulers.
 *
 * Every queue lives under the prefix `<REDIS_KEY_PREFIX>{llm}`: the `{llm}` hash tag puts all of
 * a queue's keys (BullMQ's scripts touch several at once) in one Redis Cluster slot. Scheduler
 * ids are fixed, so any number of processes upserting them at start leave one scheduler each,
 * and BullMQ derives each run's job id from the scheduler id and the run's time: a run is one job.
 */
export const QUEUE_HASH_TAG = "{llm}";

export function queuePrefix(keyPrefix: string): string {
  return `${keyPrefix}${QUEUE_HASH_TAG}`;
}

export const QUEUES = {
  rollup: "usage-rollup",
  quota: "quota-lifecycle",
  reservations: "reservations",
  reconcile: "counter-reconcile",
} as const;
export type QueueKey = keyof typeof QUEUES;

export const JOBS = {
  rollupIncremental: "rollup.incremental",
  rollupRebuild: "rollup.rebuild",
  quotaEvaluate: "quota.evaluate",
  quotaResetScan: "quota.reset-scan",
  quotaOpenScan: "quota.open-scan",
  reservationSweep: "reservations.sweep",
  reconcile: "counters.reconcile",
} as const;

/** One scheduler per repeatable job; ids must not change between releases (they are upserted). */
export const SCHEDULERS = [
  { id: "rollup-incremental", queue: "rollup", job: JOBS.rollupIncremental, interval: "rollupMs" },
  { id: "quota-reset-scan", queue: "quota", job: JOBS.quotaResetScan, interval: "resetScanMs" },
  { id: "quota-open-scan", queue: "quota", job: JOBS.quotaOpenScan, interval: "openScanMs" },
  { id: "reservation-sweep", queue: "reservations", job: JOBS.reservationSweep, interval: "sweepMs" },
  { id: "counter-reconcile", queue: "reconcile", job: JOBS.reconcile, interval: "reconcileMs" },
] as const satisfies ReadonlyArray<{ id: string; queue: QueueKey; job: string; interval: string }>;

export interface JobIntervals {
  /** Incremental rollup of new ledger rows. */
  rollupMs: number;
  /** Tenants whose local day ended: period reset, lifting rungs and resolving thresholds. */
  resetScanMs: number;
  /** Safety net for tenants holding thresholds or rungs (limit changes normally trigger directly). */
  openScanMs: number;
  /** Expired reservations: return their holds, write EXPIRY ledger rows. */
  sweepMs: number;
  /** Redis quota counters against the ledger. */
  reconcileMs: number;
}

export const DEFAULT_INTERVALS: JobIntervals = {
  rollupMs: 5_000,
  resetScanMs: 15_000,
  openScanMs: 300_000,
  sweepMs: 5_000,
  reconcileMs: 300_000,
};

export interface EvaluateJobData {
  tenantId: string;
}
export interface RebuildJobData {
  tenantId: string | null;
}
export interface ReconcileJobData {
  tenantId?: string;
}
