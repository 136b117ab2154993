import { Field, GraphQLISODateTime, ID, ObjectType } from "type-graphql";
import { GraphQLJSONObject } from "graphql-scalars";
import { Connection } from "./pagination.js";
import { eventCursor, QUOTA_EVENT_TYPES, type PublishedQuotaEvent } from "../../domain/events/outbox.js";

@ObjectType("QuotaEvent", {
  description:
    "Something billing systems and tenants are told about: a threshold crossed or resolved, a degradation applied or lifted, a budget exhausted, and so on. Delivered at least once; deduplicate on `id`.",
})
export class QuotaEventType {
  @Field(() => ID, { description: "Stable event id (evt_…): the same in every delivery, subscription message and webhook (`webhook-id`)." })
  id!: string;
  @Field(() => String, { description: "Pass as `after` to `quotaEvents` (query or subscription) to resume right after this event." })
  cursor!: string;
  @Field(() => String, { description: `One of: ${QUOTA_EVENT_TYPES.join(", ")}.` })
  type!: string;
  @Field(() => ID, { nullable: true, description: "The tenant concerned; null for service-wide events." })
  tenantId!: string | null;
  @Field(() => String, { nullable: true, description: "What inside the tenant, e.g. `tenant` or `key:key_…`." })
  scope!: string | null;
  @Field(() => String, { nullable: true, description: "The tenant-local period, e.g. `2026-11-21` or `2026-11`, when the event belongs to one." })
  period!: string | null;
  @Field(() => GraphQLJSONObject, { description: "The figures, by event type (see README). Money is USD as decimal strings, large counts as strings." })
  payload!: Record<string, unknown>;
  @Field(() => GraphQLISODateTime) occurredAt!: Date;
  @Field(() => GraphQLISODateTime, { description: "When the relay published it (made it visible here and sent it on)." })
  publishedAt!: Date;
}

export function toQuotaEventType(e: PublishedQuotaEvent): QuotaEventType {
  return {
    id: e.id,
    cursor: eventCursor(e.deliverySeq),
    type: e.type,
    tenantId: e.tenantId,
    scope: e.scope,
    period: e.period,
    payload: e.payload,
    occurredAt: e.occurredAt,
    publishedAt: e.publishedAt,
  };
}

export const QuotaEventConnection = Connection("QuotaEventConnection", QuotaEventType);
export type QuotaEventConnection = InstanceType<typeof QuotaEventConnection>;
