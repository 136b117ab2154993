import type { OutboxEvent } from "../../domain/usage/types.js";
import { appendOutboxEvents } from "./outbox.repository.js";
import type { Executor } from "./usage-sql.js";

/** Events per INSERT: far below Postgres's bind-parameter limit. */
const CHUNK = 1_000;

/**
 * Writes quota events to the transactional outbox in the caller's transaction, so an event
 * exists exactly when its cause committed, through the outbox's own append (event type, ids and
 * payload are validated there). Ids are fresh `evt_…` ids unless reserved earlier (a history
 * row that must name its event). The relay publishes them.
 */
export async function insertOutboxEvents(tx: Executor, events: Array<OutboxEvent & { id?: string }>): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < events.length; i += CHUNK) {
    const written = await appendOutboxEvents(tx, events.slice(i, i + CHUNK), new Date());
    ids.push(...written.map((e) => e.id));
  }
  return ids;
}
