import { describe, expect, it } from "vitest";
import { GraphQLObjectType, getNamedType, isObjectType, type GraphQLSchema } from "graphql";
import { getMetadataStorage } from "type-graphql";
import { buildApiSchema } from "../../src/graphql/schema.js";

/**
 * The hot path's output types resolve by property access (type-graphql `simpleResolvers`): no
 * per-field resolver, so graphql-jit builds no resolve-info object per field of a reserve's
 * answer. The types reachable from checkAndReserve / commit / release must keep it that way. A
 * field resolver would show up as a resolver in the built schema; `@Authorized` or a middleware
 * on one of their fields would not (type-graphql skips them silently under `simpleResolvers`),
 * so those are looked for in type-graphql's metadata.
 */
const HOT_ROOTS = ["checkAndReserve", "commit", "release"];

function reachableOutputTypes(schema: GraphQLSchema): GraphQLObjectType[] {
  const seen = new Map<string, GraphQLObjectType>();
  const visit = (t: GraphQLObjectType) => {
    if (seen.has(t.name)) return;
    seen.set(t.name, t);
    for (const f of Object.values(t.getFields())) {
      const named = getNamedType(f.type);
      if (isObjectType(named)) visit(named);
    }
  };
  const mutation = schema.getMutationType()!;
  for (const root of HOT_ROOTS) visit(getNamedType(mutation.getFields()[root]!.type) as GraphQLObjectType);
  return [...seen.values()];
}

describe("hot-path output types", () => {
  it("resolve every field by property access, with no per-field resolver", async () => {
    const schema = await buildApiSchema();
    const types = reachableOutputTypes(schema);
    expect(types.map((t) => t.name).sort()).toEqual(["CommitResult", "Decision", "Directives", "LimitStatus", "ReleaseResult", "Reservation"]);
    const withResolvers = types.flatMap((t) => Object.values(t.getFields()).filter((f) => f.resolve).map((f) => `${t.name}.${f.name}`));
    expect(withResolvers).toEqual([]);
    const hot = new Set(types.map((t) => t.name));
    const guarded = getMetadataStorage()
      .objectTypes.filter((o) => hot.has(o.name))
      .flatMap((o) => (o.fields ?? []).filter((f) => (f.roles?.length ?? 0) > 0 || (f.middlewares?.length ?? 0) > 0).map((f) => `${o.name}.${f.schemaName}`));
    expect(guarded).toEqual([]);
  });

  it("operator types keep type-graphql's resolvers (their @Authorized fields and field resolvers depend on them)", async () => {
    const schema = await buildApiSchema();
    const tenant = schema.getType("Tenant") as GraphQLObjectType;
    expect(Object.values(tenant.getFields()).every((f) => typeof f.resolve === "function")).toBe(true);
  });
});
