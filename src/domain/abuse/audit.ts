import type { Actor } from "../tenancy/types.js";

/**
 * The audit trail: every operator mutation (and, later, every denial, degradation and breaker
 * transition) with who did it, to which tenant and object, and the non-secret details.
 * Callers must never put a secret in `details`.
 */
export interface AuditEntry {
  actor: Pick<Actor, "kind" | "id"> | { kind: "system"; id: string };
  action: string;
  tenantId?: string | null;
  targetType?: string | null;
  targetId?: string | null;
  details?: Record<string, unknown>;
}

export interface AuditLog {
  record(entry: AuditEntry): Promise<void>;
}
