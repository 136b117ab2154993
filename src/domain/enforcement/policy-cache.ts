import type { Model, Tenant, Tier } from "../tenancy/types.js";

/** Reads of the policy objects the hot path needs; implemented over Postgres. */
export interface PolicyLoader {
  tier(id: string): Promise<Tier | null>;
  tenant(id: string): Promise<Tenant | null>;
  model(name: string): Promise<Model | null>;
}

interface Entry<T> {
  value: T | null;
  at: number;
  /** A first load that callers wait for. */
  pending: Promise<T | null> | null;
  /** Age at which a read starts a background reload (jittered per load). */
  refreshAfter: number;
  refreshing: boolean;
}

/**
 * In-process cache of tiers, tenants and models so a reserve touches no Postgres in steady
 * state. Operator changes invalidate entries on every replica over pub/sub; the TTL is the
 * safety net that bounds staleness if a message is missed. Concurrent misses for one entry
 * share one load. An entry read after a jittered 80–95 % of the TTL is served
 * and reloaded in the background, so entries in use never expire under a request and entries
 * loaded together do not reload together; nothing is served older than the TTL.
 */
export class PolicyCache implements PolicyLoader {
  private readonly maps = {
    tier: new Map<string, Entry<Tier>>(),
    tenant: new Map<string, Entry<Tenant>>(),
    model: new Map<string, Entry<Model>>(),
  };

  constructor(
    private readonly loader: PolicyLoader,
    private readonly opts: { ttlMs: number; maxEntries: number; now?: () => number },
  ) {}

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  private get<K extends keyof PolicyCache["maps"], T>(kind: K, id: string, load: () => Promise<T | null>): Promise<T | null> {
    const map = this.maps[kind] as unknown as Map<string, Entry<T>>;
    const e = map.get(id);
    if (e && e.pending) return e.pending;
    if (e) {
      const age = this.now() - e.at;
      if (age < this.opts.ttlMs) {
        if (age >= e.refreshAfter && !e.refreshing) this.refresh(e, load);
        return Promise.resolve(e.value);
      }
    }
    const entry: Entry<T> = { value: null, at: 0, pending: null, refreshAfter: 0, refreshing: false };
    entry.pending = load().then(
      (v) => {
        this.loaded(entry, v);
        entry.pending = null;
        return v;
      },
      (err) => {
        map.delete(id);
        throw err;
      },
    );
    if (map.size >= this.opts.maxEntries) map.delete(map.keys().next().value!);
    map.set(id, entry);
    return entry.pending;
  }

  private loaded<T>(entry: Entry<T>, v: T | null): void {
    entry.value = v;
    entry.at = this.now();
    entry.refreshAfter = this.opts.ttlMs * (0.8 + Math.random() * 0.15);
  }

  /**
   * Reloads in place. An invalidation meanwhile removes the entry from its map, so what this
   * load finds lands on an object nobody reads any more.
   */
  private refresh<T>(entry: Entry<T>, load: () => Promise<T | null>): void {
    entry.refreshing = true;
    load().then(
      (v) => {
        this.loaded(entry, v);
        entry.refreshing = false;
      },
      () => {
        // Keep serving the current value until its TTL runs out; the next read tries again.
        entry.refreshing = false;
      },
    );
  }

  tier(id: string) {
    return this.get("tier", id, () => this.loader.tier(id));
  }
  tenant(id: string) {
    return this.get("tenant", id, () => this.loader.tenant(id));
  }
  model(name: string) {
    return this.get("model", name, () => this.loader.model(name));
  }

  invalidate(kind: "tier" | "tenant" | "model" | "all", id: string): void {
    if (kind === "all") {
      for (const m of Object.values(this.maps)) m.clear();
      return;
    }
    this.maps[kind].delete(id);
  }
}
