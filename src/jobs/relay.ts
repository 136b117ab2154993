import type { Logger } from "../lib/logger.js";
import type { OutboxRelayStore, PublishedQuotaEvent, QuotaEventPublisher } from "../domain/events/outbox.js";
import { WorkLoop } from "./relay-loop.js";

/**
 * The outbox relay: moves committed events out to subscribers and webhooks.
 *
 * It runs in every worker process (WORKERS_ENABLED). Only one at a time does anything: each
 * batch is a Postgres transaction that first takes a transaction-scoped advisory lock, and the
 * others skip their turn when it is taken. A lock in Postgres rather than Redis because it guards
 * Postgres writes (the deliverySeq numbering) and dies with the transaction: a relay that stalls
 * or crashes cannot leave a lock behind, nor keep writing after losing a lease it did not notice
 * expiring. (BullMQ adds nothing here: there is no job to queue, only a table to drain.)
 *
 * Per batch: assign deliverySeq + mark published + create webhook deliveries (one transaction),
 * then PUBLISH the batch on Redis for every replica's subscriptions. A crash between the commit
 * and the PUBLISH loses only the live notification; feeds recover it from Postgres (gap check
 * and poll), and webhooks never depended on it.
 */
export interface OutboxRelayOptions {
  store: OutboxRelayStore;
  publisher: QuotaEventPublisher;
  logger: Logger;
  /** Called when a batch created webhook deliveries (wakes this process's dispatcher). */
  onDeliveries?: () => void;
  /** Poll interval when idle; events wait at most about this long plus one batch. */
  idleMs?: number;
  batchSize?: number;
}

export class OutboxRelay {
  private readonly loop: WorkLoop;
  private readonly batchSize: number;

  constructor(private readonly opts: OutboxRelayOptions) {
    this.batchSize = opts.batchSize ?? 500;
    this.loop = new WorkLoop("outbox-relay", () => this.relayOnce().then((n) => n >= this.batchSize), {
      idleMs: opts.idleMs ?? 200,
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

  /** One batch; returns how many events it published (0 when idle or another relay holds the lock). */
  async relayOnce(): Promise<number> {
    if (!(await this.opts.store.hasUnpublished())) return 0;
    const batch = await this.opts.store.publishBatch(this.batchSize);
    if (batch === null || batch.events.length === 0) return 0;
    if (batch.deliveries > 0) this.opts.onDeliveries?.();
    await this.fanOut(batch.events);
    return batch.events.length;
  }

  private async fanOut(events: PublishedQuotaEvent[]): Promise<void> {
    try {
      await this.opts.publisher.publish(events);
    } catch (err) {
      this.opts.logger.warn(
        { err: (err as Error).message, from: events[0]!.deliverySeq.toString(), to: events[events.length - 1]!.deliverySeq.toString() },
        "could not publish quota events on Redis; subscribers will read them from Postgres",
      );
    }
  }
}
