import { Arg, Args, Authorized, Ctx, ID, Int, Mutation, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import { PageArgs, pageRequest, toConnection, toPage } from "../types/pagination.js";
import {
  CreateWebhookEndpointInput,
  toWebhookDeliveryType,
  toWebhookEndpointType,
  WebhookDeliveryConnection,
  WebhookEndpointConnection,
  WebhookEndpointType,
  WebhookEndpointWithSecretType,
} from "../types/webhook.types.js";
import { DEFAULT_ROTATION_OVERLAP_SECONDS } from "../../domain/events/webhooks.service.js";

/**
 * Webhook endpoints (Standard Webhooks). ADMIN manages every endpoint; a TENANT_ADMIN manages
 * its own tenant's (another tenant's reads as NOT_FOUND, enforced in the service).
 */
@Resolver()
export class WebhookResolver {
  @Authorized("ADMIN", "TENANT_ADMIN")
  @Mutation(() => WebhookEndpointWithSecretType, { description: "Registers an endpoint. The signing secret is in this response only." })
  async createWebhookEndpoint(
    @Arg("input", () => CreateWebhookEndpointInput) input: CreateWebhookEndpointInput,
    @Ctx() ctx: GraphQLContext,
  ): Promise<WebhookEndpointWithSecretType> {
    const { endpoint, secret } = await ctx.services.webhooks.create(ctx.actor!, {
      url: input.url,
      tenantId: input.tenantId ?? null,
      eventTypes: input.eventTypes ?? null,
    });
    return { endpoint: toWebhookEndpointType(endpoint), secret };
  }

  @Authorized("ADMIN", "TENANT_ADMIN")
  @Mutation(() => WebhookEndpointWithSecretType, {
    description:
      "Issues a new signing secret (in this response only). For overlapSeconds (default 86400, at most 2592000) every message carries two signatures, new and old, space-separated in webhook-signature.",
  })
  async rotateWebhookSecret(
    @Arg("id", () => ID) id: string,
    @Arg("overlapSeconds", () => Int, { nullable: true, defaultValue: DEFAULT_ROTATION_OVERLAP_SECONDS }) overlapSeconds: number,
    @Ctx() ctx: GraphQLContext,
  ): Promise<WebhookEndpointWithSecretType> {
    const { endpoint, secret } = await ctx.services.webhooks.rotateSecret(ctx.actor!, id, overlapSeconds ?? DEFAULT_ROTATION_OVERLAP_SECONDS);
    return { endpoint: toWebhookEndpointType(endpoint), secret };
  }

  @Authorized("ADMIN", "TENANT_ADMIN")
  @Mutation(() => WebhookEndpointType, { description: "Stops all sending to the endpoint (pending deliveries are cancelled) and forgets its secrets. Its delivery log stays queryable." })
  async deleteWebhookEndpoint(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<WebhookEndpointType> {
    return toWebhookEndpointType(await ctx.services.webhooks.delete(ctx.actor!, id));
  }

  @Authorized("ADMIN", "TENANT_ADMIN")
  @Query(() => WebhookEndpointConnection, { description: "Endpoints ordered by id. Without tenantId: all the caller may see." })
  async webhookEndpoints(
    @Arg("tenantId", () => ID, { nullable: true }) tenantId: string | null | undefined,
    @Args(() => PageArgs) args: PageArgs,
    @Ctx() ctx: GraphQLContext,
  ): Promise<WebhookEndpointConnection> {
    const page = pageRequest(args);
    const endpoints = await ctx.services.webhooks.list(ctx.actor!, { tenantId: tenantId ?? null, after: page.after, first: page.first });
    return toConnection(toPage(endpoints.map(toWebhookEndpointType), page.first, (e) => e.id));
  }

  @Authorized("ADMIN", "TENANT_ADMIN")
  @Query(() => WebhookDeliveryConnection, { description: "An endpoint's deliveries, newest first, each with every attempt (status code, error, duration, next retry)." })
  async webhookDeliveries(
    @Arg("endpointId", () => ID) endpointId: string,
    @Args(() => PageArgs) args: PageArgs,
    @Ctx() ctx: GraphQLContext,
  ): Promise<WebhookDeliveryConnection> {
    const page = pageRequest(args);
    const deliveries = await ctx.services.webhooks.deliveries(ctx.actor!, endpointId, { after: page.after, first: page.first });
    const now = ctx.services.clock.now();
    const p = toPage(deliveries, page.first, (d) => d.seq.toString());
    return toConnection({ ...p, items: p.items.map((d) => toWebhookDeliveryType(d, now)) });
  }
}
