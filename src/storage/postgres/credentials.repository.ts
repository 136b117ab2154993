import { and, asc, eq, gt } from "drizzle-orm";
import type { Db } from "./db.js";
import { credentials, tenants } from "./schema/index.js";
import { credentialFromRow } from "./mapping.js";
import type { ServiceCredential } from "../../domain/tenancy/types.js";
import type { CredentialRecord, CredentialRepository } from "../../domain/tenancy/credentials.service.js";

export class PostgresCredentialRepository implements CredentialRepository {
  constructor(private readonly db: Db) {}

  async tenantExists(tenantId: string): Promise<boolean> {
    const rows = await this.db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenantId)).limit(1);
    return rows.length > 0;
  }

  async insert(c: ServiceCredential, prefix: string, secretHash: string): Promise<ServiceCredential> {
    const [row] = await this.db
      .insert(credentials)
      .values({ ...c, prefix, secretHash })
      .returning();
    return credentialFromRow(row!);
  }

  async findById(id: string): Promise<ServiceCredential | null> {
    const [row] = await this.db.select().from(credentials).where(eq(credentials.id, id)).limit(1);
    return row ? credentialFromRow(row) : null;
  }

  async findForAuth(id: string): Promise<CredentialRecord | null> {
    const [row] = await this.db.select().from(credentials).where(eq(credentials.id, id)).limit(1);
    return row ? { credential: credentialFromRow(row), secretHash: row.secretHash } : null;
  }

  async list(afterId: string | null, limit: number): Promise<ServiceCredential[]> {
    const rows = await this.db
      .select()
      .from(credentials)
      .where(afterId === null ? undefined : gt(credentials.id, afterId))
      .orderBy(asc(credentials.id))
      .limit(limit);
    return rows.map(credentialFromRow);
  }

  async revoke(id: string, at: Date): Promise<ServiceCredential | null> {
    const [row] = await this.db
      .update(credentials)
      .set({ status: "REVOKED", revokedAt: at })
      .where(and(eq(credentials.id, id), eq(credentials.status, "ACTIVE")))
      .returning();
    return row ? credentialFromRow(row) : null;
  }

  async hasActiveAdmin(): Promise<boolean> {
    const rows = await this.db
      .select({ id: credentials.id })
      .from(credentials)
      .where(and(eq(credentials.role, "ADMIN"), eq(credentials.status, "ACTIVE")))
      .limit(1);
    return rows.length > 0;
  }
}
