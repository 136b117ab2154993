import { describe, expect, it } from "vitest";
import { pino } from "pino";
import { QuotaEventFeed, type QuotaEventSource } from "../../src/domain/events/event-feed.js";
import type { PublishedQuotaEvent } from "../../src/domain/events/outbox.js";
import type { QuotaEventReader } from "../../src/domain/events/quota-events.service.js";

/**
 * The replica feed in isolation: a fake pub/sub source and an in-memory "outbox", so the
 * orderings pub/sub can produce (lost, late, duplicated, out-of-order batches) are exact.
 */
const T1 = "ten_AAAAAAAAAAAAAAAA";
const T2 = "ten_BBBBBBBBBBBBBBBB";

function ev(seq: number, tenantId = T1): PublishedQuotaEvent {
  return {
    id: `evt_${String(seq).padStart(16, "0")}`,
    seq: BigInt(seq),
    deliverySeq: BigInt(seq),
    type: "threshold.crossed",
    tenantId,
    scope: "tenant",
    period: null,
    payload: { seq },
    occurredAt: new Date(0),
    publishedAt: new Date(0),
  };
}

function harness(initial: PublishedQuotaEvent[] = []) {
  const log: PublishedQuotaEvent[] = [...initial];
  let listener: (e: PublishedQuotaEvent[]) => void = () => {};
  const reads: Array<[bigint, bigint | null | undefined]> = [];
  const source: QuotaEventSource = {
    onEvents: (l) => {
      listener = l;
      return () => (listener = () => {});
    },
  };
  const reader: QuotaEventReader = {
    async published(q) {
      reads.push([q.after, q.upTo]);
      return log
        .filter((e) => e.deliverySeq > q.after && (q.upTo == null || e.deliverySeq <= q.upTo) && (q.tenantId === null || e.tenantId === q.tenantId))
        .slice(0, q.limit);
    },
    async lastDeliverySeq() {
      return log.length === 0 ? 0n : log[log.length - 1]!.deliverySeq;
    },
    async tenantExists() {
      return true;
    },
  };
  /** The relay committed these (they are in the outbox) and maybe published them. */
  const commit = (...events: PublishedQuotaEvent[]) => log.push(...events);
  const feed = new QuotaEventFeed({ source, reader, logger: pino({ level: "silent" }), pollMs: 50, maxBuffered: 5 });
  return { feed, commit, deliver: (events: PublishedQuotaEvent[]) => listener(events), reads, log };
}

async function take(it: AsyncIterator<PublishedQuotaEvent>, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = await Promise.race([it.next(), new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`only ${out.length} of ${n} events`)), 2_000))]);
    if (r.done) break;
    out.push(Number(r.value.deliverySeq));
  }
  return out;
}

describe("QuotaEventFeed", () => {
  it("dispatches in order, skips duplicates, and reads a gap (a lost message) from the outbox", async () => {
    const h = harness();
    await h.feed.start();
    const s = h.feed.open({ tenantId: T1, after: null });
    h.commit(ev(1), ev(2), ev(3), ev(4), ev(5));
    h.deliver([ev(1)]);
    h.deliver([ev(1)]); // duplicate
    // 2 and 3 were published in a message this replica never got.
    h.deliver([ev(5), ev(4)]); // a batch out of order
    expect(await take(s, 5)).toEqual([1, 2, 3, 4, 5]);
    expect(h.reads.some(([after]) => after === 1n)).toBe(true);
    await h.feed.stop();
  });

  it("filters by tenant and finds events whose message was lost entirely (periodic check)", async () => {
    const h = harness();
    await h.feed.start();
    const s1 = h.feed.open({ tenantId: T1, after: null });
    const s2 = h.feed.open({ tenantId: T2, after: null });
    h.commit(ev(1, T2), ev(2, T1), ev(3, T2)); // no pub/sub message at all
    expect(await take(s1, 1)).toEqual([2]);
    expect(await take(s2, 2)).toEqual([1, 3]);
    await h.feed.stop();
  });

  it("replays after a cursor, then joins the live stream exactly where the replay ended", async () => {
    const h = harness([ev(1), ev(2, T2), ev(3), ev(4)]);
    await h.feed.start();
    const s = h.feed.open({ tenantId: T1, after: 1n });
    h.commit(ev(5), ev(6, T2), ev(7));
    h.deliver([ev(5), ev(6, T2), ev(7)]);
    expect(await take(s, 4)).toEqual([3, 4, 5, 7]);
    await h.feed.stop();
  });

  it("return() ends a subscriber waiting for its next event at once and detaches it", async () => {
    const h = harness();
    await h.feed.start();
    const s = h.feed.open({ tenantId: T1, after: null });
    const pending = s.next();
    expect(h.feed.subscriberCount).toBe(1);
    await s.return();
    expect(await pending).toEqual({ value: undefined, done: true });
    expect(h.feed.subscriberCount).toBe(0);
    await h.feed.stop();
  });

  it("cuts off a subscriber that falls too far behind, telling it to resume by cursor", async () => {
    const h = harness();
    await h.feed.start();
    const s = h.feed.open({ tenantId: T1, after: null });
    const batch = [1, 2, 3, 4, 5, 6, 7].map((n) => ev(n));
    h.commit(...batch);
    h.deliver(batch);
    await new Promise((r) => setTimeout(r, 20));
    await expect(s.next()).rejects.toThrow(/resubscribe with `after`/);
    expect(h.feed.subscriberCount).toBe(0);
    await h.feed.stop();
  });
});
