import { randomUUID } from "node:crypto";
import type { Logger } from "../lib/logger.js";
import type { WebhookDeliverer, WebhookDeliveryStore } from "../domain/events/webhook-delivery.js";
import { WorkLoop } from "./relay-loop.js";

/**
 * Runs due webhook attempts in every worker process. The schedule lives in Postgres with the
 * deliveries (next_attempt_at), not in a BullMQ queue: the attempt log and the delivery state
 * must be in Postgres anyway to be queryable, and one copy of the schedule cannot disagree with
 * itself (a Redis flush cannot lose a retry). Workers claim with SKIP LOCKED, so several
 * processes share the work without double-sending, and a claim's deadline is its crash recovery.
 */
export interface WebhookDispatcherOptions {
  store: WebhookDeliveryStore;
  deliverer: WebhookDeliverer;
  logger: Logger;
  /** One attempt's time limit (WEBHOOK_TIMEOUT_MS). */
  timeoutMs: number;
  /** Attempts in flight at once in this process. */
  concurrency?: number;
  idleMs?: number;
}

/**
 * How long a claim lasts beyond the attempt's own timeout: time to record the result. A worker
 * slower than this (a long GC pause, a stalled database) may see its delivery sent again by
 * another worker; that is a duplicate with the same webhook-id, never a loss.
 */
export const CLAIM_MARGIN_MS = 5_000;

export class WebhookDispatcher {
  private readonly loop: WorkLoop;
  private readonly concurrency: number;

  constructor(private readonly opts: WebhookDispatcherOptions) {
    this.concurrency = opts.concurrency ?? 16;
    this.loop = new WorkLoop("webhook-dispatcher", () => this.dispatchOnce().then((n) => n > 0), {
      idleMs: opts.idleMs ?? 500,
      logger: opts.logger,
    });
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  kick(): void {
    this.loop.kick();
  }

  /** Claims up to `concurrency` due deliveries and attempts them in parallel; returns how many. */
  async dispatchOnce(): Promise<number> {
    const claimed = await this.opts.store.claimDue({
      limit: this.concurrency,
      leaseMs: this.opts.timeoutMs + CLAIM_MARGIN_MS,
      leaseToken: randomUUID(),
    });
    await Promise.all(
      claimed.map((c) =>
        this.opts.deliverer.attempt(c).catch((err) => {
          // Recording failed (database down): the claim's deadline makes the delivery due again.
          this.opts.logger.warn({ err: (err as Error).message, deliveryId: c.deliveryId }, "webhook attempt could not be recorded");
        }),
      ),
    );
    return claimed.length;
  }
}
