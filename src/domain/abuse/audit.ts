import type { Actor } from "../tenancy/types.js";

/**
 * The audit trail: every operator mutation, breaker transition and anomaly (one entry each,
 * audit_log) and every denial and degradation (aggregated per minute, decision_audit), with who
 * did it, to which tenant and object, and the non-secret details.
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

// ── reading the trail, and the aggregated decisions (issue #5) ──

/**
 * What an entry is about. OPERATOR = any entry a person or service credential caused (it also
 * matches their breaker and key actions); the others by subject. DENIAL and DEGRADATION entries
 * are aggregates: one per minute, actor, tenant, key, route, model and reason, with a count.
 */
export type AuditKind = "OPERATOR" | "DENIAL" | "DEGRADATION" | "BREAKER" | "ANOMALY" | "SYSTEM";

export interface AuditFilter {
  tenantId: string | null;
  actorId: string | null;
  kind: AuditKind | null;
  from: Date | null;
  /** Exclusive. */
  to: Date | null;
}

export interface AuditRecord {
  /** Opaque and stable. */
  id: string;
  at: Date;
  kind: AuditKind;
  actorKind: string;
  actorId: string;
  tenantId: string | null;
  keyId: string | null;
  action: string;
  targetType: string | null;
  targetId: string | null;
  route: string | null;
  model: string | null;
  inputTokens: bigint | null;
  outputTokens: bigint | null;
  /** DENY or ALLOW_DEGRADED for decisions. */
  decision: string | null;
  reason: string | null;
  /** 1 for single entries; aggregated decisions say how many. */
  count: number;
  source: string | null;
  details: Record<string, unknown>;
  /** Where the record sits in the newest-first order; cursors are made of it. */
  sortKey: string;
}

export interface AuditReader {
  /** Newest first; at most `first + 1` records after the one whose sortKey is `after`. */
  query(filter: AuditFilter, page: { first: number; after: string | null }): Promise<AuditRecord[]>;
  /** True when `key` could be a sortKey this reader issued. */
  isCursor(key: string): boolean;
}

/** Denials and degradations of one minute, one caller, one key, one route/model and one reason. */
export interface DecisionAuditGroup {
  minute: Date;
  actorKind: string;
  actorId: string;
  tenantId: string | null;
  keyId: string | null;
  /** The presented key's public part when the key itself was refused (never the secret). */
  keyPrefix: string | null;
  source: string | null;
  route: string;
  model: string;
  outcome: "DENY" | "ALLOW_DEGRADED";
  reason: string;
  count: number;
  inputTokens: bigint;
  outputTokens: bigint;
  lastAt: Date;
  /** The decision's message of the latest occurrence. */
  message: string;
}

/** Adds aggregated decisions; concurrent writers (replicas) add up, they never overwrite. */
export interface DecisionAuditSink {
  add(groups: DecisionAuditGroup[]): Promise<void>;
}
