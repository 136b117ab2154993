/**
 * Run by object-shapes.test.ts as `node --allow-natives-syntax --import tsx`: builds hot-path
 * objects with different values and prints whether they share a V8 map (hidden class).
 */
import "reflect-metadata";
import { archiveEntry } from "../../src/domain/enforcement/enforcement.service.js";
import { toDecisionType } from "../../src/graphql/resolvers/enforcement.resolver.js";
import type { Decision } from "../../src/domain/enforcement/types.js";
import type { PlanVariant } from "../../src/domain/enforcement/plan.js";

// Natives syntax cannot go through esbuild; V8 parses it at run time under --allow-natives-syntax.
const sameMap = new Function("a", "b", "return %HaveSameMap(a, b)") as (a: object, b: object) => boolean;

function variant(i: number): PlanVariant {
  return {
    model: `m${i}`, price: { inputNano: BigInt(i), outputNano: BigInt(2 * i) }, inputTokens: i, outputTokens: 2 * i, costNano: BigInt(3 * i),
    maxInputTokens: null, priority: "NORMAL", rung: null, deny: null,
  } as unknown as PlanVariant;
}

// Many of each, with different values: the per-object maps appear once the inline caches have
// warmed up (the first few objects of a fresh process can share one); the last three are compared.
const N = 2_000;
const range = Array.from({ length: N }, (_, i) => i + 1);

const entries = range.map((i) =>
  archiveEntry(
    { tenantId: `ten_${i}`, keyId: `key_${i}`, subject: i % 2 ? null : `s${i}`, route: "chat", day: `2026-12-${i}`, month: "2026-12" },
    `res_${i}`,
    variant(i),
    `{"q":[${i}]}`,
    { reservedAt: new Date(i), expiresAt: new Date(i + 1), failOpen: i % 3 === 0 },
  ),
);

const decisions = range.map((i) =>
  toDecisionType({
    allowed: true, outcome: "ALLOW", reason: null, message: null, retryAfterMs: null, tenantId: `ten_${i}`, keyId: `key_${i}`,
    reservation: { id: `res_${i}`, expiresAt: new Date(i), inputTokens: i, outputTokens: i, costNano: BigInt(i) },
    directives: { model: `m${i}`, maxInputTokens: i % 2 ? null : i, maxOutputTokens: i, priority: "NORMAL" },
    limits: [],
  } as Decision),
);

// The pattern itself, for the record: does this node still give such objects maps of their own?
const spread = (r: { a: number }, i: number) => ({ ...r, id: i });
const plain = range.map((i) => spread({ a: i }, i));

function allShareOneMap(xs: object[]): boolean {
  const last = xs.slice(-3);
  return sameMap(last[0]!, last[1]!) && sameMap(last[1]!, last[2]!) && sameMap(xs[N / 2]!, last[2]!);
}

process.stdout.write(
  JSON.stringify({
    node: process.version,
    archiveEntry: allShareOneMap(entries),
    decisionDirectives: allShareOneMap(decisions.map((d) => d.directives!)),
    leadingSpreadThenProperty: allShareOneMap(plain),
  }) + "\n",
);
