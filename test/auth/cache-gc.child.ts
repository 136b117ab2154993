/**
 * Run by cache-gc.test.ts as
 *   node --trace-gc-nvp --max-semi-space-size=4 --expose-gc --import tsx <this file> cache|reinsert
 * Reads four cached entries 400,000 times in turn, as requests read the credentials of the
 * gateways calling them (by an id parsed from each request, so a new string each time), with a
 * request's worth of short-lived garbage per read: through
 * InvalidatedCache (`cache`), or through the same cache re-inserting each hit with delete + set
 * to keep its Map in LRU order (`reinsert`, what it did before). node's GC trace on stdout tells
 * what each scavenge promoted.
 */
import { InvalidatedCache } from "../../src/auth/api-key-verifier.js";

type Value = { role: string };
class Reinserting extends InvalidatedCache<Value> {
  override get(id: string, load: (id: string) => Promise<Value>): Promise<Value> {
    const entries = (this as unknown as { entries: Map<string, unknown> }).entries;
    const hit = entries.get(id);
    if (hit) {
      entries.delete(id);
      entries.set(id, hit);
    }
    return super.get(id, load);
  }
}

const mode = process.argv[2];
const opts = { ttlMs: 3_600_000, maxEntries: 1_000 };
const cache = mode === "reinsert" ? new Reinserting(opts) : new InvalidatedCache<Value>(opts);
const ids = ["cred_1", "cred_2", "cred_3", "cred_4"];
const load = async () => ({ role: "GATEWAY" });
for (const id of ids) await cache.get(id, load);
// The cache lives in the old generation from here on, as a running service's does.
(globalThis as { gc?: () => void }).gc?.();
(globalThis as { gc?: () => void }).gc?.();

let sink = 0;
for (let i = 0; i < 400_000; i++) {
  // Parsed out of each request's Authorization header: a new string every time.
  const v = await cache.get(`cred_${(i & 3) + 1}`, load);
  const garbage = { i, list: [i, i + 1], text: `request ${i}` };
  sink += garbage.list.length + v.role.length;
}
process.stderr.write(`done ${mode} ${sink}\n`);
