import type { Logger } from "../../lib/logger.js";
import { DomainError, ErrorCode } from "../../lib/errors.js";
import type { PublishedQuotaEvent } from "./outbox.js";
import type { QuotaEventReader } from "./quota-events.service.js";

/**
 * This replica's view of the published event stream, feeding its GraphQL subscriptions.
 *
 * The relay publishes each batch on Redis pub/sub after committing it. Pub/sub is at most once
 * and batches from different relay runs may arrive out of order, so the feed does not trust it
 * for completeness: deliverySeq is gap-free, so a message that skips ahead of the last
 * dispatched seq proves something was missed, and the feed reads the missing range from
 * Postgres before going on. A periodic check of the highest seq catches a lost final message.
 * Every subscriber therefore sees its tenant's events in deliverySeq order, each once.
 */

/** Where published events arrive from (the Redis channel adapter). */
export interface QuotaEventSource {
  onEvents(listener: (events: PublishedQuotaEvent[]) => void): () => void;
}

export interface QuotaEventFeedOptions {
  source: QuotaEventSource;
  reader: QuotaEventReader;
  logger: Logger;
  /** How often a replica with subscribers checks Postgres for events pub/sub did not bring. */
  pollMs?: number;
  /** Events one subscriber may have waiting before it is cut off as too slow. */
  maxBuffered?: number;
}

const PAGE = 500;

export class QuotaEventFeed {
  private lastSeq: bigint | null = null;
  private readonly streams = new Set<QuotaEventStream>();
  private chain: Promise<void> = Promise.resolve();
  private unsubscribe: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly pollMs: number;
  private readonly maxBuffered: number;

  constructor(private readonly opts: QuotaEventFeedOptions) {
    this.pollMs = opts.pollMs ?? 2_000;
    this.maxBuffered = opts.maxBuffered ?? 10_000;
  }

  async start(): Promise<void> {
    this.lastSeq = await this.opts.reader.lastDeliverySeq();
    this.unsubscribe = this.opts.source.onEvents((events) => this.serially(() => this.receive(events)));
    this.timer = setInterval(() => {
      if (this.streams.size > 0) this.serially(() => this.catchUp());
    }, this.pollMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    if (this.timer) clearInterval(this.timer);
    for (const s of [...this.streams]) await s.return();
    await this.chain;
  }

  /**
   * A stream of `tenantId`'s events: first the published ones after `after` (when given), then
   * live ones, in deliverySeq order without gaps or repeats between the two.
   */
  open(q: { tenantId: string; after: bigint | null }): QuotaEventStream {
    if (this.lastSeq === null) throw new Error("QuotaEventFeed.open before start");
    const stream = new QuotaEventStream({
      tenantId: q.tenantId,
      // Live events are those dispatched from now on, all above the current position; the
      // replay covers (after, position], so the two meet exactly.
      replay: q.after === null ? null : { after: q.after, upTo: this.lastSeq },
      reader: this.opts.reader,
      maxBuffered: this.maxBuffered,
      onClose: (s) => this.streams.delete(s),
    });
    this.streams.add(stream);
    return stream;
  }

  /** Subscribers on this replica (for metrics and tests). */
  get subscriberCount(): number {
    return this.streams.size;
  }

  private serially(step: () => Promise<void>): void {
    this.chain = this.chain.then(step).catch((err) => {
      // The position did not move past what failed; the next message or poll retries it.
      this.opts.logger.warn({ err: (err as Error).message }, "quota event feed could not read missed events; will retry");
    });
  }

  private async receive(events: PublishedQuotaEvent[]): Promise<void> {
    const sorted = [...events].sort((a, b) => (a.deliverySeq < b.deliverySeq ? -1 : a.deliverySeq > b.deliverySeq ? 1 : 0));
    for (const e of sorted) {
      const last = this.lastSeq!;
      if (e.deliverySeq <= last) continue;
      if (e.deliverySeq > last + 1n) await this.fill(e.deliverySeq - 1n);
      if (e.deliverySeq === this.lastSeq! + 1n) this.dispatch(e);
    }
  }

  private async catchUp(): Promise<void> {
    const max = await this.opts.reader.lastDeliverySeq();
    if (max > this.lastSeq!) await this.fill(max);
  }

  /** Dispatches everything published up to `upTo` that this replica has not dispatched yet. */
  private async fill(upTo: bigint): Promise<void> {
    while (this.lastSeq! < upTo) {
      if (this.streams.size === 0) {
        // Nobody listens: nothing to deliver, only the position to keep.
        this.lastSeq = upTo;
        return;
      }
      const page = await this.opts.reader.published({ tenantId: null, after: this.lastSeq!, upTo, limit: PAGE });
      if (page.length === 0) {
        // Cannot happen while deliverySeq is gap-free and rows are kept; never spin on it.
        this.opts.logger.error({ from: this.lastSeq!.toString(), upTo: upTo.toString() }, "published events missing from the outbox");
        this.lastSeq = upTo;
        return;
      }
      for (const e of page) if (e.deliverySeq === this.lastSeq! + 1n) this.dispatch(e);
    }
  }

  private dispatch(e: PublishedQuotaEvent): void {
    this.lastSeq = e.deliverySeq;
    for (const s of this.streams) s.offer(e);
  }
}

interface StreamOptions {
  tenantId: string;
  replay: { after: bigint; upTo: bigint } | null;
  reader: QuotaEventReader;
  maxBuffered: number;
  onClose: (s: QuotaEventStream) => void;
}

/**
 * One subscriber's events. A plain iterator rather than an async generator: `return()` must end
 * a subscriber that is waiting for the next event at once (an async generator suspended in an
 * `await` only sees `return()` after that await resolves, i.e. after the next event), or an
 * unsubscribed socket would keep its listener until the tenant's next event.
 */
export class QuotaEventStream implements AsyncIterableIterator<PublishedQuotaEvent> {
  private readonly live: PublishedQuotaEvent[] = [];
  private replayed: PublishedQuotaEvent[] = [];
  private replay: { after: bigint; upTo: bigint } | null;
  private waiter: { resolve: (r: IteratorResult<PublishedQuotaEvent>) => void; reject: (e: unknown) => void } | null = null;
  private closed = false;
  private failure: Error | null = null;

