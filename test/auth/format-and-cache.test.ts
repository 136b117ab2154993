import { describe, expect, it } from "vitest";
import {
  CHECKSUM_LENGTH,
  SECRET_LENGTH,
  apiKeyFormat,
  credentialFormat,
  hashToken,
  mintToken,
  parseToken,
  publicPrefix,
  tokenMatchesHash,
} from "../../src/auth/api-key-format.js";
import { InvalidatedCache } from "../../src/auth/api-key-verifier.js";
import { PolicyCache } from "../../src/domain/enforcement/policy-cache.js";
import type { Tenant } from "../../src/domain/tenancy/types.js";
import { newId } from "../../src/lib/ids.js";

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

describe("token format", () => {
  const keys = apiKeyFormat("llm");

  it("round-trips: a minted token names its id and carries a fresh secret each time", () => {
    const id = newId("apiKey");
    const a = mintToken(keys, id);
    const b = mintToken(keys, id);
    expect(a).not.toBe(b);
    expect(a.split("_")[2]).toHaveLength(SECRET_LENGTH + CHECKSUM_LENGTH);
    expect(parseToken(keys, a)).toEqual({ id });
    expect(a.startsWith(`${publicPrefix(keys, id)}_`)).toBe(true);
  });

  it("catches every single-character typo before any lookup", () => {
    const token = mintToken(keys, newId("apiKey"));
    let variants = 0;
    for (let i = 0; i < token.length; i++) {
      for (const c of ALPHABET + "_-") {
        if (c === token[i]) continue;
        const typo = token.slice(0, i) + c + token.slice(i + 1);
        variants++;
        expect(parseToken(keys, typo), typo).toBeNull();
      }
    }
    expect(variants).toBeGreaterThan(3_000);
  });

  it("never parses a key as a credential or a credential as a key", () => {
    const creds = credentialFormat("llm");
    const key = mintToken(keys, newId("apiKey"));
    const cred = mintToken(creds, newId("credential"));
    expect(parseToken(creds, key)).toBeNull();
    expect(parseToken(keys, cred)).toBeNull();
    // Same core and secret under the other prefix: the domain-separated checksum still refuses it.
    expect(parseToken(creds, `llmsvc${key.slice(3)}`)).toBeNull();
    expect(parseToken(creds, cred)?.id).toMatch(/^cred_/);
  });

  it("honours a configured prefix", () => {
    const acme = apiKeyFormat("acme");
    const token = mintToken(acme, newId("apiKey"));
    expect(token.startsWith("acme_")).toBe(true);
    expect(parseToken(acme, token)).not.toBeNull();
    expect(parseToken(keys, token)).toBeNull();
  });

  it("compares hashes exactly", () => {
    const token = mintToken(keys, newId("apiKey"));
    expect(hashToken(token)).toMatch(/^[0-9a-f]{64}$/);
    expect(tokenMatchesHash(token, hashToken(token))).toBe(true);
    expect(tokenMatchesHash(token, hashToken(token + "x"))).toBe(false);
    expect(tokenMatchesHash(token, "")).toBe(false);
  });
});

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

