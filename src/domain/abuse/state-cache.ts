import type { Clock } from "../../lib/clock.js";
import type { Logger } from "../../lib/logger.js";
import type { KeyDegradation } from "../enforcement/types.js";
import type { BreakerRecord } from "./breaker.js";
import type { BreakerIndexEntry, DegradedKey } from "./ports.js";

/** Where the cache reads from (the Redis abuse store). */
export interface AbuseStateSource {
  loadGlobalBreaker(): Promise<BreakerRecord | null>;
  breakerIndex(): Promise<Map<string, BreakerIndexEntry>>;
  degradedKeys(): Promise<DegradedKey[]>;
}

export interface AbuseStateCacheOptions {
  source: AbuseStateSource;
  clock: Clock;
  logger: Logger;
  /** The global breaker's trickle while half-open. */
  globalHalfOpenOneIn: number;
}

/**
 * What every replica keeps in memory so the hot path reads it without a round trip: the
 * global breaker, which tenant breakers are half-open (with their trickle), and which keys an
 * anomaly action degraded. Refreshed periodically and whenever a change is announced on
 * pub/sub (the writer refreshes its own copy at once).
 *
 * A tenant breaker that is not closed keeps its Redis flag, which the reserve script reads
 * atomically and which denies every non-CRITICAL request; this cache only says which request
 * is the half-open trickle allowed past it. A replica that has not heard of a transition yet
 * therefore denies (OPEN → HALF_OPEN) or trickles a moment longer (HALF_OPEN → CLOSED): it
 * never lets a flood through.
 */
export class AbuseStateCache {
  private global: BreakerRecord | null = null;
  private halfOpen = new Map<string, BreakerIndexEntry>();
  private degraded = new Map<string, DegradedKey>();
  private readonly trickle = new Map<string, number>();
  private globalTrickle = 0;
  private timer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  private pending = false;

  constructor(private readonly o: AbuseStateCacheOptions) {}

  /** Hot path: is this non-CRITICAL request refused by the global breaker? */
  globalBreakerOpen(): boolean {
    const g = this.global;
    if (!g || g.state === "CLOSED") return false;
    if (g.state === "OPEN") return true;
    return this.globalTrickle++ % Math.max(1, this.o.globalHalfOpenOneIn) !== 0;
  }

  /**
   * Hot path, for a non-CRITICAL request: a half-open tenant breaker lets one in N past its
   * Redis flag ("PASS") and refuses the rest ("DENY"); otherwise no say (null).
   */
  tenantBreakerGate(tenantId: string): "DENY" | "PASS" | null {
    const e = this.halfOpen.get(tenantId);
    if (!e || e.state !== "HALF_OPEN") return null;
    const n = this.trickle.get(tenantId) ?? 0;
    this.trickle.set(tenantId, n + 1);
    return n % Math.max(1, e.halfOpenOneIn) === 0 ? "PASS" : "DENY";
  }

  /** Hot path: the tighter directives of a degraded key, if it is degraded right now. */
  keyDegradation(keyId: string): KeyDegradation | null {
    const d = this.degraded.get(keyId);
    if (!d || d.until <= this.o.clock.now().getTime()) return null;
    return { maxOutputTokens: d.maxOutputTokens, priority: d.priority, reason: d.reason };
  }

  /** Re-reads everything; calls made while a refresh runs are folded into one more. */
  async refresh(): Promise<void> {
    if (this.refreshing) {
      this.pending = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      do {
        this.pending = false;
        const [global, index, degraded] = await Promise.all([this.o.source.loadGlobalBreaker(), this.o.source.breakerIndex(), this.o.source.degradedKeys()]);
        this.global = global;
        this.halfOpen = index;
        for (const id of this.trickle.keys()) if (!index.has(id)) this.trickle.delete(id);
        this.degraded = new Map(degraded.map((d) => [d.keyId, d]));
      } while (this.pending);
    })().finally(() => (this.refreshing = null));
    return this.refreshing;
  }

  /** Refresh in the background, without letting an error escape. */
  refreshSoon(): void {
    this.refresh().catch((err) => this.o.logger.warn({ err: (err as Error).message }, "abuse state refresh failed; keeping the last known state"));
  }

  start(intervalMs: number): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.refreshSoon(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
