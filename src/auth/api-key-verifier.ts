import { performance } from "node:perf_hooks";
import type { ApiKey } from "../domain/tenancy/types.js";
import type { ApiKeyRecord } from "../domain/tenancy/api-keys.service.js";
import { isExpired } from "../domain/tenancy/api-keys.service.js";
import type { InvalidationMessage } from "../storage/redis/invalidation.js";
import { apiKeyFormat, checksumValid, digestMatchesHash, digestToken, parseTokenShape, type TokenFormat } from "./api-key-format.js";

/**
 * The hot-path check of a tenant API key. Expected failures are values, not exceptions:
 * checkAndReserve turns them into a DENY decision with the same reason.
 */
export type ApiKeyVerdict =
  | { ok: true; key: ApiKey }
  | { ok: false; reason: "KEY_INVALID" | "KEY_REVOKED" | "KEY_EXPIRED"; keyId: string | null };

/** Where invalidations come from: the cross-replica bus (or a test double). */
export interface InvalidationSource {
  onInvalidate(listener: (m: InvalidationMessage) => void): () => void;
}

export interface InvalidatedCacheOptions {
  ttlMs: number;
  maxEntries: number;
  /** Milliseconds on a monotonic clock (tests pass their own). */
  now?: () => number;
}

/**
 * A bounded, per-process read-through cache of verification records keyed by object id.
 *
 * Freshness: an entry lives at most `ttlMs` (the safety net if an invalidation message is
 * lost) and is dropped the moment an invalidation for its id arrives. A load that was in
 * flight when any invalidation arrived is returned to its callers but not cached, so a read
 * that raced a revocation cannot re-insert the pre-revocation state.
 * Concurrent misses for one id share one load. Negative results (unknown id) are cached
 * too: a misconfigured client retrying a deleted key costs one lookup per TTL, not per call.
 *
 * Refresh ahead: an entry read after a jittered 80–95 % of its TTL is still
 * served, and reloaded in the background (same epoch rule), so a key in use never expires
 * under a request and entries loaded together do not all reload in the same instant (a
 * benchmark's 5,000 keys, primed at once, used to expire together and stall the hot path
 * on Postgres for a moment every TTL). No value is ever served older than `ttlMs`.
 *
 * Eviction beyond `maxEntries` is second-chance (CLOCK) in insertion order: a hit only marks its
 * entry used, and eviction moves used entries to the back (clearing the mark) and drops the
 * first unused one, so a recently used entry outlives those not read since. A hit no longer
 * re-inserts its entry to keep the Map in LRU order: every delete + set on a long-lived Map
 * leaves a hole, and each time the holes fill V8 rehashes into a new table linked from the
 * old one, which, once in the old generation, keeps every later table alive through scavenges
 * until the next mark-compact. The gateway's credential (one entry, read by every request)
 * produced a new table every few requests.
 */
export class InvalidatedCache<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private readonly inflight = new Map<string, Promise<V>>();
  private epoch = 0;

  constructor(private readonly opts: InvalidatedCacheOptions) {}

  private now(): number {
    return this.opts.now ? this.opts.now() : performance.now();
  }

  get size(): number {
    return this.entries.size;
  }

  /** Whether a read of `id` now would be answered from the cache (no load waited for). */
  has(id: string): boolean {
    const hit = this.entries.get(id);
    return hit !== undefined && hit.expiresAt > this.now();
  }

  async get(id: string, load: (id: string) => Promise<V>): Promise<V> {
    const hit = this.entries.get(id);
    if (hit) {
      const now = this.now();
      if (hit.expiresAt > now) {
        if (!hit.used) hit.used = true;
        if (hit.refreshAt <= now && !this.inflight.has(id)) this.load(id, load).catch(() => undefined);
        return hit.value;
      }
      this.entries.delete(id);
    }
    return this.inflight.get(id) ?? this.load(id, load);
  }

  private load(id: string, load: (id: string) => Promise<V>): Promise<V> {
    const epoch = this.epoch;
    const p: Promise<V> = load(id)
      .then((value) => {
        if (this.epoch === epoch) this.store(id, value);
        return value;
      })
      .finally(() => {
        if (this.inflight.get(id) === p) this.inflight.delete(id);
      });
    this.inflight.set(id, p);
    return p;
  }

  invalidate(id: string): void {
    this.epoch++;
    this.entries.delete(id);
    this.inflight.delete(id);
  }

  clear(): void {
    this.epoch++;
    this.entries.clear();
    this.inflight.clear();
  }

  private store(id: string, value: V): void {
    this.entries.delete(id);
    // Second chance: each used entry met is moved to the back unmarked, so within one pass
    // over the entries an unused one is found and dropped.
    while (this.entries.size >= this.opts.maxEntries) {
      const oldest = this.entries.entries().next();
      if (oldest.done) break;
      const [key, entry] = oldest.value;
      this.entries.delete(key);
      if (entry.used) {
        entry.used = false;
        this.entries.set(key, entry);
      }
    }
    const now = this.now();
    const ttl = this.opts.ttlMs;
    this.entries.set(id, { value, expiresAt: now + ttl, refreshAt: now + ttl * (0.8 + Math.random() * 0.15), used: false });
  }
}

