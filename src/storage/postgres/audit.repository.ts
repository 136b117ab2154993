import type { Db } from "./db.js";
import { auditLog } from "./schema/index.js";
import type { AuditEntry, AuditLog } from "../../domain/abuse/audit.js";

/** bigint values in details are stored as decimal strings (JSON has no bigint). */
function jsonSafe(details: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(details, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
}

export class PostgresAuditLog implements AuditLog {
  constructor(private readonly db: Db) {}

  async record(e: AuditEntry): Promise<void> {
    await this.db.insert(auditLog).values({
      actorKind: e.actor.kind,
      actorId: e.actor.id,
      tenantId: e.tenantId ?? null,
      action: e.action,
      targetType: e.targetType ?? null,
      targetId: e.targetId ?? null,
      details: jsonSafe(e.details ?? {}),
    });
  }
}
