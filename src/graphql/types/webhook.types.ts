import { Field, GraphQLISODateTime, ID, InputType, Int, ObjectType, registerEnumType } from "type-graphql";
import { Connection } from "./pagination.js";
import type { WebhookAttempt, WebhookDelivery, WebhookEndpoint } from "../../domain/events/webhooks.types.js";

export enum WebhookEndpointStatus {
  ACTIVE = "ACTIVE",
  DISABLED = "DISABLED",
  DELETED = "DELETED",
}
registerEnumType(WebhookEndpointStatus, {
  name: "WebhookEndpointStatus",
  description: "DISABLED: the receiver answered 410 Gone; nothing more is sent. DELETED endpoints are listed nowhere but keep their delivery log.",
});

export enum WebhookDeliveryStatus {
  PENDING = "PENDING",
  DELIVERED = "DELIVERED",
  FAILED = "FAILED",
  CANCELLED = "CANCELLED",
}
registerEnumType(WebhookDeliveryStatus, {
  name: "WebhookDeliveryStatus",
  description:
    "PENDING: attempts continue (see nextAttemptAt). DELIVERED: a 2xx was received. FAILED: every attempt failed, or the receiver answered 410. CANCELLED: the endpoint was disabled or deleted first.",
});

export enum WebhookAttemptOutcome {
  IN_PROGRESS = "IN_PROGRESS",
  INTERRUPTED = "INTERRUPTED",
  SUCCEEDED = "SUCCEEDED",
  FAILED = "FAILED",
  GONE = "GONE",
}
registerEnumType(WebhookAttemptOutcome, {
  name: "WebhookAttemptOutcome",
  description: "INTERRUPTED: the sending worker stopped before recording a result; the delivery was (or will be) attempted again with the same webhook-id.",
});

@ObjectType("WebhookEndpoint")
export class WebhookEndpointType {
  @Field(() => ID) id!: string;
  @Field(() => ID, { nullable: true, description: "Null: every tenant's events." }) tenantId!: string | null;
  @Field(() => String) url!: string;
  @Field(() => [String], { nullable: true, description: "Event types sent; null: all." }) eventTypes!: string[] | null;
  @Field(() => WebhookEndpointStatus) status!: WebhookEndpointStatus;
  @Field(() => String, { nullable: true }) disabledReason!: string | null;
  @Field(() => GraphQLISODateTime, { nullable: true }) secretRotatedAt!: Date | null;
  @Field(() => GraphQLISODateTime, { nullable: true, description: "Until then messages carry a second signature made with the previous secret." })
  previousSecretExpiresAt!: Date | null;
  @Field(() => GraphQLISODateTime) createdAt!: Date;
  @Field(() => GraphQLISODateTime) updatedAt!: Date;
}

export function toWebhookEndpointType(e: WebhookEndpoint): WebhookEndpointType {
  return {
    id: e.id,
    tenantId: e.tenantId,
    url: e.url,
    eventTypes: e.eventTypes,
    status: e.status as WebhookEndpointStatus,
    disabledReason: e.disabledReason,
    secretRotatedAt: e.secretRotatedAt,
    previousSecretExpiresAt: e.previousSecretExpiresAt,
    createdAt: e.createdAt,
    updatedAt: e.updatedAt,
  };
}

@ObjectType("WebhookEndpointWithSecret", { description: "Returned when an endpoint is created or its secret rotated." })
export class WebhookEndpointWithSecretType {
  @Field(() => WebhookEndpointType) endpoint!: WebhookEndpointType;
  @Field(() => String, {
    description: "The signing secret (`whsec_…`) for verifying webhook-signature. Shown only now: it cannot be read again.",
  })
  secret!: string;
}

