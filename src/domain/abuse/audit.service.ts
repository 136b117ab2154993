import { badInput, notFound } from "../../lib/errors.js";
import { canSeeTenant } from "../tenancy/access.js";
import type { Actor } from "../tenancy/types.js";
import type { AuditFilter, AuditReader, AuditRecord } from "./audit.js";

/**
 * Reads of the audit trail. ADMIN reads everything; a TENANT_ADMIN reads its own tenant's
 * entries only (asking for another tenant reads like an unknown one).
 */
export class AuditService {
  constructor(private readonly reader: AuditReader) {}

  async query(actor: Actor, filter: AuditFilter, page: { first: number; after: string | null }): Promise<AuditRecord[]> {
    let tenantId = filter.tenantId;
    if (actor.tenantId !== null) {
      if (tenantId !== null && !canSeeTenant(actor, tenantId)) throw notFound("tenant", tenantId);
      tenantId = actor.tenantId;
    }
    if (filter.from && filter.to && filter.from.getTime() >= filter.to.getTime()) throw badInput("to", "must be after from");
    if (filter.actorId !== null && (filter.actorId.length === 0 || filter.actorId.length > 200)) throw badInput("actorId", "must be 1 to 200 characters");
    if (page.after !== null && !this.reader.isCursor(page.after)) throw badInput("after", "is not a cursor this API issued");
    return this.reader.query({ ...filter, tenantId }, page);
  }
}
