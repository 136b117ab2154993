/**
 * Quota events: what billing systems and tenants are told. Every event has a stable id
 * (receivers deduplicate on it), a type, the tenant, the scope and period it concerns, the
 * figures, and when it happened. Delivery is at least once.
 */
export type QuotaEventType =
  | "threshold.crossed"
  | "threshold.resolved"
  | "degradation.applied"
  | "degradation.lifted"
  | "budget.exhausted"
  | "reservation.expired"
  | "usage.overage"
  | "period.rolled"
  | "key.revoked"
  | "breaker.opened"
  | "breaker.closed"
  | "anomaly.detected";

export interface QuotaEvent {
  id: string; // evt_…
  /** Insertion order in the outbox (identity). Not the replay cursor: ids can commit out of order, so replay pages by the relay-assigned delivery_seq. */
  seq: bigint;
  type: QuotaEventType;
  tenantId: string | null;
  scope: string | null;
  period: string | null;
  payload: Record<string, unknown>;
  occurredAt: Date;
}

export type NewQuotaEvent = Omit<QuotaEvent, "id" | "seq" | "occurredAt"> & { id?: string; occurredAt?: Date };
