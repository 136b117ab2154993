import { Arg, Args, Authorized, Ctx, ID, Query, Resolver, Root, Subscription, type SubscribeResolverData } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import { PageArgs, pageRequest, toConnection, toPage } from "../types/pagination.js";
import { QuotaEventConnection, QuotaEventType, toQuotaEventType } from "../types/event.types.js";
import { parseEventCursor } from "../../domain/events/quota-events.service.js";
import type { PublishedQuotaEvent } from "../../domain/events/outbox.js";

interface SubscriptionArgs {
  tenantId: string;
  after?: string | null;
}

/**
 * Quota events for billing systems and tenant admins: a replayable, cursor-paged log and a live
 * subscription (graphql-ws, same port and path). A TENANT_ADMIN or tenant-bound BILLING
 * credential sees its own tenant only; another tenant reads as NOT_FOUND, like an unknown one.
 */
@Resolver()
export class EventResolver {
  @Authorized("ADMIN", "BILLING", "TENANT_ADMIN")
  @Query(() => QuotaEventConnection, {
    name: "quotaEvents",
    description:
      "Published events in publication order, a page at a time. Resume with `after: pageInfo.endCursor` (or any event's `cursor`): nothing published later is ever placed before a cursor already handed out, so paging to the end and resuming later sees every event exactly once. Without tenantId: every tenant's (unbound callers) or the caller's own tenant's.",
  })
  async quotaEventsPage(
    @Arg("tenantId", () => ID, { nullable: true }) tenantId: string | null | undefined,
    @Args(() => PageArgs) args: PageArgs,
    @Ctx() ctx: GraphQLContext,
  ): Promise<QuotaEventConnection> {
    const page = pageRequest(args);
    const events = await ctx.services.quotaEvents.list(ctx.actor!, { tenantId: tenantId ?? null, after: page.after, first: page.first });
    return toConnection(toPage(events.map(toQuotaEventType), page.first, (e) => Buffer.from(e.cursor, "base64url").toString("utf8")));
  }

  @Authorized("ADMIN", "BILLING", "TENANT_ADMIN")
  @Subscription(() => QuotaEventType, {
    name: "quotaEvents",
    description:
      "A tenant's events as they are published (graphql-ws on /graphql; authenticate with connection_init payload { authorization: \"Bearer …\" }). With `after` (a cursor), first replays every event after it, then continues live, with no gap or repeat in between: a subscriber that reconnects with its last cursor misses nothing. The socket is closed (4403) when the credential is revoked.",
    subscribe: async ({ args, context }: SubscribeResolverData<unknown, SubscriptionArgs, GraphQLContext>) => {
      const tenantId = await context.services.quotaEvents.authorizeSubscription(context.actor!, args.tenantId);
      const cursor = pageRequest({ first: 1, after: args.after ?? null }).after;
      return context.services.eventFeed.open({ tenantId, after: cursor === null ? null : parseEventCursor(cursor) });
    },
  })
  quotaEventsLive(
    @Root() event: PublishedQuotaEvent,
    @Arg("tenantId", () => ID) _tenantId: string,
    @Arg("after", () => String, { nullable: true, description: "Replay the events after this cursor before the live ones." }) _after?: string | null,
  ): QuotaEventType {
    return toQuotaEventType(event);
  }
}
