import type { NewQuotaEvent } from "../events/types.js";
import type { Priority } from "../tenancy/types.js";
import type { AuditEntry } from "./audit.js";
import type { Anomaly, AnomalyKind, KeyBaseline, KeyBucket } from "./anomaly.js";
import type { BreakerRecord, BreakerState } from "./breaker.js";

/** What the abuse controls need from storage. Adapters: src/storage/redis/abuse-store.ts, src/storage/postgres/abuse.repository.ts. */

/** One flush of buffered usage for one tenant (all of it goes to Redis in one script call). */
export interface UsageBatch {
  /** Committed spend per time bucket. */
  spend: Array<{ bucket: number; costNano: bigint }>;
  /** Per key and bucket: requests seen, prompt tokens, the largest prompt and the fingerprints. */
  keys: Array<{ keyId: string; bucket: number; requests: number; inputTokens: number; maxInputTokens: number; fingerprints: string[] }>;
}

/** A key an anomaly action degraded, as every replica caches it. */
export interface DegradedKey {
  keyId: string;
  tenantId: string;
  until: number;
  maxOutputTokens: number;
  priority: Priority;
  anomalyId: string;
  reason: string;
}

/** The breaker states replicas cache: non-CLOSED tenant breakers with their trickle. */
export interface BreakerIndexEntry {
  state: Exclude<BreakerState, "CLOSED">;
  halfOpenOneIn: number;
}

export interface AbuseStore {
  // ── usage observed on the hot path (flushed every second or so) ──
  recordUsage(tenantId: string, batch: UsageBatch, opts: { keepMs: number }): Promise<void>;
  /** Tenants with usage since `sinceMs`, plus every tenant whose breaker is not closed. */
  activeTenants(sinceMs: number): Promise<string[]>;

  // ── breakers ──
  loadBreaker(tenantId: string): Promise<{ record: BreakerRecord | null; spend: Map<number, bigint> }>;
  /**
   * Stores `next` if the stored version is still `expectedVersion` (null = no record yet),
   * sets or clears the tenant's deny flag to match `next.state`, and drops spend buckets below
   * `trimBelow`. False when someone else wrote first (the caller re-reads and re-decides).
   */
  applyBreaker(tenantId: string, expectedVersion: number | null, next: BreakerRecord, trimBelow: number | null): Promise<boolean>;
  loadGlobalBreaker(): Promise<BreakerRecord | null>;
  applyGlobalBreaker(expectedVersion: number | null, next: BreakerRecord): Promise<boolean>;
  /** Updates the replicas' view of one tenant (null = closed) and tells them to refresh. */
  indexBreaker(tenantId: string, entry: BreakerIndexEntry | null): Promise<void>;
  breakerIndex(): Promise<Map<string, BreakerIndexEntry>>;

  // ── per-key statistics and baselines ──
  activeKeys(tenantId: string, sinceBucket: number): Promise<string[]>;
  loadKeyWindow(
    tenantId: string,
    keyId: string,
    fromBucket: number,
    toBucket: number,
  ): Promise<{ buckets: Map<number, KeyBucket>; windowVariants: number; baseline: KeyBaseline | null }>;
  saveKeyBaseline(tenantId: string, keyId: string, baseline: KeyBaseline, trimBelow: number, keepMs: number): Promise<void>;
  /** True the first time in `ttlMs` for (tenant, key, kind): one anomaly per episode, across replicas. */
  claimAnomaly(tenantId: string, keyId: string, kind: AnomalyKind, ttlMs: number): Promise<boolean>;

  // ── degraded keys ──
  setDegraded(d: DegradedKey): Promise<void>;
  degradedKeys(): Promise<DegradedKey[]>;
  removeDegraded(keyIds: string[]): Promise<void>;

  /** Tells every replica to re-read the cached breaker/degradation state now. */
  publishStateChanged(): Promise<void>;
  /** A lease so only one evaluator runs at a time; false when another holds it. */
  tryLease(name: string, ttlMs: number): Promise<string | null>;
  releaseLease(name: string, token: string): Promise<void>;
}

export interface AuthThrottleStore {
  /** ms the scope is still blocked for (0 = not blocked). */
  blockedMs(scope: "source" | "prefix", id: string): Promise<number>;
  /** Counts one failure in the current window; at `max` failures the scope is blocked for `blockMs`. */
  recordFailure(
    scope: "source" | "prefix",
    id: string,
    opts: { windowMs: number; max: number; blockMs: number },
  ): Promise<{ failures: number; blockedMs: number; tripped: boolean }>;
}

export interface AnomalyQuery {
  tenantId: string | null;
  kind: AnomalyKind | null;
  from: Date | null;
  to: Date | null;
}

/** Postgres: the durable side (events, audit, anomalies), each write one transaction. */
export interface AbuseRepository {
  /** The breaker event and its audit entry, together. */
  recordBreakerTransition(event: NewQuotaEvent, audit: AuditEntry): Promise<void>;
  /** An audit entry alone (an operator action that changed no state). */
  recordAudit(audit: AuditEntry): Promise<void>;
  /** The anomaly with its event and audit entry, together. */
  recordAnomaly(anomaly: Anomaly, event: NewQuotaEvent, audit: AuditEntry): Promise<void>;
  setAnomalyActionResult(id: string, result: string): Promise<void>;
  /** Newest first, at most `first + 1` after the cursor (detectedAt, id). */
  anomalies(q: AnomalyQuery, page: { first: number; after: { at: Date; id: string } | null }): Promise<Anomaly[]>;
  /** A tenant's ledger spend recorded in [from, to), and when the first such row was. */
  ledgerSpend(tenantId: string, from: Date, to: Date): Promise<{ costNano: bigint; firstAt: Date | null }>;
  /** The tenant of a key id, for anomalies found before the key was verified. */
  tenantOfKey(keyId: string): Promise<string | null>;
}
