import { sql } from "drizzle-orm";
import type { Db } from "../storage/postgres/db.js";
import type { OutboxLag } from "./service-metrics.js";

/**
 * How far the outbox relay is behind: unpublished events and the age of the oldest.
 * Served by the partial index on unpublished rows, so a scrape stays cheap when the relay
 * keeps up; a backlog makes the count itself slower, which is bounded by `cap`.
 */
export function outboxLagReader(db: Db, cap = 100_000): () => Promise<OutboxLag> {
  return async () => {
    const r = await db.execute(sql`
      select count(*)::int as n,
             coalesce(extract(epoch from (now() - min(occurred_at))), 0)::float8 as age
        from (select occurred_at from outbox_events where published_at is null order by seq limit ${cap}) w`);
    const row = (r as unknown as { rows: Array<{ n: number; age: number }> }).rows[0];
    return { unpublished: Number(row?.n ?? 0), oldestAgeSeconds: Math.max(0, Number(row?.age ?? 0)) };
  };
}
