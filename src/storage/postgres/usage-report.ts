import { eq, sql } from "drizzle-orm";
import type { Db } from "./db.js";
import { tenants } from "./schema/index.js";
import type { UsageGroup, UsageGroupBy, UsageReader, UsageReportQuery } from "../../domain/usage/types.js";
import { rowsOf, snapshotWatermark } from "./usage-sql.js";

/** Grouping columns of the report's source rows; a fixed list, never caller text. */
const GROUP_COLUMN: Record<UsageGroupBy, string> = { DAY: "day", MONTH: "month", KEY: "key_id", MODEL: "model", ROUTE: "route" };

/**
 * Usage reports from the rollups plus the ledger tail, in one REPEATABLE READ snapshot: the
 * watermark, the rollups and the tail all come from the same moment, so the report equals the
 * ledger's sum at that moment whatever the rollup job is doing. Whole months in the range come
 * from usage_monthly, the other days from usage_daily, rows above the watermark from the ledger.
 */
export class PostgresUsageReader implements UsageReader {
  constructor(private readonly db: Db) {}

  async tenant(tenantId: string): Promise<{ id: string; timezone: string } | null> {
    const [row] = await this.db.select({ id: tenants.id, timezone: tenants.timezone }).from(tenants).where(eq(tenants.id, tenantId));
    return row ?? null;
  }

  async report(q: UsageReportQuery): Promise<{ groups: UsageGroup[]; watermark: bigint }> {
    const cols = q.groupBy.map((g) => GROUP_COLUMN[g]);
    const select = cols.length ? sql.raw(`${cols.join(", ")}, `) : sql.raw("");
    const groupBy = cols.length ? sql.raw(`GROUP BY ${cols.join(", ")} ORDER BY ${cols.join(", ")}`) : sql.raw("");
    const months = q.fullMonths.join(",");
    return this.db.transaction(
      async (tx) => {
        const watermark = await snapshotWatermark(tx);
        const w = watermark.toString();
        const rows = await rowsOf<Record<string, string | null>>(
          tx,
          sql`
          SELECT ${select}
            coalesce(sum(input_tokens), 0)::text AS input_tokens,
            coalesce(sum(output_tokens), 0)::text AS output_tokens,
            coalesce(sum(cost_nano), 0)::text AS cost_nano,
            coalesce(sum(requests), 0)::text AS requests,
            coalesce(sum(failed_requests), 0)::text AS failed_requests,
            coalesce(sum(cancelled_requests), 0)::text AS cancelled_requests,
            coalesce(sum(overage_requests), 0)::text AS overage_requests,
            coalesce(sum(expired_reservations), 0)::text AS expired_reservations,
            count(*)::int AS source_rows
          FROM (
            SELECT period_day AS day, period_month AS month, key_id, model, route, input_tokens, output_tokens, cost_nano,
                   requests, failed_requests, cancelled_requests, overage_requests, expired_reservations
            FROM usage_daily
            WHERE tenant_id = ${q.tenantId} AND period_day >= ${q.fromDay} AND period_day <= ${q.toDay}
              AND period_month <> ALL (string_to_array(${months}, ','))
            UNION ALL
            SELECT NULL, period_month, key_id, model, route, input_tokens, output_tokens, cost_nano,
                   requests, failed_requests, cancelled_requests, overage_requests, expired_reservations
            FROM usage_monthly
            WHERE tenant_id = ${q.tenantId} AND period_month = ANY (string_to_array(${months}, ','))
            UNION ALL
            SELECT period_day, period_month, key_id, model, route, input_tokens, output_tokens, cost_nano,
                   (entry = 'COMMIT')::int, (entry = 'COMMIT' AND status = 'FAILED')::int, (entry = 'COMMIT' AND status = 'CANCELLED')::int,
                   (entry = 'COMMIT' AND overage)::int, (entry = 'EXPIRY')::int
            FROM usage_ledger
            WHERE id > ${w}::bigint AND tenant_id = ${q.tenantId} AND period_day >= ${q.fromDay} AND period_day <= ${q.toDay}
          ) src
          ${groupBy}`,
        );
        const groups: UsageGroup[] = rows
          // Without grouping, an empty range still answers one all-zero row: leave it out.
          .filter((r) => cols.length > 0 || Number(r.source_rows) > 0)
          .map((r) => ({
            day: cols.includes("day") ? (r.day ?? null) : null,
            month: cols.includes("month") ? (r.month ?? null) : cols.includes("day") && r.day ? r.day.slice(0, 7) : null,
            keyId: cols.includes("key_id") ? (r.key_id ?? null) : null,
            model: cols.includes("model") ? (r.model ?? null) : null,
            route: cols.includes("route") ? (r.route ?? null) : null,
            inputTokens: BigInt(r.input_tokens!),
            outputTokens: BigInt(r.output_tokens!),
            costNano: BigInt(r.cost_nano!),
            requests: BigInt(r.requests!),
            failedRequests: BigInt(r.failed_requests!),
            cancelledRequests: BigInt(r.cancelled_requests!),
            overageRequests: BigInt(r.overage_requests!),
            expiredReservations: BigInt(r.expired_reservations!),
          }));
        return { groups, watermark };
      },
      { isolationLevel: "repeatable read", accessMode: "read only" },
    );
  }
}
