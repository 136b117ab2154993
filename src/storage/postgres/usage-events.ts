import { newId } from "../../lib/ids.js";
import type { OutboxEvent } from "../../domain/usage/types.js";
import { outboxEvents } from "./schema/events.js";
import type { Executor } from "./usage-sql.js";

/** Rows per INSERT: far below Postgres's 65535 bind-parameter limit (7 per row). */
const CHUNK = 1_000;

/**
 * Writes quota events to the transactional outbox, in the caller's transaction so an event
 * exists exactly when its cause committed. Ids are fresh `evt_…` ids unless reserved earlier
 * (a history row that must name its event). The relay (issue 4, part B) publishes them.
 */
export async function insertOutboxEvents(tx: Executor, events: Array<OutboxEvent & { id?: string }>): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < events.length; i += CHUNK) {
    const rows = events.slice(i, i + CHUNK).map((e) => {
      const id = e.id ?? newId("event");
      ids.push(id);
      return { id, type: e.type, tenantId: e.tenantId, scope: e.scope, period: e.period, payload: e.payload, occurredAt: e.occurredAt };
    });
    await tx.insert(outboxEvents).values(rows);
  }
  return ids;
}
