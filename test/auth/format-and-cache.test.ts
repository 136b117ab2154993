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

describe("InvalidatedCache", () => {
  function deferred<T>() {
    let resolve!: (v: T) => void;
    const promise = new Promise<T>((r) => (resolve = r));
    return { promise, resolve };
  }

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
});
