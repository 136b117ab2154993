import { describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

/**
 * On Node 20 (V8 11), an object literal that starts with a spread and goes on with more members,
 * `{ ...a, b: 1 }`, gets a V8 map (hidden class) of its own every time it runs: a new map and
 * descriptor array in the old generation per object, about 1.3 µs instead of 30 ns, and every
 * inline cache that later reads such objects goes megamorphic. On the hot path this made about
 * half of what each scavenge kept (the floor at 100 pairs/s: 1.3 MB → 0.69 MB per scavenge once
 * the reservation record was spelled out). `{ a: 1, ...b }`, `{ ...a, ...b }` and
 * `Object.assign({}, a, { b: 1 })` share their maps.
 *
 * So the hot path builds its per-request objects without that pattern: checked on the objects
 * themselves (a child process under --allow-natives-syntax asks V8) and in the source.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

const HOT_PATH_FILES = [
  "src/domain/enforcement/enforcement.service.ts",
  "src/domain/enforcement/plan.ts",
  "src/domain/enforcement/periods.ts",
  "src/domain/enforcement/policy-cache.ts",
  "src/domain/enforcement/decision-codec.ts",
  "src/domain/enforcement/validation.ts",
  "src/domain/enforcement/reservation-id.ts",
  "src/domain/abuse/observer.ts",
  "src/auth/authenticator.ts",
  "src/auth/api-key-verifier.ts",
  "src/auth/api-key-format.ts",
  "src/storage/redis/counter-store.ts",
  "src/storage/redis/scripts.ts",
  "src/storage/redis/lean-pipeline.ts",
  "src/storage/postgres/ledger.writer.ts",
  "src/storage/postgres/reservation-archive.ts",
  "src/storage/postgres/bulk-insert.ts",
  "src/metrics/instrumented-counter-store.ts",
  "src/metrics/operation-metrics.plugin.ts",
  "src/metrics/service-metrics.ts",
  "src/graphql/resolvers/enforcement.resolver.ts",
  "src/graphql/jit-executor.ts",
  "src/graphql/context.ts",
  "src/graphql/server.ts",
];

/** `{ ...x, member` where the next member is not another spread; comments removed first. */
const LEADING_SPREAD = /\{\s*\.\.\.[^,{}()]+(\([^()]*\))?,\s*[\w"'[]/g;

function withoutComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
}

describe("hot-path object shapes", () => {
  it("the scan finds the pattern it looks for, and not the ones that are fine", () => {
    const found = (s: string) => (withoutComments(s).match(LEADING_SPREAD) ?? []).length;
    expect(found("return { ...record, id };")).toBe(1);
    expect(found("const x = {\n  ...ids,\n  retryAfterMs: 1,\n};")).toBe(1);
    expect(found("h({ ...headers, \"content-length\": n })")).toBe(1);
    expect(found("return { retryAfterMs, ...extra };")).toBe(0);
    expect(found("return { ...a, ...b };")).toBe(0);
    expect(found("const { a, ...rest } = x; f([...xs, y]);")).toBe(0);
    expect(found("// { ...record, id } in a comment")).toBe(0);
  });

  it("no hot-path source builds an object with a leading spread followed by more members", () => {
    const hits = HOT_PATH_FILES.flatMap((f) => {
      const text = withoutComments(readFileSync(path.join(ROOT, f), "utf8"));
      return [...text.matchAll(LEADING_SPREAD)].map((m) => `${f}:${text.slice(0, m.index).split("\n").length}: ${m[0].replace(/\s+/g, " ")}`);
    });
    expect(hits).toEqual([]);
  });

  it("reservation records and answers' directives share one map across requests", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ["--allow-natives-syntax", "--import", "tsx", path.join(ROOT, "test/ops/object-shapes.child.ts")], {
      cwd: ROOT,
    });
    const r = JSON.parse(stdout.trim().split("\n").pop()!) as { node: string; archiveEntry: boolean; decisionDirectives: boolean; leadingSpreadThenProperty: boolean };
    expect(r.archiveEntry).toBe(true);
    expect(r.decisionDirectives).toBe(true);
    // Not asserted, only reported: a later V8 may fix the pattern itself.
    if (r.leadingSpreadThenProperty) console.info(`${r.node}: { ...a, b } shares its map here; the rule above could be relaxed`);
  });
});
