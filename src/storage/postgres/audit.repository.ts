import type { Db } from "./db.js";
import type { Tx } from "./outbox.repository.js";
import { auditLog } from "./schema/index.js";
import type { AuditEntry, AuditLog } from "../../domain/abuse/audit.js";

/** bigint as decimal strings, Dates as ISO: what JSON columns can hold exactly. */
export function jsonSafe(v: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x)));
}

/** One audit row, on the pool or inside the caller's transaction. */
export async function insertAudit(conn: Db | Tx, e: AuditEntry): Promise<void> {
  await conn.insert(auditLog).values({
    actorKind: e.actor.kind,
    actorId: e.actor.id,
    tenantId: e.tenantId ?? null,
    action: e.action,
    targetType: e.targetType ?? null,
    targetId: e.targetId ?? null,
    details: jsonSafe(e.details ?? {}),
  });
}

export class PostgresAuditLog implements AuditLog {
  constructor(private readonly db: Db) {}

  async record(e: AuditEntry): Promise<void> {
    await insertAudit(this.db, e);
  }
}