@ObjectType("WebhookAttempt")
export class WebhookAttemptType {
  @Field(() => Int, { description: "1 for the first attempt." }) attempt!: number;
  @Field(() => WebhookAttemptOutcome) outcome!: WebhookAttemptOutcome;
  @Field(() => GraphQLISODateTime) startedAt!: Date;
  @Field(() => GraphQLISODateTime, { nullable: true }) finishedAt!: Date | null;
  @Field(() => Int, { nullable: true }) durationMs!: number | null;
  @Field(() => Int, { nullable: true, description: "The receiver's HTTP status; null when none came (refused, timeout, network error)." })
  statusCode!: number | null;
  @Field(() => String, { nullable: true }) error!: string | null;
  @Field(() => GraphQLISODateTime, { nullable: true, description: "When the next attempt was scheduled after this one failed; null when none follows." })
  nextRetryAt!: Date | null;
}

export function toWebhookAttemptType(a: WebhookAttempt, now: Date): WebhookAttemptType {
  const outcome =
    a.outcome === "STARTED"
      ? a.deadlineAt.getTime() < now.getTime()
        ? WebhookAttemptOutcome.INTERRUPTED
        : WebhookAttemptOutcome.IN_PROGRESS
      : (a.outcome as WebhookAttemptOutcome);
  return {
    attempt: a.attempt,
    outcome,
    startedAt: a.startedAt,
    finishedAt: a.finishedAt,
    durationMs: a.durationMs,
    statusCode: a.statusCode,
    error: a.error,
    nextRetryAt: a.nextAttemptAt,
  };
}

@ObjectType("WebhookDelivery", { description: "One event for one endpoint, with every attempt." })
export class WebhookDeliveryType {
  @Field(() => ID) id!: string;
  @Field(() => ID) endpointId!: string;
  @Field(() => ID, { description: "The event id, sent as webhook-id on every attempt." }) eventId!: string;
  @Field(() => String) eventType!: string;
  @Field(() => WebhookDeliveryStatus) status!: WebhookDeliveryStatus;
  @Field(() => Int) attemptCount!: number;
  @Field(() => GraphQLISODateTime, { nullable: true, description: "When the next attempt is due; null unless PENDING." })
  nextAttemptAt!: Date | null;
  @Field(() => Int, { nullable: true }) lastStatusCode!: number | null;
  @Field(() => String, { nullable: true }) lastError!: string | null;
  @Field(() => GraphQLISODateTime, { nullable: true }) deliveredAt!: Date | null;
  @Field(() => GraphQLISODateTime) createdAt!: Date;
  @Field(() => [WebhookAttemptType], { description: "Oldest first." }) attempts!: WebhookAttemptType[];
}

export function toWebhookDeliveryType(d: WebhookDelivery, now: Date): WebhookDeliveryType {
  return {
    id: d.id,
    endpointId: d.endpointId,
    eventId: d.eventId,
    eventType: d.eventType,
    status: d.status as WebhookDeliveryStatus,
    attemptCount: d.attemptCount,
    nextAttemptAt: d.nextAttemptAt,
    lastStatusCode: d.lastStatusCode,
    lastError: d.lastError,
    deliveredAt: d.deliveredAt,
    createdAt: d.createdAt,
    attempts: d.attempts.map((a) => toWebhookAttemptType(a, now)),
  };
}

@InputType("CreateWebhookEndpointInput")
export class CreateWebhookEndpointInput {
  @Field(() => String, {
    description: "http(s) URL, at most 2048 characters. Hosts resolving to loopback, private or link-local addresses are refused (unless WEBHOOK_ALLOW_PRIVATE_TARGETS).",
  })
  url!: string;
  @Field(() => ID, { nullable: true, description: "The tenant whose events are sent. Null (ADMIN only): every tenant's. A TENANT_ADMIN's defaults to its own." })
  tenantId?: string | null;
  @Field(() => [String], { nullable: true, description: "Event types to send (e.g. threshold.crossed); null: all." })
  eventTypes?: string[] | null;
}

export const WebhookEndpointConnection = Connection("WebhookEndpointConnection", WebhookEndpointType);
export type WebhookEndpointConnection = InstanceType<typeof WebhookEndpointConnection>;
export const WebhookDeliveryConnection = Connection("WebhookDeliveryConnection", WebhookDeliveryType);
export type WebhookDeliveryConnection = InstanceType<typeof WebhookDeliveryConnection>;
