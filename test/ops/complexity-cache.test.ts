import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildSchema, parse } from "graphql";
import { startTestApp, type TestApp } from "../support/app.js";
import { errorCode } from "../support/client.js";
import { ComplexityCache } from "../../src/graphql/complexity-cache.js";

describe("complexity measured once per document", () => {
  const schema = buildSchema(`type Query { a(n: Int): Int b: Int }`);

  it("remembers a document's figure per operation", () => {
    const cache = new ComplexityCache(schema);
    const doc = parse(`query One { a } query Two { a b }`);
    cache.set(doc, "One", 1);
    cache.set(doc, "Two", 2);
    expect([cache.get(doc, "One"), cache.get(doc, "Two"), cache.get(parse(`query One { a }`), "One")]).toEqual([1, 2, undefined]);
  });

  it("never caches a document whose @skip/@include takes a variable", () => {
    const cache = new ComplexityCache(schema);
    const doc = parse(`query($x: Boolean!) { a b @include(if: $x) }`);
    cache.set(doc, null, 1);
    expect(cache.get(doc, null)).toBeUndefined();
    const literal = parse(`{ a b @include(if: true) }`);
    cache.set(literal, null, 2);
    expect(cache.get(literal, null)).toBe(2);
  });

  it("caches nothing when a field prices itself from its arguments", () => {
    const priced = buildSchema(`type Query { a(n: Int): Int }`);
    (priced.getQueryType()!.getFields().a!.extensions as Record<string, unknown>) = { complexity: ({ args }: { args: { n: number } }) => args.n };
    const cache = new ComplexityCache(priced);
    const doc = parse(`{ a(n: 5) }`);
    cache.set(doc, null, 5);
    expect(cache.get(doc, null)).toBeUndefined();
  });
});

describe("QUERY_TOO_COMPLEX with the cache in place", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ MAX_QUERY_COMPLEXITY: "10" });
  });
  afterAll(async () => t?.close());

  it("refuses the same too-complex query every time, and still runs a cheap one", async () => {
    const heavy = `{ ${Array.from({ length: 6 }, (_, i) => `v${i}: viewer { role }`).join(" ")} }`;
    for (let i = 0; i < 3; i++) expect(errorCode(await t.admin.request(heavy))).toBe("QUERY_TOO_COMPLEX");
    for (let i = 0; i < 2; i++) expect((await t.admin.request(`{ viewer { role } }`)).errors).toBeUndefined();
  });
});
