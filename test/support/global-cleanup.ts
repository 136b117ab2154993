import { unlinkKeys } from "./redis-keys.js";
import { CLUSTER_MODE, KEY_PREFIX_NAME, REDIS_URL, uniqueNameTime } from "./env.js";

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
    await unlinkKeys(REDIS_URL, `${KEY_PREFIX_NAME}_*`, (key) => {
      const end = key.indexOf(":");
      return end > 0 && (uniqueNameTime(KEY_PREFIX_NAME, key.slice(0, end)) ?? -1) >= started;
    });
  };
}
