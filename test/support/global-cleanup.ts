import { Redis } from "ioredis";
import { CLUSTER_MODE, REDIS_URL } from "./env.js";

/**
 * Vitest global setup: after the run, removes the Redis keys of every key prefix this run made
 * (`k_<time>_<hex>:`, testEnv). In-process test apps drop their own keys when they close; a
 * spawned server can still write after its test's cleanup (its job system's last ticks, a
 * breaker's state while it drains), and a test that shares one prefix among several processes
 * has no single moment to clean. Only prefixes stamped at or after the run's start are touched,
 * so another run's keys stay. Single Redis only: the cluster's nodes are recreated for each run.
 */
export default function setup(): () => Promise<void> {
  const started = Date.now() - 1_000;
  return async () => {
    if (CLUSTER_MODE) return;
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true });
    try {
      await redis.connect();
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", "k_*", "COUNT", 1000);
        const ours = keys.filter((k) => {
          const stamp = /^k_([0-9a-z]+)_[0-9a-f]{8}:/.exec(k)?.[1];
          return stamp !== undefined && parseInt(stamp, 36) >= started;
        });
        if (ours.length) await redis.unlink(...ours);
        cursor = next;
      } while (cursor !== "0");
    } catch {
      // Best effort: nothing to clean on a Redis that is gone.
    } finally {
      redis.disconnect();
    }
  };
}