  constructor(private readonly o: StreamOptions) {
    this.replay = o.replay && o.replay.after < o.replay.upTo ? { ...o.replay } : null;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Called by the feed with every dispatched event, in deliverySeq order. */
  offer(e: PublishedQuotaEvent): void {
    if (this.closed || this.failure !== null || e.tenantId !== this.o.tenantId) return;
    if (this.waiter && this.replay === null && this.replayed.length === 0) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ value: e, done: false });
      return;
    }
    this.live.push(e);
    if (this.live.length > this.o.maxBuffered) {
      this.fail(
        new DomainError(
          ErrorCode.BACKEND_UNAVAILABLE,
          `subscriber fell more than ${this.o.maxBuffered} events behind and was cut off; resubscribe with \`after\` set to the cursor of the last event received`,
          { retryable: true },
        ),
      );
    }
  }

  async next(): Promise<IteratorResult<PublishedQuotaEvent>> {
    while (this.replayed.length === 0 && this.replay !== null && !this.closed) {
      const r = this.replay;
      const page = await this.o.reader.published({ tenantId: this.o.tenantId, after: r.after, upTo: r.upTo, limit: PAGE });
      if (page.length < PAGE) this.replay = null;
      else r.after = page[page.length - 1]!.deliverySeq;
      this.replayed = page;
    }
    if (this.closed) return { value: undefined, done: true };
    if (this.replayed.length > 0) return { value: this.replayed.shift()!, done: false };
    if (this.live.length > 0) return { value: this.live.shift()!, done: false };
    if (this.failure) {
      const f = this.failure;
      this.close();
      throw f;
    }
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  async return(): Promise<IteratorResult<PublishedQuotaEvent>> {
    this.close();
    return { value: undefined, done: true };
  }

  async throw(err?: unknown): Promise<IteratorResult<PublishedQuotaEvent>> {
    this.close();
    throw err;
  }

  private fail(err: Error): void {
    this.failure = err;
    this.live.length = 0;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      this.close();
      w.reject(err);
    }
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.live.length = 0;
    this.replayed = [];
    this.o.onClose(this);
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ value: undefined, done: true });
    }
  }
}
