import { newId } from "../../src/lib/ids.js";
import { scopeLimitsToJson, tierToRow } from "../../src/storage/postgres/mapping.js";
import { modelPrices, models, tenants, tiers } from "../../src/storage/postgres/schema/index.js";
import type { Tier, ScopeLimits } from "../../src/domain/tenancy/types.js";
import type { TestApp } from "./app.js";
import { GraphQLClient } from "./client.js";

/**
 * Enforcement fixtures: tiers, tenants and models are written straight to the test's own
 * database (setup, not the thing under test); keys and the gateway credential go through the
 * real GraphQL API, as an operator would create them.
 */
export type TierSpec = Partial<Omit<Tier, "id" | "createdAt" | "updatedAt">>;

export function tierSpec(over: TierSpec = {}): Omit<Tier, "id" | "createdAt" | "updatedAt"> {
  return {
    name: `tier-${newId("tier")}`,
    description: null,
    tenantLimits: {},
    keyLimits: {},
    subjectLimits: {},
    routeModelLimits: [],
    maxInputTokens: null,
    defaultMaxOutputTokens: 100,
    maxOutputTokens: 4_096,
    allowedRoutes: null,
    allowedModels: null,
    allowedTools: null,
    notifyAtPercent: [50, 80, 100],
    degradationLadder: [],
    reservationTtlSeconds: 600,
    routeReservationTtlSeconds: [],
    failOpenRateLimits: false,
    ...over,
  };
}

export async function insertTier(t: TestApp, over: TierSpec = {}): Promise<string> {
  const id = newId("tier");
  await t.app.services.db.insert(tiers).values({ id, ...tierToRow(tierSpec(over)) });
  return id;
}

export async function insertTenant(t: TestApp, tierId: string, opts: { timezone?: string; limitOverrides?: ScopeLimits } = {}): Promise<string> {
  const id = newId("tenant");
  await t.app.services.db
    .insert(tenants)
    .values({ id, name: `tenant ${id}`, tierId, timezone: opts.timezone ?? "UTC", limitOverrides: scopeLimitsToJson(opts.limitOverrides ?? {}) });
  return id;
}

/** Prices in nano-USD per token. */
export async function insertModel(t: TestApp, name: string, inputNano: bigint, outputNano: bigint, contextWindow = 128_000): Promise<void> {
  await t.app.services.db.insert(models).values({ name, contextWindow }).onConflictDoNothing();
  await t.app.services.db.insert(modelPrices).values({ model: name, effectiveFrom: new Date(Date.UTC(2020, 0, 1)), inputNanoPerToken: inputNano, outputNanoPerToken: outputNano });
}

export async function createKey(
  t: TestApp,
  tenantId: string,
  opts: { monthlyBudgetUsd?: string; dailyBudgetUsd?: string; allowedRoutes?: string[]; allowedModels?: string[] } = {},
): Promise<{ id: string; secret: string }> {
  const r = await t.admin.ok(
    `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { apiKey { id } secret } }`,
    { input: { tenantId, name: "test key", ...opts } },
  );
  return { id: r.createApiKey.apiKey.id, secret: r.createApiKey.secret };
}

export async function createGateway(t: TestApp, url = t.url, tenantId?: string): Promise<GraphQLClient> {
  const r = await t.admin.ok(
    `mutation($input: CreateCredentialInput!) { createCredential(input: $input) { secret } }`,
    { input: { role: "GATEWAY", name: "test gateway", ...(tenantId ? { tenantId } : {}) } },
  );
  return new GraphQLClient(url, r.createCredential.secret);
}

export const RESERVE = `mutation($input: CheckAndReserveInput!) {
  checkAndReserve(input: $input) {
    outcome allowed reason message retryAfterMs tenantId keyId
    reservation { id expiresAt inputTokens outputTokens costUsd }
    directives { model maxInputTokens maxOutputTokens priority }
    limits { dimension scope limit remaining resetAt }
  }
}`;

export const COMMIT = `mutation($input: CommitInput!) {
  commit(input: $input) { reservationId inputTokens outputTokens costUsd overage replayed limits { dimension scope limit remaining } }
}`;

export const RELEASE = `mutation($id: ID!) { release(reservationId: $id) { reservationId released } }`;

export async function reserve(gw: GraphQLClient, input: Record<string, unknown>) {
  const r = await gw.request(RESERVE, { input: { route: "chat.completions", model: "m-small", inputTokens: 10, maxOutputTokens: 10, ...input } });
  if (r.errors) throw new Error(`checkAndReserve errored: ${JSON.stringify(r.errors)}`);
  return r.data.checkAndReserve;
}

export async function commit(gw: GraphQLClient, reservationId: string, inputTokens: number, outputTokens: number, status = "SUCCEEDED") {
  return gw.request(COMMIT, { input: { reservationId, inputTokens, outputTokens, status } });
}
