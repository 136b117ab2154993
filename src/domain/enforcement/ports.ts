import type { ApiKey } from "../tenancy/types.js";
import type { QuotaCheck, QuotaHash, ReservePlan } from "./plan.js";

/** What the enforcement service needs from storage. Adapters live in src/storage. */

export type KeyVerdict =
  | { ok: true; key: ApiKey }
  | { ok: false; reason: "KEY_INVALID" | "KEY_REVOKED" | "KEY_EXPIRED"; keyId: string | null };

export interface KeyVerifier {
  verify(presented: string, now: Date): Promise<KeyVerdict>;
}

/** What the reserve script reports, parsed. Indexes are 0-based into the plan's lists. */
export interface RawReserveResult {
  allowed: boolean;
  variant: number;
  nowMs: number;
  expiresAtMs: number;
  fails: Array<{ kind: "plan" | "brk" | "b" | "c" | "q"; index: number; waitMs: number }>;
  quotaRemaining: bigint[];
  bucketRemaining: number[];
  bucketFullMs: number[];
  concurrencyRemaining: number[];
}

/** A reservation as archived in Postgres, behind the hot path. */
export interface ArchivedReservation extends StoredReservation {
  failOpen: boolean;
}

/**
 * Postgres copy of every reservation, written behind the hot path (batched, not awaited), so a
 * commit can still settle a reservation whose Redis record was lost, and fail-open decisions
 * (taken while Redis is down) can be committed at all. Usage is never dropped for lack of it.
 */
export interface ReservationArchive {
  /** Queue for a batched insert; never delays the caller. */
  record(r: ArchivedReservation): void;
  /** Insert now (fail-open: Redis is down, this is the only copy). */
  recordNow(r: ArchivedReservation): Promise<void>;
  find(id: string): Promise<ArchivedReservation | null>;
  flush(): Promise<void>;
}

export type ReserveOutcome =
  | { kind: "result"; result: RawReserveResult }
  | { kind: "replay"; result: RawReserveResult; rendered: string | null }
  | { kind: "conflict" }
  | { kind: "seed"; missing: number[] }
  /** The script ran after `deadlineMs` (Redis was stalled): it changed nothing. */
  | { kind: "late" };

/** Stored on the reservation; the model and prices come from the ladder variant chosen. */
export interface ReservationRecordFields {
  tenantId: string;
  keyId: string;
  subject: string | null;
  route: string;
  day: string;
  month: string;
}

export type ReservationState = "R" | "C" | "X" | "E";

export interface StoredReservation extends ReservationRecordFields {
  id: string;
  model: string;
  inputNanoPerToken: bigint;
  outputNanoPerToken: bigint;
  state: ReservationState;
  inputTokens: number;
  outputTokens: number;
  costNano: bigint;
  reservedAt: Date;
  expiresAt: Date;
  /** Opaque: which counters settling must touch (written by the store at reserve time). */
  settleKeys: string;
  /** Quota/budget limits in force at reserve time (index into the reservation's 4 counters). */
  quotaLimits: Array<Pick<QuotaCheck, "quotaIndex" | "metric" | "limit" | "dimension" | "scope" | "resetAt">>;
}

export interface QuotaCounterState {
  tokens: bigint;
  heldTokens: bigint;
  costNano: bigint;
  heldCostNano: bigint;
}

export type SettleOutcome =
  | { kind: "notFound" }
  | { kind: "applied"; late: boolean; quotas: Array<QuotaCounterState | null> }
  | { kind: "replay"; inputTokens: number; outputTokens: number; costNano: bigint; status: string; quotas: Array<QuotaCounterState | null> }
  | { kind: "conflict"; inputTokens: number; outputTokens: number; status: string }
  | { kind: "released" }
  | { kind: "expired" }
  | { kind: "noop"; state: string };

export interface CounterStore {
  /**
   * True when `err` means the store could not be reached or answered too late (fail closed,
   * retryable); false for faults such as a script error, which must surface as internal errors.
   */
  isUnavailable(err: unknown): boolean;
  /** Which counters a reservation under `plan` holds: stored with it, used to settle it. */
  settleKeysFor(plan: ReservePlan): string;
  reserve(
    plan: ReservePlan,
    reservationId: string,
    opts: {
      idempotency: { keyHash: string; fingerprint: string } | null;
      critical: boolean;
      record: ReservationRecordFields;
      settleKeys: string;
      /** Redis-clock ms after which the script must do nothing (0 = none). */
      deadlineMs: number;
    },
  ): Promise<ReserveOutcome>;
  /** Put a lost reservation record back (state E: its holds are gone) unless one exists. */
  restore(r: StoredReservation): Promise<void>;
  /** Create missing counter hashes from ledger totals (set-if-absent). */
  seed(tenantId: string, hashes: Array<{ hash: QuotaHash; tokens: bigint; costNano: bigint }>): Promise<void>;
  storeRendered(tenantId: string, keyHash: string, json: string): Promise<void>;
  loadReservation(tenantId: string, reservationId: string): Promise<StoredReservation | null>;
  settle(
    op: "commit" | "release" | "expire",
    r: StoredReservation,
    figures?: { inputTokens: number; outputTokens: number; costNano: bigint; status: string },
  ): Promise<SettleOutcome>;
  /** Reservation ids of `tenantId` whose expiry time has passed. */
  dueReservations(tenantId: string, nowMs: number, limit: number): Promise<string[]>;
  /** Tenants that may have reservations to sweep. */
  sweepTenants(): Promise<string[]>;
  registerSweepTenant(tenantId: string): Promise<void>;
}
