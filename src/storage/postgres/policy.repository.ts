import { eq } from "drizzle-orm";
import type { Db } from "./db.js";
import { modelPrices, models, tenants, tiers } from "./schema/index.js";
import { modelFromRows, tenantFromRow, tierFromRow } from "./mapping.js";
import type { PolicyLoader } from "../../domain/enforcement/policy-cache.js";

/** Point reads of policy objects for the hot-path cache. */
export class PostgresPolicyLoader implements PolicyLoader {
  constructor(private readonly db: Db) {}

  async tier(id: string) {
    const [row] = await this.db.select().from(tiers).where(eq(tiers.id, id));
    return row ? tierFromRow(row) : null;
  }

  async tenant(id: string) {
    const [row] = await this.db.select().from(tenants).where(eq(tenants.id, id));
    return row ? tenantFromRow(row) : null;
  }

  async model(name: string) {
    const [row] = await this.db.select().from(models).where(eq(models.name, name));
    if (!row) return null;
    const prices = await this.db.select().from(modelPrices).where(eq(modelPrices.model, name));
    return modelFromRows(row, prices);
  }
}
