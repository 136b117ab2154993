import type { Clock } from "../../lib/clock.js";
import type { Logger } from "../../lib/logger.js";
import type { PublishedQuotaEvent } from "./outbox.js";
import type { WebhookSecretBox } from "./webhook-secrets.js";
import { webhookBody, webhookHeaders, webhookSignature } from "./webhook-message.js";
import { webhookRetryDelayMs } from "./webhook-retry.js";

/**
 * One webhook attempt, start to recorded result. Delivery is at least once: the attempt is
 * claimed (its delivery becomes due again when the claim's deadline passes), sent, and only then
 * recorded. A worker that dies between the receiver's 2xx and the record leaves the delivery
 * due, so it is sent again, with the same webhook-id; receivers deduplicate on that id.
 */

export interface ClaimedDelivery {
  deliveryId: string;
  endpointId: string;
  url: string;
  /** 1-based; counts interrupted attempts too. */
  attempt: number;
  /** Identifies this claim: a late result of a claim taken over does not reschedule. */
  leaseToken: string;
  startedAt: Date;
  deadlineAt: Date;
  secretSealed: string;
  /** Set while a rotation's overlap lasts. */
  previousSecretSealed: string | null;
  event: PublishedQuotaEvent;
}

export interface AttemptResult {
  /** The receiver's HTTP status, or null when there was no response (refused, timeout, network). */
  statusCode: number | null;
  error: string | null;
  durationMs: number;
}

/** Storage port. Implemented by src/storage/postgres/webhooks.repository.ts. */
export interface WebhookDeliveryStore {
  /** Due PENDING deliveries of ACTIVE endpoints, each claimed until now + leaseMs with its attempt logged as STARTED. */
  claimDue(q: { limit: number; leaseMs: number; leaseToken: string }): Promise<ClaimedDelivery[]>;
  succeeded(c: ClaimedDelivery, r: AttemptResult): Promise<void>;
  /** `retryInMs` null: that was the last attempt, the delivery is FAILED. */
  failed(c: ClaimedDelivery, r: AttemptResult, retryInMs: number | null): Promise<void>;
  /** 410 Gone: the endpoint is DISABLED, this delivery FAILED, its other pending ones CANCELLED. */
  gone(c: ClaimedDelivery, r: AttemptResult): Promise<void>;
}

/** Sends one request to the target (HTTP adapter in src/jobs/webhook-sender.ts). */
export interface WebhookTransport {
  post(url: URL, headers: Record<string, string>, body: string, timeoutMs: number): Promise<AttemptResult>;
}

export type AttemptOutcome = "SUCCEEDED" | "FAILED" | "GONE";

export interface WebhookDelivererOptions {
  store: WebhookDeliveryStore;
  transport: WebhookTransport;
  secrets: WebhookSecretBox;
  clock: Clock;
  timeoutMs: number;
  logger: Logger;
  /** [0, 1) source for retry jitter; injectable for tests. */
  random?: () => number;
}

export class WebhookDeliverer {
  constructor(private readonly opts: WebhookDelivererOptions) {}

  async attempt(c: ClaimedDelivery): Promise<AttemptOutcome> {
    const { store } = this.opts;
    let secrets: string[];
    try {
      secrets = [this.opts.secrets.open(c.secretSealed, c.endpointId)];
      if (c.previousSecretSealed) secrets.push(this.opts.secrets.open(c.previousSecretSealed, c.endpointId));
    } catch {
      // Nothing can be signed until the key is back; keep retrying on the schedule, visibly.
      const r = { statusCode: null, error: "the signing secret cannot be decrypted (was WEBHOOK_SECRET_KEY changed?)", durationMs: 0 };
      await store.failed(c, r, webhookRetryDelayMs(c.attempt, this.opts.random));
      return "FAILED";
    }
    const body = webhookBody(c.event);
    const at = this.opts.clock.now();
    const headers = webhookHeaders(c.event.id, at, webhookSignature(secrets, c.event.id, at, body));
    const r = await this.opts.transport.post(new URL(c.url), headers, body, this.opts.timeoutMs);
    if (r.statusCode !== null && r.statusCode >= 200 && r.statusCode < 300) {
      await store.succeeded(c, r);
      return "SUCCEEDED";
    }
    if (r.statusCode === 410) {
      this.opts.logger.warn({ endpointId: c.endpointId }, "webhook receiver answered 410 Gone; endpoint disabled");
      await store.gone(c, r);
      return "GONE";
    }
    await store.failed(c, r, webhookRetryDelayMs(c.attempt, this.opts.random));
    return "FAILED";
  }
}