interface Entry<V> {
  value: V;
  expiresAt: number;
  refreshAt: number;
  /** Read since it was stored or last passed over by eviction (second chance). */
  used: boolean;
}

export interface ApiKeyVerifierOptions {
  repository: { findForVerification(id: string): Promise<ApiKeyRecord | null> };
  invalidation: InvalidationSource;
  apiKeyPrefix: string;
  /** Upper bound on staleness when an invalidation message is lost (config.cacheTtlMs). */
  cacheTtlMs: number;
  /** Bound on cached keys per process; the least recently used are dropped first. */
  maxCachedKeys?: number;
}

/**
 * Verifies presented tenant API keys for the enforcement hot path.
 *
 * - Malformed strings (wrong prefix, shape or checksum) are KEY_INVALID with no lookup at all.
 * - Well-formed keys are found by id in a per-process cache; Postgres is read only on a miss,
 *   so in steady state verification touches neither Postgres nor Redis.
 * - Revocation reaches every replica through the invalidation bus (milliseconds) and, if a
 *   message is lost, through the cache TTL (config.cacheTtlMs, 5 s by default).
 * - The secret is compared as SHA-256 in constant time before status or expiry are looked at,
 *   so a wrong secret never learns whether a key id is revoked or expired.
 */
export class ApiKeyVerifier {
  private readonly format: TokenFormat;
  private readonly cache: InvalidatedCache<ApiKeyRecord | null>;
  private readonly unsubscribe: () => void;
  private lookupCount = 0;

  constructor(private readonly opts: ApiKeyVerifierOptions) {
    this.format = apiKeyFormat(opts.apiKeyPrefix);
    this.cache = new InvalidatedCache({ ttlMs: opts.cacheTtlMs, maxEntries: opts.maxCachedKeys ?? 100_000 });
    this.unsubscribe = opts.invalidation.onInvalidate((m) => {
      if (m.kind === "apiKey") this.cache.invalidate(m.id);
      else if (m.kind === "all") this.cache.clear();
    });
  }

  /** How many times a key was read from storage (cache misses); malformed keys never count. */
  get lookups(): number {
    return this.lookupCount;
  }

  async verify(presented: string, now: Date): Promise<ApiKeyVerdict> {
    const shape = parseTokenShape(this.format, presented);
    if (!shape) return { ok: false, reason: "KEY_INVALID", keyId: null };
    // The checksum only spares storage a lookup for a mistyped or made-up key. When the id's
    // record is cached there is no lookup to spare, and the secret's digest, compared below,
    // covers the checksum digits too: one SHA-256 per request instead of two.
    const cached = this.cache.has(shape.id);
    if (!cached && !checksumValid(this.format, shape)) return { ok: false, reason: "KEY_INVALID", keyId: null };
    const record = await this.cache.get(shape.id, (id) => {
      this.lookupCount++;
      return this.opts.repository.findForVerification(id);
    });
    if (!record) return { ok: false, reason: "KEY_INVALID", keyId: null };
    if (!digestMatchesHash(digestToken(presented), record.secretHash)) {
      // A refused key reads as before: malformed (no key named) when its checksum is wrong,
      // which is checked here only if the cache let it pass unchecked above.
      return { ok: false, reason: "KEY_INVALID", keyId: cached && !checksumValid(this.format, shape) ? null : record.key.id };
    }
    if (record.key.status === "REVOKED") return { ok: false, reason: "KEY_REVOKED", keyId: record.key.id };
    if (isExpired(record.key, now)) return { ok: false, reason: "KEY_EXPIRED", keyId: record.key.id };
    return { ok: true, key: record.key };
  }

  /** Stops listening to invalidations (the process is shutting down). */
  close(): void {
    this.unsubscribe();
  }
}
