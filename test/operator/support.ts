import pg from "pg";
import { Redis } from "ioredis";
import { expect } from "vitest";
import type { TestApp } from "../support/app.js";
import { REDIS_URL } from "../support/env.js";
import type { GraphQLClient, GraphQLResponse } from "../support/client.js";

/** Shared pieces of the operator API tests: selections, seeding through the API, row counts. */

export const RATE = `perMinute burst`;
export const SUBJECT_LIMITS = `requestsPerMinute { ${RATE} } inputTokensPerMinute { ${RATE} } outputTokensPerMinute { ${RATE} } concurrentRequests`;
export const SCOPE_LIMITS = `${SUBJECT_LIMITS} dailyTokens monthlyTokens dailyBudgetUsd monthlyBudgetUsd`;
export const TIER_FIELDS = `
  id name description
  tenantLimits { ${SCOPE_LIMITS} }
  keyLimits { ${SCOPE_LIMITS} }
  subjectLimits { ${SUBJECT_LIMITS} }
  routeModelLimits { route model ${SUBJECT_LIMITS} }
  maxInputTokens defaultMaxOutputTokens maxOutputTokens
  allowedRoutes allowedModels allowedTools
  notifyAtPercent
  degradationLadder { atPercent of maxOutputTokens maxInputTokens priority modelMap { from to } block }
  reservationTtlSeconds routeReservationTtlSeconds { route seconds }
  failOpenRateLimits createdAt updatedAt`;
export const TENANT_FIELDS = `id name tierId timezone status limitOverrides { ${SCOPE_LIMITS} unlimited } createdAt updatedAt`;
export const PRICE_FIELDS = `inputPriceUsdPerMTok outputPriceUsdPerMTok effectiveFrom`;
export const MODEL_FIELDS = `name contextWindow downgradeTo currentPrice { ${PRICE_FIELDS} } prices { ${PRICE_FIELDS} } createdAt updatedAt`;

export async function createTier(c: GraphQLClient, input: Record<string, unknown>): Promise<any> {
  const d = await c.ok(`mutation($input: CreateTierInput!) { createTier(input: $input) { ${TIER_FIELDS} } }`, { input });
  return d.createTier;
}

export async function createTenant(c: GraphQLClient, input: Record<string, unknown>): Promise<any> {
  const d = await c.ok(`mutation($input: CreateTenantInput!) { createTenant(input: $input) { ${TENANT_FIELDS} } }`, { input });
  return d.createTenant;
}

export async function upsertModel(c: GraphQLClient, input: Record<string, unknown>): Promise<any> {
  const d = await c.ok(`mutation($input: UpsertModelInput!) { upsertModel(input: $input) { ${MODEL_FIELDS} } }`, { input });
  return d.upsertModel;
}

/** A service credential made through the API, returned as a client holding its token. */
export async function credentialClient(t: TestApp, role: string, tenantId: string | null): Promise<GraphQLClient> {
  const d = await t.admin.ok(
    `mutation($input: CreateCredentialInput!) { createCredential(input: $input) { secret credential { id role tenantId } } }`,
    { input: { role, tenantId, name: `${role.toLowerCase()} for tests` } },
  );
  return t.client(d.createCredential.secret);
}

/** Rows per table, to prove a refused request wrote nothing (audit entries included). */
export async function rowCounts(databaseUrl: string): Promise<Record<string, number>> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    const out: Record<string, number> = {};
    for (const table of ["tiers", "tenants", "models", "model_prices", "audit_log"]) {
      const { rows } = await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${table}`);
      out[table] = Number(rows[0]!.n);
    }
    return out;
  } finally {
    await c.end();
  }
}

export async function query<T = any>(databaseUrl: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as T[];
  } finally {
    await c.end();
  }
}

/** Asserts a single BAD_USER_INPUT naming `field`, and no data. */
export function expectBadInput(r: GraphQLResponse, field: string, message?: RegExp): void {
  expect(r.errors, JSON.stringify(r.data)).toHaveLength(1);
  const e = r.errors![0]!;
  expect(e.extensions?.code, e.message).toBe("BAD_USER_INPUT");
  expect(e.extensions?.field, e.message).toBe(field);
  expect(e.message.startsWith(`${field}: `), e.message).toBe(true);
  if (message) expect(e.message).toMatch(message);
  expect(r.data).toBeNull();
}

/**
 * Listens on the invalidation channel the way another replica does (its own Redis connection),
 * so a test sees what every replica would hear.
 */
export async function invalidationListener(t: TestApp) {
  const sub = new Redis(REDIS_URL);
  const channel = `${t.env.REDIS_KEY_PREFIX}invalidate`;
  const heard: Array<{ kind: string; id: string }> = [];
  sub.on("message", (ch, payload) => {
    if (ch === channel) heard.push(JSON.parse(payload));
  });
  await sub.subscribe(channel);
  return {
    heard,
    async waitFor(kind: string, id: string, timeoutMs = 5_000) {
      const start = Date.now();
      while (!heard.some((m) => m.kind === kind && m.id === id)) {
        if (Date.now() - start > timeoutMs) throw new Error(`no invalidation ${kind}:${id} within ${timeoutMs} ms (heard ${JSON.stringify(heard)})`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    close: () => sub.quit(),
  };
}

/** Walks a connection to its end with page size `first`, returning every node and the page count. */
export async function walkPages(
  c: GraphQLClient,
  field: "tiers" | "tenants" | "models",
  select: string,
  first: number,
): Promise<{ nodes: any[]; pages: number; hasNextPageFlags: boolean[] }> {
  const nodes: any[] = [];
  const flags: boolean[] = [];
  let after: string | null = null;
  for (let pages = 1; pages < 1000; pages++) {
    const d: any = await c.ok(`query($first: Int, $after: String) { ${field}(first: $first, after: $after) { nodes { ${select} } pageInfo { hasNextPage endCursor } } }`, {
      first,
      after,
    });
    const conn = d[field];
    nodes.push(...conn.nodes);
    flags.push(conn.pageInfo.hasNextPage);
    if (!conn.pageInfo.hasNextPage) return { nodes, pages, hasNextPageFlags: flags };
    after = conn.pageInfo.endCursor;
  }
  throw new Error("pagination did not end");
}
