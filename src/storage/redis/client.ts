import { Redis, Cluster, type RedisOptions } from "ioredis";
import { useLeanPipelines } from "./lean-pipeline.js";

export type RedisClient = Redis | Cluster;

export interface RedisSettings {
  url: string;
  clusterNodes: string[];
  keyPrefix: string;
  commandTimeoutMs: number;
}

function clusterSeeds(nodes: string[]) {
  return nodes.map((n) => {
    const [host, port] = n.split(":");
    return { host: host!, port: Number(port) };
  });
}

/**
 * The hot path's connection: no offline queue and a short command timeout, so with Redis
 * unreachable a reserve fails in about `commandTimeoutMs` instead of queueing forever.
 */
export function createHotPathRedis(s: RedisSettings): RedisClient {
  const common: RedisOptions = {
    enableOfflineQueue: false,
    commandTimeout: s.commandTimeoutMs,
    maxRetriesPerRequest: 0,
    keyPrefix: s.keyPrefix || undefined,
    enableAutoPipelining: true,
    lazyConnect: false,
    retryStrategy: (times) => Math.min(times * 50, 1_000),
  };
  const client: RedisClient =
    s.clusterNodes.length > 0
      ? new Cluster(clusterSeeds(s.clusterNodes), {
          redisOptions: common,
          enableOfflineQueue: false,
          keyPrefix: s.keyPrefix || undefined,
          enableAutoPipelining: true,
          clusterRetryStrategy: (times) => Math.min(times * 100, 2_000),
        })
      : new Redis(s.url, common);
  // Every auto-pipelined command goes through a pipeline: see lean-pipeline.ts for why ioredis's
  // own would keep each request alive through every scavenge until the next mark-compact.
  useLeanPipelines(client);
  return client;
}

/**
 * Resolves true once `client` is ready for commands, false after `timeoutMs`. The hot-path
 * client refuses commands until then (no offline queue); a Cluster client is ready only after
 * it has learned the slot map, which takes a few round trips, so start-up waits for it rather
 * than failing its first commands. A Redis that stays down does not block start-up: the
 * service then starts and fails closed until it comes back.
 */
export function whenReady(client: RedisClient, timeoutMs: number): Promise<boolean> {
  if (client.status === "ready") return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      client.off("ready", onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    client.on("ready", onReady);
  });
}

/**
 * A connection for BullMQ and blocking/pub-sub use: BullMQ requires maxRetriesPerRequest null
 * and must be allowed to queue while reconnecting. No keyPrefix: BullMQ has its own `prefix`.
 */
export function createQueueRedis(s: RedisSettings): RedisClient {
  if (s.clusterNodes.length > 0) {
    return new Cluster(clusterSeeds(s.clusterNodes), { redisOptions: { maxRetriesPerRequest: null } });
  }
  return new Redis(s.url, { maxRetriesPerRequest: null });
}

/**
 * A plain subscriber connection for cache invalidation and event fan-out. Its channels are
 * subscribed with `subscribeOnEveryConnection`, not by ioredis's own resubscription: that one
 * sends SUBSCRIBE with no handler, so a disconnect while it was in flight (a replica stopping
 * just as Redis came back) was an unhandled rejection.
 */
export function createSubscriberRedis(s: RedisSettings): Redis {
  const url = s.clusterNodes.length > 0 ? `redis://${s.clusterNodes[0]}` : s.url;
  return new Redis(url, { maxRetriesPerRequest: null, keyPrefix: undefined, autoResubscribe: false });
}

/**
 * Subscribes to `channel` now and again on every reconnection of `subscriber`. Pub/sub keeps
 * nothing for a disconnected subscriber, so `afterResubscribe` runs once the new subscription
 * is in place: a caller drops or reloads what it may have missed, and anything published from
 * then on reaches it. A resubscription that fails (the connection dropped again, or is being
 * closed) is logged; the next reconnection tries again.
 */
export async function subscribeOnEveryConnection(
  subscriber: Redis,
  channel: string,
  log: { warn(o: object, msg: string): void },
  afterResubscribe?: () => void,
): Promise<void> {
  await subscriber.subscribe(channel);
  subscriber.on("ready", () => {
    subscriber.subscribe(channel).then(
      () => afterResubscribe?.(),
      (err: Error) => log.warn({ err: err.message, channel }, "redis resubscription failed; retried on the next reconnection"),
    );
  });
}
