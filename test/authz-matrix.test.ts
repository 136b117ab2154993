import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  astFromValue,
  getNamedType,
  isEnumType,
  isInputObjectType,
  isLeafType,
  isListType,
  isNonNullType,
  isScalarType,
  print,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLObjectType,
} from "graphql";
import { buildApiSchema } from "../src/graphql/schema.js";
import { startTestApp, type TestApp } from "./support/app.js";
import type { GraphQLClient } from "./support/client.js";
import { createTenant, createTier, credentialClient } from "./operator/support.js";

/**
 * The authorization matrix, generated from the schema: every Query and Mutation field must
 * have a row in EXPECTED_ROLES (a new operation without one fails this test), and each is
 * called over HTTP by every role with arguments generated from its signature. An allowed role
 * must get past authorization (whatever the resolver then says about the made-up arguments);
 * any other role must get FORBIDDEN; a caller without credentials must get UNAUTHENTICATED.
 *
 * Adding an operation: add a row below. If its arguments need a value the generator cannot
 * make (a new custom scalar), add it to SCALAR_SAMPLES.
 */

type Role = "ADMIN" | "TENANT_ADMIN" | "GATEWAY" | "BILLING";
const ROLES: Role[] = ["ADMIN", "TENANT_ADMIN", "GATEWAY", "BILLING"];
const EVERY_ROLE = ROLES;
/** Tenancy configuration readers (DESIGN.md section 1: billing and tenant admins read, gateways enforce). */
const CONFIG_READERS: Role[] = ["ADMIN", "TENANT_ADMIN", "BILLING"];
const ADMIN_ONLY: Role[] = ["ADMIN"];
const ENFORCEMENT: Role[] = ["ADMIN", "GATEWAY"];

const EXPECTED_ROLES: Record<string, Role[]> = {
  // whoami
  "Query.viewer": EVERY_ROLE,
  // tiers, tenants, models and prices (operator contract, DESIGN.md section 5)
  "Query.tier": CONFIG_READERS,
  "Query.tiers": CONFIG_READERS,
  "Query.tenant": CONFIG_READERS,
  "Query.tenants": CONFIG_READERS,
  "Query.model": CONFIG_READERS,
  "Query.models": CONFIG_READERS,
  "Query.estimateCost": EVERY_ROLE,
  "Mutation.createTier": ADMIN_ONLY,
  "Mutation.updateTier": ADMIN_ONLY,
  "Mutation.createTenant": ADMIN_ONLY,
  "Mutation.updateTenant": ADMIN_ONLY,
  "Mutation.suspendTenant": ADMIN_ONLY,
  "Mutation.resumeTenant": ADMIN_ONLY,
  "Mutation.upsertModel": ADMIN_ONLY,
  // tenant API keys: tenant admins read their own tenant's keys
  "Query.apiKey": ["ADMIN", "TENANT_ADMIN"],
  "Query.apiKeys": ["ADMIN", "TENANT_ADMIN"],
  "Mutation.createApiKey": ADMIN_ONLY,
  "Mutation.rotateApiKey": ADMIN_ONLY,
  "Mutation.revokeApiKey": ADMIN_ONLY,
  // service credentials
  "Query.credential": ADMIN_ONLY,
  "Query.credentials": ADMIN_ONLY,
  "Mutation.createCredential": ADMIN_ONLY,
  "Mutation.revokeCredential": ADMIN_ONLY,
  // the enforcement hot path (DESIGN.md section 3)
  "Mutation.checkAndReserve": ENFORCEMENT,
  "Mutation.commit": ENFORCEMENT,
  "Mutation.release": ENFORCEMENT,
  // quota events and webhooks (issue 4): billing systems and tenant admins read events (their own
  // tenant's when bound); ADMIN manages every webhook endpoint, a TENANT_ADMIN its own tenant's
  "Query.quotaEvents": ["ADMIN", "TENANT_ADMIN", "BILLING"],
  "Query.webhookEndpoints": ["ADMIN", "TENANT_ADMIN"],
  "Query.webhookDeliveries": ["ADMIN", "TENANT_ADMIN"],
  "Mutation.createWebhookEndpoint": ["ADMIN", "TENANT_ADMIN"],
  "Mutation.rotateWebhookSecret": ["ADMIN", "TENANT_ADMIN"],
  "Mutation.deleteWebhookEndpoint": ["ADMIN", "TENANT_ADMIN"],
  // usage reports (issue 4): operators, billing systems, tenant admins for their own tenant
  "Query.usage": ["ADMIN", "TENANT_ADMIN", "BILLING"],
  // abuse and cost controls (issue 5): breaker state is configuration (readers see their own
  // tenant's); operators alone open and close breakers; investigations are ADMIN and TENANT_ADMIN
  "Query.breaker": CONFIG_READERS,
  "Query.globalBreaker": CONFIG_READERS,
  "Query.openBreakers": ADMIN_ONLY,
  "Query.anomalies": ["ADMIN", "TENANT_ADMIN"],
  "Query.auditLog": ["ADMIN", "TENANT_ADMIN"],
  "Mutation.openBreaker": ADMIN_ONLY,
  "Mutation.closeBreaker": ADMIN_ONLY,
  "Mutation.openGlobalBreaker": ADMIN_ONLY,
  "Mutation.closeGlobalBreaker": ADMIN_ONLY,
};