describe("InvalidatedCache", () => {

  it("shares one load between concurrent misses and serves hits without loading", async () => {
    const cache = new InvalidatedCache<string>({ ttlMs: 60_000, maxEntries: 10 });
    let loads = 0;
    const load = async (id: string) => `${id}@${++loads}`;
    const [a, b] = await Promise.all([cache.get("k", load), cache.get("k", load)]);
    expect([a, b]).toEqual(["k@1", "k@1"]);
    expect(await cache.get("k", load)).toBe("k@1");
    expect(loads).toBe(1);
  });

  it("does not cache a load that raced an invalidation (no stale state after a revoke)", async () => {
    const cache = new InvalidatedCache<string>({ ttlMs: 60_000, maxEntries: 10 });
    const slow = deferred<string>();
    const inFlight = cache.get("k", () => slow.promise);
    cache.invalidate("k"); // the revocation's message arrives while the old row is being read
    slow.resolve("ACTIVE (read before the revoke)");
    expect(await inFlight).toBe("ACTIVE (read before the revoke)");
    expect(await cache.get("k", async () => "REVOKED")).toBe("REVOKED");
  });

  it("expires entries after the TTL and evicts the least recently used beyond the bound", async () => {
    const ttl = new InvalidatedCache<number>({ ttlMs: 30, maxEntries: 10 });
    let n = 0;
    await ttl.get("k", async () => ++n);
    await new Promise((r) => setTimeout(r, 50));
    expect(await ttl.get("k", async () => ++n)).toBe(2);

    const bounded = new InvalidatedCache<string>({ ttlMs: 60_000, maxEntries: 2 });
    await bounded.get("a", async () => "a1");
    await bounded.get("b", async () => "b1");
    await bounded.get("a", async () => "a2"); // a is now the most recently used
    await bounded.get("c", async () => "c1"); // evicts b
    expect(bounded.size).toBe(2);
    expect(await bounded.get("a", async () => "a3")).toBe("a1");
    expect(await bounded.get("b", async () => "b2")).toBe("b2");
  });

  it("refreshes an entry in use ahead of its TTL: the read is served, one reload runs behind it", async () => {
    let now = 0;
    const cache = new InvalidatedCache<string>({ ttlMs: 1_000, maxEntries: 10, now: () => now });
    let loads = 0;
    const reload = deferred<string>();
    await cache.get("k", async () => `v${++loads}`);
    now = 960; // past any jittered refresh point (at most 95 % of the TTL), before its end
    const load = () => (++loads, reload.promise);
    // Served from the cache at once (the pending reload does not hold it up), reloaded once.
    expect(await cache.get("k", load)).toBe("v1");
    expect(await cache.get("k", load)).toBe("v1");
    expect(loads).toBe(2);
    reload.resolve("v2");
    await new Promise((r) => setTimeout(r, 0));
    expect(await cache.get("k", async () => "unused")).toBe("v2");
    expect(loads).toBe(2);
  });

  it("a background refresh that raced an invalidation is not cached either", async () => {
    let now = 0;
    const cache = new InvalidatedCache<string>({ ttlMs: 1_000, maxEntries: 10, now: () => now });
    await cache.get("k", async () => "ACTIVE");
    now = 960;
    const slow = deferred<string>();
    expect(await cache.get("k", () => slow.promise)).toBe("ACTIVE");
    cache.invalidate("k"); // revoked while the refresh reads the old row
    slow.resolve("ACTIVE (read before the revoke)");
    await new Promise((r) => setTimeout(r, 0));
    expect(await cache.get("k", async () => "REVOKED")).toBe("REVOKED");
  });
});

describe("PolicyCache", () => {
  const tenant = (name: string) => ({ id: "t1", name }) as unknown as Tenant;

  it("serves an entry in use while it reloads ahead of the TTL, and never past the TTL", async () => {
    let now = 0;
    let loads = 0;
    let next = deferred<Tenant | null>();
    const cache = new PolicyCache(
      { tier: async () => null, model: async () => null, tenant: () => (loads++, next.promise) },
      { ttlMs: 1_000, maxEntries: 10, now: () => now },
    );
    const first = cache.tenant("t1");
    next.resolve(tenant("first"));
    expect((await first)!.name).toBe("first");
    next = deferred();
    now = 960; // past any jittered refresh point (at most 95 % of the TTL), within the TTL
    expect((await cache.tenant("t1"))!.name).toBe("first");
    expect((await cache.tenant("t1"))!.name).toBe("first");
    expect(loads).toBe(2); // one background reload, not one per read
    next.resolve(tenant("second"));
    await new Promise((r) => setTimeout(r, 0));
    expect((await cache.tenant("t1"))!.name).toBe("second");

    // A reload that fails keeps the old value until the TTL, and then the read waits for a load.
    next = deferred();
    now += 960;
    expect((await cache.tenant("t1"))!.name).toBe("second");
    next.reject(new Error("postgres down"));
    await new Promise((r) => setTimeout(r, 0));
    now += 100; // past the TTL of "second"
    next = deferred();
    const blocked = cache.tenant("t1");
    next.resolve(tenant("third"));
    expect((await blocked)!.name).toBe("third");
  });
});
