import { createTestDatabase } from "../test/support/env.js";
import { tierSpec } from "../test/support/enforcement.js";
import { newId } from "../src/lib/ids.js";
import { scopeLimitsToJson, tierToRow } from "../src/storage/postgres/mapping.js";
import { modelPrices, models, tenants, tiers } from "../src/storage/postgres/schema/index.js";
import type { App } from "../src/compose.js";
import type { Actor, Tier } from "../src/domain/tenancy/types.js";

/** A dedicated database per run on the local Postgres, dropped at the end. */
export const PG_ADMIN_URL = process.env.BENCH_DATABASE_ADMIN_URL ?? process.env.TEST_DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export function createBenchDatabase() {
  return createTestDatabase({ prefix: "bench", adminUrl: PG_ADMIN_URL });
}

const BIG = { perMinute: 100_000_000, burst: null };

/**
 * A tier that applies every kind of check the hot path has (tenant and key buckets for requests
 * and tokens, per-key concurrency, daily and monthly tokens, tenant and key budgets), with
 * limits far above what the benchmark uses: every request is decided by the full script and
 * allowed, so the figures are the cost of the complete allow path.
 */
export function benchTier(): Omit<Tier, "id" | "createdAt" | "updatedAt"> {
  return tierSpec({
    name: `bench-${newId("tier")}`,
    description: "benchmark tier",
    tenantLimits: {
      requestsPerMinute: BIG,
      inputTokensPerMinute: { perMinute: 1_000_000_000, burst: null },
      outputTokensPerMinute: { perMinute: 1_000_000_000, burst: null },
      dailyTokens: 1_000_000_000_000,
      monthlyTokens: 10_000_000_000_000,
      monthlyBudgetNano: 1_000_000_000_000_000n,
    },
    keyLimits: { requestsPerMinute: BIG, concurrentRequests: 10_000, monthlyBudgetNano: 100_000_000_000_000n },
    defaultMaxOutputTokens: 300,
  });
}

const SYSTEM_ADMIN: Actor = { kind: "system", id: "bench", role: "ADMIN", tenantId: null, name: "benchmark setup" };

/** Tenants × keys through the real key service (hashes, audit rows), plus a gateway credential. */
export async function seed(app: App, opts: { tenants: number; keysPerTenant: number; model: string }): Promise<{ keys: string[]; gatewayToken: string }> {
  const db = app.services.db;
  await db.insert(models).values({ name: opts.model, contextWindow: 128_000 }).onConflictDoNothing();
  await db.insert(modelPrices).values({ model: opts.model, effectiveFrom: new Date(Date.UTC(2020, 0, 1)), inputNanoPerToken: 1_000n, outputNanoPerToken: 2_000n });
  const tierId = newId("tier");
  await db.insert(tiers).values({ id: tierId, ...tierToRow(benchTier()) });
  const tenantIds = Array.from({ length: opts.tenants }, () => newId("tenant"));
  for (let i = 0; i < tenantIds.length; i += 500) {
    await db.insert(tenants).values(
      tenantIds.slice(i, i + 500).map((id) => ({ id, name: `bench tenant ${id}`, tierId, timezone: "UTC", limitOverrides: scopeLimitsToJson({}) })),
    );
  }
  const jobs = tenantIds.flatMap((tenantId) => Array.from({ length: opts.keysPerTenant }, () => tenantId));
  const keys: string[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < jobs.length) {
        const i = next++;
        const r = await app.services.apiKeys.create(SYSTEM_ADMIN, {
          tenantId: jobs[i]!,
          name: `bench key ${i}`,
          monthlyBudgetNano: null,
          dailyBudgetNano: null,
          expiresAt: null,
          allowedRoutes: null,
          allowedModels: null,
        });
        keys[i] = r.secret;
      }
    }),
  );
  const gw = await app.services.credentials.create(SYSTEM_ADMIN, { role: "GATEWAY", tenantId: null, name: "bench gateway" });
  return { keys, gatewayToken: gw.secret };
}
