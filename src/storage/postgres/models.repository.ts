import { asc, eq, gt, inArray, sql } from "drizzle-orm";
import type { Db } from "./db.js";
import { modelPrices, models } from "./schema/index.js";
import { modelFromRows, type ModelPriceRow } from "./mapping.js";
import type { ListPage } from "../../domain/tenancy/tiers.service.js";
import type { ModelRepository, ModelWriter } from "../../domain/billing/models.service.js";
import type { Model, ModelPrice } from "../../domain/tenancy/types.js";

/** Transaction-scoped advisory lock taken by every model write (see ModelRepository.write). */
const MODEL_WRITE_LOCK_KEY = 7_242_101;

type Executor = Pick<Db, "select">;

async function getModel(db: Executor, name: string): Promise<Model | null> {
  const [row] = await db.select().from(models).where(eq(models.name, name)).limit(1);
  if (!row) return null;
  const prices = await db.select().from(modelPrices).where(eq(modelPrices.model, name));
  return modelFromRows(row, prices);
}

export class PostgresModelRepository implements ModelRepository {
  constructor(private readonly db: Db) {}

  get(name: string): Promise<Model | null> {
    return getModel(this.db, name);
  }

  async list(page: ListPage): Promise<Model[]> {
    const rows = await this.db
      .select()
      .from(models)
      .where(page.after === null ? undefined : gt(models.name, page.after))
      .orderBy(asc(models.name))
      .limit(page.limit);
    if (rows.length === 0) return [];
    const prices = await this.db
      .select()
      .from(modelPrices)
      .where(inArray(modelPrices.model, rows.map((r) => r.name)));
    const byModel = new Map<string, ModelPriceRow[]>();
    for (const p of prices) byModel.set(p.model, [...(byModel.get(p.model) ?? []), p]);
    return rows.map((r) => modelFromRows(r, byModel.get(r.name) ?? []));
  }

  write<T>(work: (w: ModelWriter) => Promise<T>): Promise<T> {
    return this.db.transaction(async (tx) => {
      await tx.execute(sql`SELECT pg_advisory_xact_lock(${MODEL_WRITE_LOCK_KEY})`);
      const writer: ModelWriter = {
        get: (name) => getModel(tx, name),
        async insertModel(m) {
          await tx.insert(models).values({ name: m.name, contextWindow: m.contextWindow, downgradeTo: m.downgradeTo, createdAt: m.at, updatedAt: m.at });
        },
        async updateModel(name, m) {
          await tx.update(models).set({ contextWindow: m.contextWindow, downgradeTo: m.downgradeTo, updatedAt: m.at }).where(eq(models.name, name));
        },
        async insertPrice(name: string, price: ModelPrice) {
          const inserted = await tx
            .insert(modelPrices)
            .values({ model: name, effectiveFrom: price.effectiveFrom, inputNanoPerToken: price.inputNano, outputNanoPerToken: price.outputNano })
            .onConflictDoNothing()
            .returning({ model: modelPrices.model });
          return inserted.length === 1 ? "OK" : "EXISTS";
        },
      };
      return work(writer);
    });
  }
}
