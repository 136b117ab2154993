import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.js";
import { GraphQLClient } from "../support/client.js";
import { spawnServer, type ServerProcess } from "../support/process.js";
import { createGateway, createKey, insertModel, insertTenant, insertTier, RESERVE } from "../support/enforcement.js";
import type { ScopeLimits } from "../../src/domain/tenancy/types.js";

/**
 * No overspend: 200 simultaneous reserves against a limit that fits exactly 100, spread over
 * two server processes sharing Redis and Postgres, admit exactly 100, every trial.
 */
const TRIALS = Number(process.env.EXACTNESS_TRIALS ?? 20);
const CONCURRENT = 200;
const FITS = 100;
// Each request: 10 input + 10 output tokens of a model at 1000/2000 nano-USD per token = 30,000 nano.
const COST_NANO = 30_000n;

describe("exactness under concurrency across two server processes", () => {
  let t: TestApp;
  let servers: ServerProcess[] = [];
  let gateways: GraphQLClient[] = [];
  let tierId: string;

  beforeAll(async () => {
    // The invariant under test is exactness, not latency: give Redis commands room on a loaded
    // two-core machine so no decision is a BACKEND_UNAVAILABLE timeout.
    t = await startTestApp({ REDIS_COMMAND_TIMEOUT_MS: "2000" });
    await insertModel(t, "m-small", 1_000n, 2_000n);
    tierId = await insertTier(t, { defaultMaxOutputTokens: 10 });
    servers = await Promise.all([spawnServer(t.env), spawnServer(t.env)]);
    const gw = await createGateway(t);
    gateways = servers.map((s) => new GraphQLClient(s.url, gw.token));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.kill()));
    await t?.close();
  });

  async function trial(overrides: ScopeLimits): Promise<{ admitted: number; reasons: Record<string, number> }> {
    const tenantId = await insertTenant(t, tierId, { limitOverrides: overrides });
    const key = await createKey(t, tenantId);
    const results = await Promise.all(
      Array.from({ length: CONCURRENT }, (_, i) =>
        gateways[i % gateways.length]!.request(RESERVE, {
          input: { apiKey: key.secret, route: "chat.completions", model: "m-small", inputTokens: 10, maxOutputTokens: 10 },
        }),
      ),
    );
    const reasons: Record<string, number> = {};
    let admitted = 0;
    for (const r of results) {
      if (r.errors) throw new Error(JSON.stringify(r.errors));
      const d = r.data.checkAndReserve;
      if (d.allowed) admitted++;
      else reasons[d.reason] = (reasons[d.reason] ?? 0) + 1;
    }
    return { admitted, reasons };
  }

  const cases: Array<[string, ScopeLimits, string]> = [
    ["a monthly USD budget", { monthlyBudgetNano: COST_NANO * BigInt(FITS) }, "BUDGET_EXCEEDED"],
    ["a daily token quota", { dailyTokens: 20 * FITS }, "QUOTA_EXCEEDED"],
    ["a request bucket", { requestsPerMinute: { perMinute: 1, burst: FITS } }, "RATE_LIMITED"],
    ["a concurrency limit", { concurrentRequests: FITS }, "CONCURRENCY_LIMITED"],
  ];

  for (const [name, overrides, reason] of cases) {
    it(`admits exactly ${FITS} of ${CONCURRENT} against ${name}, ${TRIALS} trials`, async () => {
      const counts: number[] = [];
      for (let i = 0; i < TRIALS; i++) {
        const r = await trial(overrides);
        counts.push(r.admitted);
        expect(r.reasons).toEqual({ [reason]: CONCURRENT - FITS });
      }
      console.log(`exactness ${name}: admitted per trial = ${counts.join(",")}`);
      expect(counts).toEqual(Array(TRIALS).fill(FITS));
    }, 180_000);
  }
});
