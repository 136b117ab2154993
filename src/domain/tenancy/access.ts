import type { Actor } from "./types.js";
import { notFound } from "../../lib/errors.js";

/**
 * A tenant-bound actor may touch only its own tenant's objects. Another tenant's object reads
 * exactly like an unknown one (same error, same message), so ids cannot be probed.
 */
export function canSeeTenant(actor: Actor, tenantId: string): boolean {
  return actor.tenantId === null || actor.tenantId === tenantId;
}

export function assertTenantVisible(actor: Actor, tenantId: string, entity: string, id: string): void {
  if (!canSeeTenant(actor, tenantId)) throw notFound(entity, id);
}
