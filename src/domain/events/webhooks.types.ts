import type { QuotaEventType } from "./types.js";

/** Webhook endpoints, deliveries and attempts: the domain model (storage maps rows to these). */

export type WebhookEndpointStatus = "ACTIVE" | "DISABLED" | "DELETED";

export interface WebhookEndpoint {
  id: string; // wh_…
  /** Null: every tenant's events (ADMIN only). */
  tenantId: string | null;
  url: string;
  /** Null: every event type. */
  eventTypes: QuotaEventType[] | null;
  status: WebhookEndpointStatus;
  disabledReason: string | null;
  secretRotatedAt: Date | null;
  /** Until then the previous secret signs too (a second signature in webhook-signature). */
  previousSecretExpiresAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

export type WebhookDeliveryStatus = "PENDING" | "DELIVERED" | "FAILED" | "CANCELLED";

/** STARTED with its deadline passed means the worker stopped during the attempt. */
export type WebhookAttemptOutcome = "STARTED" | "SUCCEEDED" | "FAILED" | "GONE";

export interface WebhookAttempt {
  attempt: number;
  startedAt: Date;
  deadlineAt: Date;
  finishedAt: Date | null;
  durationMs: number | null;
  statusCode: number | null;
  error: string | null;
  outcome: WebhookAttemptOutcome;
  nextAttemptAt: Date | null;
}

export interface WebhookDelivery {
  id: string; // whd_…
  seq: bigint;
  endpointId: string;
  eventId: string;
  eventType: string;
  status: WebhookDeliveryStatus;
  attemptCount: number;
  /** When the next attempt is due; null unless PENDING. */
  nextAttemptAt: Date | null;
  lastStatusCode: number | null;
  lastError: string | null;
  deliveredAt: Date | null;
  createdAt: Date;
  attempts: WebhookAttempt[];
}
