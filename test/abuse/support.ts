import { startTestApp, type TestApp } from "../support/app.js";
import type { GraphQLClient } from "../support/client.js";
import { query } from "../operator/support.js";

/**
 * Abuse-control test helpers. Time buckets of one second and fast flushes keep windows short
 * enough for tests; everything else is the real service over HTTP, real Postgres and Redis.
 */
export function startAbuseApp(extra: Record<string, string> = {}): Promise<TestApp> {
  return startTestApp({
    ABUSE_BUCKET_SECONDS: "1",
    ABUSE_FLUSH_INTERVAL_MS: "100",
    ABUSE_STATE_REFRESH_MS: "200",
    ABUSE_EVALUATE_INTERVAL_MS: "200",
    // The global breaker stays out of the way unless a test opens it.
    GLOBAL_BREAKER_MIN_SPEND_USD: "1000000",
    ...extra,
  });
}

export const BREAKER_FIELDS = `scope tenantId state since reason manual changedBy cooldownUntil probeUntil windowSpendUsd thresholdUsd baselineUsdPerWindow
  settings { enabled multiplier windowSeconds minSpendUsd cooldownSeconds halfOpenOneIn baselineSeconds }`;

export async function createAbuseTier(admin: GraphQLClient, input: Record<string, unknown>): Promise<string> {
  const r = await admin.ok(`mutation($input: CreateTierInput!) { createTier(input: $input) { id } }`, {
    input: { name: `abuse-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`, maxOutputTokens: 1_000, defaultMaxOutputTokens: 10, ...input },
  });
  return r.createTier.id;
}

export async function createTenantOn(admin: GraphQLClient, tierId: string): Promise<string> {
  const r = await admin.ok(`mutation($input: CreateTenantInput!) { createTenant(input: $input) { id } }`, { input: { name: "abuse tenant", tierId } });
  return r.createTenant.id;
}

/** Buffered observations to Redis/Postgres, then one evaluation pass: what the job does. */
export async function flushAndEvaluate(t: TestApp) {
  await t.app.services.abuse.observer.flush();
  return t.app.services.abuse.monitor.evaluate();
}

export async function outboxEvents(t: TestApp, type: string, tenantId?: string | null): Promise<Array<{ type: string; tenant_id: string | null; scope: string | null; payload: any }>> {
  const rows = await query(t.databaseUrl, `SELECT type, tenant_id, scope, payload FROM outbox_events WHERE type = $1 ORDER BY seq`, [type]);
  return tenantId === undefined ? rows : rows.filter((r: any) => r.tenant_id === tenantId);
}

export async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const started = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until the next whole second (a fresh one-second bucket) begins. */
export async function nextBucket(): Promise<void> {
  await sleep(1_000 - (Date.now() % 1_000) + 20);
}
