import { Redis } from "ioredis";

/**
 * Unlinks the keys of the Redis at `url` that match the SCAN `pattern` and pass `wanted`.
 * Best effort: a Redis that is gone (a test stopped it) has nothing to clean.
 */
export async function unlinkKeys(url: string, pattern: string, wanted: (key: string) => boolean = () => true): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await redis.connect();
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      const ours = keys.filter(wanted);
      if (ours.length) await redis.unlink(...ours);
      cursor = next;
    } while (cursor !== "0");
  } catch {
    // Nothing to clean.
  } finally {
    redis.disconnect();
  }
}
