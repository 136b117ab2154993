import type { Clock } from "../../lib/clock.js";
import type { RedisClient } from "./client.js";
import type { Logger } from "../../lib/logger.js";

/**
 * One clock for every replica: Redis's. Lua scripts read TIME themselves; the app needs the
 * same time to pick a tenant's day and month, so it keeps the offset to Redis's clock,
 * refreshed periodically. If Redis is unreachable the last known offset is kept.
 */
export class RedisClock implements Clock {
  private offsetMs = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly redis: RedisClient,
    private readonly logger: Logger,
  ) {}

  async sync(): Promise<void> {
    try {
      const before = Date.now();
      const [s, us] = await (this.redis as any).time();
      const after = Date.now();
      const redisMs = Number(s) * 1000 + Math.floor(Number(us) / 1000);
      this.offsetMs = redisMs - Math.round((before + after) / 2);
    } catch (err) {
      this.logger.debug({ err }, "redis clock sync failed; keeping last offset");
    }
  }

  async start(intervalMs = 10_000): Promise<void> {
    await this.sync();
    this.timer = setInterval(() => void this.sync(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  now(): Date {
    return new Date(Date.now() + this.offsetMs);
  }
}
