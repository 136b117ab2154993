import { asc, eq, gt } from "drizzle-orm";
import type { Db } from "./db.js";
import { tiers } from "./schema/index.js";
import { tierFromRow, tierToRow } from "./mapping.js";
import type { ListPage, TierRepository, TierWriteResult } from "../../domain/tenancy/tiers.service.js";
import type { Tier } from "../../domain/tenancy/types.js";

/** Postgres error code of a unique violation, whether drizzle wrapped the driver error or not. */
export function isUniqueViolation(e: unknown, constraint?: string): boolean {
  for (let err: any = e, depth = 0; err && depth < 4; err = err.cause, depth++) {
    if (err.code === "23505") return constraint === undefined || err.constraint === constraint;
  }
  return false;
}

const NAME_TAKEN: TierWriteResult = { ok: false, reason: "NAME_TAKEN" };

export class PostgresTierRepository implements TierRepository {
  constructor(private readonly db: Db) {}

  async get(id: string): Promise<Tier | null> {
    const [row] = await this.db.select().from(tiers).where(eq(tiers.id, id)).limit(1);
    return row ? tierFromRow(row) : null;
  }

  async list(page: ListPage): Promise<Tier[]> {
    const rows = await this.db
      .select()
      .from(tiers)
      .where(page.after === null ? undefined : gt(tiers.name, page.after))
      .orderBy(asc(tiers.name))
      .limit(page.limit);
    return rows.map(tierFromRow);
  }

  async insert(tier: Tier): Promise<TierWriteResult> {
    try {
      const [row] = await this.db
        .insert(tiers)
        .values({ id: tier.id, ...tierToRow(tier), createdAt: tier.createdAt, updatedAt: tier.updatedAt })
        .returning();
      return { ok: true, tier: tierFromRow(row!) };
    } catch (e) {
      if (isUniqueViolation(e, "tiers_name_unique")) return NAME_TAKEN;
      throw e;
    }
  }

  async update(id: string, change: (current: Tier) => Tier): Promise<TierWriteResult> {
    try {
      return await this.db.transaction(async (tx): Promise<TierWriteResult> => {
        const [row] = await tx.select().from(tiers).where(eq(tiers.id, id)).for("update");
        if (!row) return { ok: false, reason: "NOT_FOUND" };
        const next = change(tierFromRow(row));
        const [saved] = await tx
          .update(tiers)
          .set({ ...tierToRow(next), updatedAt: next.updatedAt })
          .where(eq(tiers.id, id))
          .returning();
        return { ok: true, tier: tierFromRow(saved!) };
      });
    } catch (e) {
      if (isUniqueViolation(e, "tiers_name_unique")) return NAME_TAKEN;
      throw e;
    }
  }
}
