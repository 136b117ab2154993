import { badInput, notFound } from "../../lib/errors.js";
import { canSeeTenant } from "../tenancy/access.js";
import type { Actor } from "../tenancy/types.js";
import { periodsAt } from "../enforcement/periods.js";
import { addFigures, USAGE_GROUP_BY, ZERO_FIGURES, type UsageGroupBy, type UsageReader, type UsageReport } from "./types.js";

/** The longest range one report may cover: a bound on the work, generous for any billing use. */
export const MAX_REPORT_DAYS = 1_830;
const DAY_MS = 86_400_000;

const pad = (n: number) => String(n).padStart(2, "0");

/** The months wholly inside [fromDay, toDay] (both "YYYY-MM-DD", inclusive). */
export function fullMonthsBetween(fromDay: string, toDay: string): string[] {
  const out: string[] = [];
  let [y, m] = fromDay.split("-").map(Number) as [number, number];
  // The first month counts only if the range starts on its first day.
  if (!fromDay.endsWith("-01")) [y, m] = m === 12 ? [y + 1, 1] : [y, m + 1];
  for (;;) {
    const month = `${String(y).padStart(4, "0")}-${pad(m)}`;
    const last = new Date(Date.UTC(y, m, 0)).getUTCDate();
    if (`${month}-${pad(last)}` > toDay) break;
    out.push(month);
    [y, m] = m === 12 ? [y + 1, 1] : [y, m + 1];
  }
  return out;
}

/**
 * Usage reports: the rollups plus the ledger rows not rolled up yet, read in one snapshot, so a
 * report equals the ledger's sum at that moment. Ranges are tenant-local calendar days: usage
 * counts on the day (in the tenant's time zone) its reservation was made, as quotas do.
 */
export class UsageService {
  constructor(private readonly o: { reader: UsageReader }) {}

  async report(actor: Actor, q: { tenantId: string; from: Date; to: Date; groupBy: UsageGroupBy[] | null }): Promise<UsageReport> {
    const tenant = typeof q.tenantId === "string" && q.tenantId.length <= 128 ? await this.o.reader.tenant(q.tenantId) : null;
    // Another tenant's usage reads exactly like an unknown tenant's.
    if (!tenant || !canSeeTenant(actor, tenant.id)) throw notFound("tenant", String(q.tenantId).slice(0, 128));
    if (!(q.from instanceof Date) || Number.isNaN(q.from.getTime())) throw badInput("from", "is not a valid date-time");
    if (!(q.to instanceof Date) || Number.isNaN(q.to.getTime())) throw badInput("to", "is not a valid date-time");
    if (q.to.getTime() <= q.from.getTime()) throw badInput("to", "must be after from");
    if (q.to.getTime() - q.from.getTime() > MAX_REPORT_DAYS * DAY_MS) throw badInput("to", `the range may cover at most ${MAX_REPORT_DAYS} days`);
    const groupBy = USAGE_GROUP_BY.filter((g) => (q.groupBy ?? []).includes(g));

    // [from, to) covers the local days from the one containing `from` to the one containing
    // the last instant before `to`.
    const fromDay = periodsAt(q.from, tenant.timezone).day;
    const toDay = periodsAt(new Date(q.to.getTime() - 1), tenant.timezone).day;
    const fullMonths = groupBy.includes("DAY") ? [] : fullMonthsBetween(fromDay, toDay);
    const { groups, watermark } = await this.o.reader.report({ tenantId: tenant.id, fromDay, toDay, fullMonths, groupBy });
    return {
      tenantId: tenant.id,
      timezone: tenant.timezone,
      from: q.from,
      to: q.to,
      fromDay,
      toDay,
      groupBy,
      totals: groups.reduce((acc, g) => addFigures(acc, g), ZERO_FIGURES),
      groups,
      rolledUpTo: watermark,
    };
  }
}
