import { Cluster, type Redis } from "ioredis";
import type { Logger } from "../lib/logger.js";
import type { RedisClient } from "../storage/redis/client.js";

export class RedisEvictionPolicyError extends Error {
  constructor(readonly policy: string, readonly node: string) {
    super(
      `Redis at ${node} has maxmemory-policy "${policy}"; the job queues need "noeviction". ` +
        `Under memory pressure any other policy silently deletes queued jobs, job locks and scheduler ` +
        `state (lost rollups, sweeps and events). Set "maxmemory-policy noeviction" in redis.conf ` +
        `(or run CONFIG SET maxmemory-policy noeviction) and start again.`,
    );
    this.name = "RedisEvictionPolicyError";
  }
}

export class RedisUnreachableError extends Error {
  constructor(node: string, ms: number) {
    super(`Redis at ${node} did not answer within ${ms} ms: the job queues cannot start`);
    this.name = "RedisUnreachableError";
  }
}

/** The queue connection waits for Redis indefinitely (BullMQ needs it so); start-up must not. */
function withTimeout<T>(p: Promise<T>, ms: number, node: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RedisUnreachableError(node, ms)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function describe(node: Redis): string {
  const o = node.options;
  return o.path ? o.path : `${o.host ?? "127.0.0.1"}:${o.port ?? 6379}`;
}

/**
 * Refuses a Redis that may evict keys: reads `maxmemory-policy` with CONFIG GET on every node
 * (every master of a Cluster). Managed services often forbid CONFIG; then the policy cannot be
 * checked and a warning says so, rather than refusing a server that may well be configured right.
 */
export async function assertNoEviction(client: RedisClient, logger: Logger, timeoutMs = 15_000): Promise<void> {
  if (client instanceof Cluster && client.status !== "ready") {
    // Cluster nodes are known only once the cluster connection is up.
    await withTimeout(new Promise<void>((resolve) => client.once("ready", () => resolve())), timeoutMs, "the Redis Cluster");
  }
  const nodes: Redis[] = client instanceof Cluster ? client.nodes("master") : [client];
  for (const node of nodes) {
    let reply: unknown;
    try {
      reply = await withTimeout(node.call("CONFIG", "GET", "maxmemory-policy"), timeoutMs, describe(node));
    } catch (err) {
      if (err instanceof RedisUnreachableError) throw err;
      logger.warn(
        { node: describe(node), err: (err as Error).message },
        "could not read Redis maxmemory-policy (CONFIG is not allowed); make sure it is noeviction, or queued jobs may be evicted",
      );
      continue;
    }
    const pairs = Array.isArray(reply) ? (reply as unknown[]).map(String) : [];
    const policy = pairs[1];
    if (policy === undefined) {
      logger.warn({ node: describe(node) }, "Redis did not report maxmemory-policy; make sure it is noeviction");
      continue;
    }
    if (policy !== "noeviction") throw new RedisEvictionPolicyError(policy, describe(node));
  }
}
