import type { Actor } from "../tenancy/types.js";
import type { PublishedQuotaEvent } from "./outbox.js";
import { assertTenantVisible } from "../tenancy/access.js";
import { badInput, notFound } from "../../lib/errors.js";
import { isIdOf } from "../../lib/ids.js";

/**
 * Reading published events: `quotaEvents(after, first)` pages and the subscription's replay.
 * Pages are ordered by `deliverySeq`, the relay's gap-free publication order, so a cursor taken
 * at any moment resumes exactly after the last event seen, whatever commits later.
 */

/** Storage port. Implemented by src/storage/postgres/outbox.repository.ts. */
export interface QuotaEventReader {
  /**
   * Published events with `deliverySeq > after` (and `<= upTo` when given), ascending, at most
   * `limit`; only `tenantId`'s when it is not null.
   */
  published(q: { tenantId: string | null; after: bigint; upTo?: bigint | null; limit: number }): Promise<PublishedQuotaEvent[]>;
  /** The highest deliverySeq so far (0 when nothing was published yet). */
  lastDeliverySeq(): Promise<bigint>;
  tenantExists(tenantId: string): Promise<boolean>;
}

/** Cursors are the decimal deliverySeq inside the shared opaque (base64url) wrapper. */
export function parseEventCursor(decoded: string | null, field = "after"): bigint {
  if (decoded === null) return 0n;
  if (!/^\d{1,19}$/.test(decoded)) throw badInput(field, "is not a cursor this API issued");
  return BigInt(decoded);
}

export interface EventPageQuery {
  tenantId: string | null;
  /** Decoded cursor (see pagination.ts) or null for the start. */
  after: string | null;
  first: number;
}

export class QuotaEventService {
  constructor(private readonly opts: { reader: QuotaEventReader }) {}

  /**
   * Which tenant's events the actor reads: a tenant-bound actor (TENANT_ADMIN, tenant-bound
   * BILLING) only its own, with or without naming it; another tenant reads as unknown.
   * An unbound actor reads every tenant's events when it names none.
   */
  private async scope(actor: Actor, tenantId: string | null): Promise<string | null> {
    if (tenantId === null || tenantId === "") return actor.tenantId;
    assertTenantVisible(actor, tenantId, "tenant", tenantId);
    if (!isIdOf("tenant", tenantId) || !(await this.opts.reader.tenantExists(tenantId))) throw notFound("tenant", tenantId);
    return tenantId;
  }

  /** Up to `first + 1` events (the extra one only tells the caller another page exists). */
  async list(actor: Actor, q: EventPageQuery): Promise<PublishedQuotaEvent[]> {
    const tenantId = await this.scope(actor, q.tenantId);
    const after = parseEventCursor(q.after);
    return this.opts.reader.published({ tenantId, after, limit: q.first + 1 });
  }

  /** Refuses a subscription to a tenant the actor may not see (or that does not exist). */
  async authorizeSubscription(actor: Actor, tenantId: string): Promise<string> {
    if (!tenantId) throw badInput("tenantId", "is required");
    return (await this.scope(actor, tenantId))!;
  }
}
