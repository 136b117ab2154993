import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cluster } from "ioredis";
import { Queue, Worker } from "bullmq";
import { startTestApp, type TestApp } from "../support/app.js";
import type { GraphQLClient } from "../support/client.js";
import { CLUSTER_MODE, REDIS_CLUSTER_NODES, rawRedis, uniqueName } from "../support/env.js";
import { createGateway, createKey, insertModel, insertTenant, insertTier, reserve } from "../support/enforcement.js";
import { compose, type App } from "../../src/compose.js";
import { loadConfig } from "../../src/config/config.js";
import { createQueueRedis } from "../../src/storage/redis/client.js";
import { queuePrefix } from "../../src/jobs/queues.js";
import { GraphQLClient as Client } from "../support/client.js";

/**
 * What only a real Redis Cluster shows (`npm run test:cluster` starts a local 3-master one and
 * runs these with the enforcement and job tests): a tenant's keys share one slot while tenants
 * spread over the masters, pub/sub invalidation crosses nodes, and BullMQ's multi-key scripts
 * find all of a queue's keys in one slot. Skipped against a single Redis.
 */
describe.skipIf(!CLUSTER_MODE)("on a Redis Cluster", () => {
  let t: TestApp;
  let gw: GraphQLClient;
  let tierId: string;

  beforeAll(async () => {
    // Room for a loaded two-core machine: these tests are about routing, not latency.
    t = await startTestApp({ REDIS_COMMAND_TIMEOUT_MS: "2000" });
    expect(t.app.config.redis.clusterNodes.length).toBeGreaterThan(1);
    await insertModel(t, "m-small", 1_000n, 2_000n);
    tierId = await insertTier(t, {
      tenantLimits: { dailyTokens: 1_000_000, monthlyBudgetNano: 1_000_000_000n, requestsPerMinute: { perMinute: 1_000, burst: null } },
      keyLimits: { concurrentRequests: 10 },
    });
    gw = await createGateway(t);
  });
  afterAll(async () => t?.close());

  it("keeps each tenant's keys in one slot and spreads tenants over every master", async () => {
    const tenants: string[] = [];
    for (let i = 0; i < 24; i++) {
      const tenantId = await insertTenant(t, tierId);
      const key = await createKey(t, tenantId);
      expect((await reserve(gw, { apiKey: key.secret })).reason ?? "ALLOW").toBe("ALLOW");
      tenants.push(tenantId);
    }
    const raw = rawRedis() as Cluster;
    try {
      await new Promise((resolve) => (raw.status === "ready" ? resolve(null) : raw.once("ready", resolve)));
      const prefix = t.env.REDIS_KEY_PREFIX!;
      const byTenant = new Map<string, Set<string>>();
      const slots = new Map<string, Set<number>>();
      const masters = raw.nodes("master");
      expect(masters).toHaveLength(REDIS_CLUSTER_NODES.split(",").length);
      for (const node of masters) {
        const addr = `${node.options.host}:${node.options.port}`;
        let cursor = "0";
        do {
          const [next, keys] = await node.scan(cursor, "MATCH", `${prefix}{t:*`, "COUNT", 500);
          cursor = next;
          for (const k of keys) {
            const tenantId = /\{t:([^}]+)\}/.exec(k)![1]!;
            (byTenant.get(tenantId) ?? byTenant.set(tenantId, new Set()).get(tenantId)!).add(addr);
            const slot = Number(await node.cluster("KEYSLOT", k));
            (slots.get(tenantId) ?? slots.set(tenantId, new Set()).get(tenantId)!).add(slot);
          }
        } while (cursor !== "0");
      }
      for (const tenantId of tenants) {
        // Counters, buckets, concurrency set and reservation record: several keys, one slot.
        expect(slots.get(tenantId)?.size, tenantId).toBe(1);
        expect(byTenant.get(tenantId)?.size, tenantId).toBe(1);
      }
      const used = new Set([...byTenant.values()].flatMap((s) => [...s]));
      expect(used.size).toBe(masters.length);
    } finally {
      raw.disconnect();
    }
  });

  it("decides concurrent reserves of tenants on different nodes in one go (scripts routed by their first key)", async () => {
    const keys = [];
    for (let i = 0; i < 30; i++) keys.push(await createKey(t, await insertTenant(t, tierId)));
    // All at once: auto-pipelining batches commands issued in the same tick, so scripts for
    // tenants on every master travel together and must each reach their own node.
    const decisions = await Promise.all(keys.flatMap((k) => Array.from({ length: 4 }, () => reserve(gw, { apiKey: k.secret }))));
    const reasons = decisions.map((d) => d.reason ?? "ALLOW");
    expect(new Set(reasons)).toEqual(new Set(["ALLOW"]));
  });

  it("a revocation published through one node reaches a replica subscribed on another", async () => {
    const tenantId = await insertTenant(t, tierId);
    const key = await createKey(t, tenantId);
    // The second replica lists the seeds in another order, so its subscriber connection sits
    // on a different node than the first replica's: the message has to cross the cluster bus.
    const nodes = REDIS_CLUSTER_NODES.split(",");
    const rotated = [...nodes.slice(1), nodes[0]!].join(",");
    const second: App = await compose(loadConfig({ ...t.env, REDIS_CLUSTER_NODES: rotated }));
    try {
      const port = await second.listen();
      const gw2 = new Client(`http://127.0.0.1:${port}/graphql`, gw.token);
      expect((await reserve(gw2, { apiKey: key.secret })).allowed).toBe(true);
      await t.admin.ok(`mutation($id: ID!) { revokeApiKey(id: $id) { id } }`, { id: key.id });
      const started = Date.now();
      let reason: string | null = null;
      // Well inside the 5 s cache TTL: only the invalidation message can explain a quick denial.
      while (Date.now() - started < 2_000) {
        reason = (await reserve(gw2, { apiKey: key.secret })).reason;
        if (reason === "KEY_REVOKED") break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(reason).toBe("KEY_REVOKED");
      expect(second.config.cacheTtlMs).toBeGreaterThan(2_000);
    } finally {
      await second.stop();
    }
  });

  it("runs a BullMQ queue under the service's hash-tagged prefix", async () => {
    const connection = createQueueRedis({ url: "", clusterNodes: t.app.config.redis.clusterNodes, keyPrefix: "", commandTimeoutMs: 1_000 });
    const prefix = queuePrefix(t.env.REDIS_KEY_PREFIX!);
    const name = uniqueName("probe");
    const queue = new Queue(name, { connection, prefix });
    const seen: string[] = [];
    const worker = new Worker(name, async (job) => void seen.push(job.data.n), { connection, prefix });
    try {
      const done = new Promise<void>((resolve) => worker.on("completed", () => seen.length === 3 && resolve()));
      await queue.addBulk([1, 2, 3].map((n) => ({ name: "probe", data: { n: String(n) } })));
      await done;
      expect(seen.sort()).toEqual(["1", "2", "3"]);
    } finally {
      await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
      connection.disconnect();
    }
  });
});
