import type { NewQuotaEvent } from "./types.js";
import type { Actor, ApiKey } from "../tenancy/types.js";

/**
 * Builders for events whose cause lives outside this folder, so the event's shape is defined
 * once, next to the others, rather than in the service that happens to cause it.
 */

/** `key.revoked`: written in the revocation's own transaction. */
export function keyRevokedEvent(key: ApiKey, actor: Pick<Actor, "kind" | "id">): NewQuotaEvent {
  return {
    type: "key.revoked",
    tenantId: key.tenantId,
    scope: `key:${key.id}`,
    period: null,
    occurredAt: key.revokedAt ?? undefined,
    payload: {
      keyId: key.id,
      keyPrefix: key.prefix,
      keyName: key.name,
      revokedAt: key.revokedAt,
      revokedBy: { kind: actor.kind, id: actor.id },
    },
  };
}
