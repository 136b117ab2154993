import type { Actor, LimitDimension, Priority } from "../tenancy/types.js";

/** What a gateway asks before a model call. Validated by `validateReserveRequest`. */
export interface ReserveRequest {
  apiKey: string;
  route: string;
  model: string;
  inputTokens: number;
  maxOutputTokens: number | null;
  idempotencyKey: string | null;
  subject: string | null;
  priority: Priority;
  tools: string[];
  /** The end client's address as the gateway saw it: failed-auth throttling and audit. */
  clientAddress?: string | null;
  /** A hash of the prompt's shape (the gateway's choice): storms of variants are an anomaly. */
  promptFingerprint?: string | null;
}

export type DecisionOutcome = "ALLOW" | "ALLOW_DEGRADED" | "DENY";

export type DecisionReason =
  | "KEY_INVALID"
  | "KEY_REVOKED"
  | "KEY_EXPIRED"
  | "TENANT_SUSPENDED"
  | "ROUTE_FORBIDDEN"
  | "MODEL_FORBIDDEN"
  | "TOOL_FORBIDDEN"
  | "PROMPT_TOO_LARGE"
  | "RATE_LIMITED"
  | "CONCURRENCY_LIMITED"
  | "QUOTA_EXCEEDED"
  | "BUDGET_EXCEEDED"
  | "CIRCUIT_OPEN"
  | "BACKEND_UNAVAILABLE"
  | "DEGRADED";

/** One limit that applied to the request, for `x-ratelimit-*` headers. Big numbers as strings. */
export interface LimitStatus {
  dimension: LimitDimension;
  scope: string;
  limit: string;
  remaining: string;
  resetAt: Date | null;
}

export interface Directives {
  model: string;
  maxInputTokens: number | null;
  maxOutputTokens: number;
  priority: Priority;
}

export interface Reservation {
  id: string;
  expiresAt: Date;
  inputTokens: number;
  outputTokens: number;
  costNano: bigint;
}

/**
 * The answer to checkAndReserve. Denials are values, never exceptions: the discriminant
 * `allowed` tells a caller whether `reservation` and `directives` are there.
 */
export type Decision =
  | {
      allowed: true;
      outcome: "ALLOW" | "ALLOW_DEGRADED";
      reason: "DEGRADED" | null;
      message: string | null;
      retryAfterMs: null;
      reservation: Reservation;
      directives: Directives;
      limits: LimitStatus[];
      tenantId: string;
      keyId: string;
    }
  | {
      allowed: false;
      outcome: "DENY";
      reason: Exclude<DecisionReason, "DEGRADED">;
      message: string;
      retryAfterMs: number | null;
      reservation: null;
      directives: null;
      limits: LimitStatus[];
      tenantId: string | null;
      keyId: string | null;
    };

export type CommitStatus = "SUCCEEDED" | "FAILED" | "CANCELLED";

export interface CommitRequest {
  reservationId: string;
  inputTokens: number;
  outputTokens: number;
  status: CommitStatus;
}

export interface CommitResult {
  reservationId: string;
  inputTokens: number;
  outputTokens: number;
  costNano: bigint;
  overage: boolean;
  replayed: boolean;
  limits: LimitStatus[];
}

export interface ReleaseResult {
  reservationId: string;
  released: boolean;
}

/** A ledger row as the domain sees it (storage maps it to usage_ledger). */
export interface LedgerEntry {
  reservationId: string;
  entry: "COMMIT" | "EXPIRY";
  tenantId: string;
  keyId: string;
  subject: string | null;
  route: string;
  model: string;
  status: CommitStatus | "EXPIRED";
  inputTokens: bigint;
  outputTokens: bigint;
  reservedInputTokens: bigint;
  reservedOutputTokens: bigint;
  costNano: bigint;
  overage: boolean;
  periodDay: string;
  periodMonth: string;
  reservedAt: Date;
}

/** Durable, batched appends to the ledger; resolves only when the row is committed. */
export interface LedgerWriter {
  append(entry: LedgerEntry): Promise<void>;
  /** Ledger totals of one scope for re-seeding lost counters. */
  totals(q: { tenantId: string; keyId: string | null; period: { day: string } | { month: string } }): Promise<{ tokens: bigint; costNano: bigint }>;
  /** The COMMIT row of a reservation, if one was written. */
  findCommit(reservationId: string): Promise<{ inputTokens: bigint; outputTokens: bigint; costNano: bigint; status: string; overage: boolean } | null>;
  flush(): Promise<void>;
}

// ── optional hooks of the abuse controls (src/domain/abuse); none of them may block a decision ──

/**
 * Failed-authentication throttling. A client address that keeps presenting bad keys is refused
 * (RATE_LIMITED) before its key is even looked up; a key prefix that keeps failing answers
 * RATE_LIMITED instead of KEY_INVALID, but its right secret still passes, so nobody can lock a
 * key's owner out by guessing at it. Implementations never throw: an unreachable store reads
 * as "not blocked" (the reserve itself fails closed anyway).
 */
export interface AuthThrottle {
  /** How many ms `source` is still blocked for; 0 = not blocked. */
  sourceBlockedMs(source: string): Promise<number>;
  /** Records a failed authentication; returns how many ms the caller is now blocked for (0 = not). */
  failed(f: { presentedKey: string; source: string | null; reason: "KEY_INVALID" | "KEY_REVOKED" | "KEY_EXPIRED" }): Promise<number>;
}

/** Tighter directives for a key an anomaly action degraded. */
export interface KeyDegradation {
  maxOutputTokens: number;
  priority: Priority;
  reason: string;
}

/** Sees every decision and every commit after the fact (aggregated audit, spend, anomaly statistics). */
export interface EnforcementObserver {
  decided(e: { req: ReserveRequest; actor: Actor; decision: Decision }): void;
  committed(e: { tenantId: string; keyId: string; costNano: bigint }): void;
}
