import { and, asc, eq, gt, type SQL } from "drizzle-orm";
import type { Db } from "./db.js";
import { tenants } from "./schema/index.js";
import { tenantFromRow, tenantToRow } from "./mapping.js";
import type { ListPage } from "../../domain/tenancy/tiers.service.js";
import type { TenantRepository, TenantWriteResult } from "../../domain/tenancy/tenants.service.js";
import type { Tenant } from "../../domain/tenancy/types.js";

export class PostgresTenantRepository implements TenantRepository {
  constructor(private readonly db: Db) {}

  async get(id: string): Promise<Tenant | null> {
    const [row] = await this.db.select().from(tenants).where(eq(tenants.id, id)).limit(1);
    return row ? tenantFromRow(row) : null;
  }

  async list(page: ListPage & { onlyId: string | null }): Promise<Tenant[]> {
    const conditions: SQL[] = [];
    if (page.after !== null) conditions.push(gt(tenants.id, page.after));
    if (page.onlyId !== null) conditions.push(eq(tenants.id, page.onlyId));
    const rows = await this.db
      .select()
      .from(tenants)
      .where(conditions.length === 0 ? undefined : and(...conditions))
      .orderBy(asc(tenants.id))
      .limit(page.limit);
    return rows.map(tenantFromRow);
  }

  async insert(tenant: Tenant): Promise<Tenant> {
    const [row] = await this.db.insert(tenants).values(tenantToRow(tenant)).returning();
    return tenantFromRow(row!);
  }

  async update(id: string, change: (current: Tenant) => Tenant): Promise<TenantWriteResult> {
    return this.db.transaction(async (tx): Promise<TenantWriteResult> => {
      const [row] = await tx.select().from(tenants).where(eq(tenants.id, id)).for("update");
      if (!row) return { ok: false, reason: "NOT_FOUND" };
      const { id: _id, createdAt: _c, ...fields } = tenantToRow(change(tenantFromRow(row)));
      const [saved] = await tx.update(tenants).set(fields).where(eq(tenants.id, id)).returning();
      return { ok: true, tenant: tenantFromRow(saved!) };
    });
  }
}