/** A well-formed value per scalar, so a call gets past GraphQL validation to the role check. */
const SCALAR_SAMPLES: Record<string, unknown> = {
  String: "x",
  ID: "x",
  Int: 1,
  Float: 1,
  Boolean: false,
  Decimal: "1",
  DateTimeISO: new Date("2030-01-01T00:00:00.000Z"),
};

/** A minimal value of `type`: required fields only, first enum value, one-element lists. */
function sampleValue(type: GraphQLInputType, where: string): unknown {
  if (isNonNullType(type)) return sampleValue(type.ofType, where);
  if (isListType(type)) return [sampleValue(type.ofType, where)];
  if (isEnumType(type)) return type.getValues()[0]!.value;
  if (isInputObjectType(type)) {
    const out: Record<string, unknown> = {};
    for (const f of Object.values(type.getFields())) {
      if (isNonNullType(f.type) && f.defaultValue === undefined) out[f.name] = sampleValue(f.type, `${where}.${f.name}`);
    }
    return out;
  }
  if (isScalarType(type)) {
    if (!(type.name in SCALAR_SAMPLES)) throw new Error(`no sample for scalar ${type.name} (at ${where}); add one to SCALAR_SAMPLES`);
    return SCALAR_SAMPLES[type.name];
  }
  throw new Error(`cannot sample ${String(type)} at ${where}`);
}

/** `mutation { op(required: args) { __typename } }` for one field. */
function documentFor(kind: "query" | "mutation", field: GraphQLField<unknown, unknown>): string {
  const args = field.args
    .filter((a) => isNonNullType(a.type) && a.defaultValue === undefined)
    .map((a) => `${a.name}: ${print(astFromValue(sampleValue(a.type, `${field.name}(${a.name})`), a.type)!)}`);
  const selection = isLeafType(getNamedType(field.type)) ? "" : " { __typename }";
  return `${kind} { ${field.name}${args.length ? `(${args.join(", ")})` : ""}${selection} }`;
}

const schema = await buildApiSchema();
const operations: Array<{ key: string; kind: "query" | "mutation"; field: GraphQLField<unknown, unknown> }> = [];
for (const [kind, type] of [
  ["query", schema.getQueryType()],
  ["mutation", schema.getMutationType()],
] as Array<["query" | "mutation", GraphQLObjectType | null | undefined]>) {
  for (const field of Object.values(type?.getFields() ?? {})) {
    operations.push({ key: `${kind === "query" ? "Query" : "Mutation"}.${field.name}`, kind, field });
  }
}

type Outcome = "allowed" | "FORBIDDEN" | "UNAUTHENTICATED" | string;

describe("authorization matrix (generated from the schema)", () => {
  let t: TestApp;
  const callers = {} as Record<Role | "anonymous", GraphQLClient>;

  beforeAll(async () => {
    t = await startTestApp();
    const tier = await createTier(t.admin, { name: "matrix", maxOutputTokens: 10 });
    const tenant = await createTenant(t.admin, { name: "matrix tenant", tierId: tier.id });
    callers.ADMIN = t.admin;
    callers.TENANT_ADMIN = await credentialClient(t, "TENANT_ADMIN", tenant.id);
    callers.GATEWAY = await credentialClient(t, "GATEWAY", null);
    callers.BILLING = await credentialClient(t, "BILLING", null);
    callers.anonymous = t.client();
  });
  afterAll(async () => t?.close());

  it("has an expected-roles row for every operation in the schema, and none for operations that are gone", () => {
    const inSchema = operations.map((o) => o.key).sort();
    expect(inSchema.filter((k) => !(k in EXPECTED_ROLES)), "operations missing from EXPECTED_ROLES").toEqual([]);
    expect(Object.keys(EXPECTED_ROLES).filter((k) => !inSchema.includes(k)), "EXPECTED_ROLES rows without an operation").toEqual([]);
  });

  for (const op of operations) {
    it(`${op.key}: ${(EXPECTED_ROLES[op.key] ?? ["(no row)"]).join(", ")}`, async () => {
      const expectedRoles = EXPECTED_ROLES[op.key];
      expect(expectedRoles, `add ${op.key} to EXPECTED_ROLES`).toBeDefined();
      const doc = documentFor(op.kind, op.field);

      const expected: Record<string, Outcome> = { anonymous: "UNAUTHENTICATED" };
      const actual: Record<string, Outcome> = {};
      for (const role of ROLES) expected[role] = expectedRoles!.includes(role) ? "allowed" : "FORBIDDEN";

      for (const caller of [...ROLES, "anonymous"] as const) {
        const r = await callers[caller].request(doc);
        const codes = (r.errors ?? []).map((e) => e.extensions?.code as string);
        if (codes.includes("GRAPHQL_VALIDATION_FAILED") || codes.includes("GRAPHQL_PARSE_FAILED")) {
          throw new Error(`generated document does not validate: ${doc}\n${JSON.stringify(r.errors)}`);
        }
        const denied = codes.find((c) => c === "FORBIDDEN" || c === "UNAUTHENTICATED");
        // Past authorization the made-up arguments may be refused (NOT_FOUND, BAD_USER_INPUT, ...),
        // but never with a fault: that would be a bug in the resolver.
        actual[caller] = denied ?? (codes.includes("INTERNAL_SERVER_ERROR") ? `INTERNAL_SERVER_ERROR: ${JSON.stringify(r.errors)}` : "allowed");
        if (denied) expect(r.data?.[op.field.name] ?? null, `${caller} was denied yet got data`).toBeNull();
      }
      expect(actual, doc).toEqual(expected);
    });
  }
});
