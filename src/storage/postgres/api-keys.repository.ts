import { and, asc, eq, gt } from "drizzle-orm";
import type { Db } from "./db.js";
import { apiKeys, tenants } from "./schema/index.js";
import { apiKeyFromRow, type ApiKeyRow } from "./mapping.js";
import type { ApiKey } from "../../domain/tenancy/types.js";
import type { ApiKeyRecord, ApiKeyRepository, ApiKeyTransaction } from "../../domain/tenancy/api-keys.service.js";
import type { NewQuotaEvent } from "../../domain/events/types.js";
import { appendOutboxEvents } from "./outbox.repository.js";

/** The transaction handle drizzle passes to `db.transaction` callbacks. */
type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];
type Conn = Db | Tx;

function rowOf(key: ApiKey, secretHash: string): ApiKeyRow {
  return { ...key, secretHash };
}

async function insertKey(conn: Conn, key: ApiKey, secretHash: string): Promise<ApiKey> {
  const [row] = await conn.insert(apiKeys).values(rowOf(key, secretHash)).returning();
  return apiKeyFromRow(row!);
}

export class PostgresApiKeyRepository implements ApiKeyRepository {
  constructor(private readonly db: Db) {}

  async tenantExists(tenantId: string): Promise<boolean> {
    const rows = await this.db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)).limit(1);
    return rows.length > 0;
  }

  insert(key: ApiKey, secretHash: string): Promise<ApiKey> {
    return insertKey(this.db, key, secretHash);
  }

  async findById(id: string): Promise<ApiKey | null> {
    const [row] = await this.db.select().from(apiKeys).where(eq(apiKeys.id, id)).limit(1);
    return row ? apiKeyFromRow(row) : null;
  }

  async findForVerification(id: string): Promise<ApiKeyRecord | null> {
    const [row] = await this.db.select().from(apiKeys).where(eq(apiKeys.id, id)).limit(1);
    return row ? { key: apiKeyFromRow(row), secretHash: row.secretHash } : null;
  }

  async listByTenant(tenantId: string, afterId: string | null, limit: number): Promise<ApiKey[]> {
    const rows = await this.db
      .select()
      .from(apiKeys)
      .where(afterId === null ? eq(apiKeys.tenantId, tenantId) : and(eq(apiKeys.tenantId, tenantId), gt(apiKeys.id, afterId)))
      .orderBy(asc(apiKeys.id))
      .limit(limit);
    return rows.map(apiKeyFromRow);
  }

  async revoke(id: string, at: Date, event?: (revoked: ApiKey) => NewQuotaEvent): Promise<ApiKey | null> {
    return this.db.transaction(async (tx) => {
      const [row] = await tx
        .update(apiKeys)
        .set({ status: "REVOKED", revokedAt: at })
        .where(and(eq(apiKeys.id, id), eq(apiKeys.status, "ACTIVE")))
        .returning();
      if (!row) return null;
      const key = apiKeyFromRow(row);
      if (event) await appendOutboxEvents(tx, [event(key)], at);
      return key;
    });
  }

  transaction<T>(fn: (tx: ApiKeyTransaction) => Promise<T>): Promise<T> {
    return this.db.transaction(async (tx) =>
      fn({
        async lockById(id) {
          const [row] = await tx.select().from(apiKeys).where(eq(apiKeys.id, id)).for("update");
          return row ? apiKeyFromRow(row) : null;
        },
        async hasSuccessor(id) {
          const rows = await tx.select({ id: apiKeys.id }).from(apiKeys).where(eq(apiKeys.rotatedFromId, id)).limit(1);
          return rows.length > 0;
        },
        async setExpiresAt(id, expiresAt) {
          await tx.update(apiKeys).set({ expiresAt }).where(eq(apiKeys.id, id));
        },
        insert: (key, secretHash) => insertKey(tx, key, secretHash),
      }),
    );
  }
}
