import { describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { mainThreadScavenges } from "../support/gc-trace.js";

/**
 * InvalidatedCache marks a hit instead of re-inserting it (second-chance eviction; see the class).
 * Re-inserting on every hit churned the Map: each time its holes filled, V8 rehashed it into a
 * new table linked from the old one, so, with the Map in the old generation, each new table and
 * the fresh key strings in it survived the next scavenge and were promoted, until a mark-compact. Measured in a child process
 * from node's own GC trace: the median of what the main thread's scavenges promoted.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

async function promotedKb(mode: "cache" | "reinsert"): Promise<number> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ["--trace-gc-nvp", "--max-semi-space-size=4", "--expose-gc", "--import", "tsx", path.join(ROOT, "test/auth/cache-gc.child.ts"), mode],
    { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 },
  );
  const main = mainThreadScavenges(stdout, "promoted");
  expect(main.length, `scavenges seen for ${mode}`).toBeGreaterThanOrEqual(12);
  const sorted = main.slice(-12).sort((a, b) => a - b);
  return sorted[6]!;
}

describe("the per-process cache under a stream of hits", () => {
  it("lets a scavenge collect what the hits allocate (re-inserting each hit did not)", async () => {
    const cache = await promotedKb("cache");
    const reinsert = await promotedKb("reinsert");
    console.log(`promoted per scavenge: cache ${cache} KB, reinsert ${reinsert} KB`);
    // 123 against 283 KB here: the rest is the await machinery's own, the same in both.
    expect(reinsert - cache).toBeGreaterThan(100);
  }, 60_000);
});
