import { Arg, Args, Authorized, Ctx, ID, Mutation, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import type { Role } from "../../domain/tenancy/types.js";
import { badInput } from "../../lib/errors.js";
import { encodeCursor, PageArgs, pageRequest, toConnection, toPage, type PageRequest } from "../types/pagination.js";
import { CreateTierInput, TierConnection, TierType, tierView, UpdateTierInput } from "../types/tier.types.js";

/** Readers of tenancy configuration. GATEWAY reads it through the hot path, not this API. */
export const CONFIG_READERS: Role[] = ["ADMIN", "TENANT_ADMIN", "BILLING"];

/**
 * Decodes a keyset cursor and refuses one this list could not have issued: it must re-encode
 * to the same string (valid UTF-8, canonical base64url) and look like this list's sort key.
 */
export function keysetPage(args: PageArgs, isKey: (key: string) => boolean): PageRequest {
  const page = pageRequest(args);
  if (page.after !== null && (encodeCursor(page.after) !== args.after || !isKey(page.after))) {
    throw badInput("after", "is not a cursor this API issued");
  }
  return page;
}

@Resolver(() => TierType)
export class TierResolver {
  @Authorized(CONFIG_READERS)
  @Query(() => TierType, { description: "A tier by id. Tenant-bound callers see only their own tenant's tier." })
  async tier(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<TierType> {
    return tierView(await ctx.services.tiers.tier(ctx.actor!, id));
  }

  @Authorized(CONFIG_READERS)
  @Query(() => TierConnection, { description: "Tiers ordered by name." })
  async tiers(@Args(() => PageArgs) args: PageArgs, @Ctx() ctx: GraphQLContext) {
    const page = keysetPage(args, (k) => k.length > 0 && k.length <= 200);
    const rows = await ctx.services.tiers.tiers(ctx.actor!, { limit: page.first + 1, after: page.after });
    return toConnection(toPage(rows.map(tierView), page.first, (t) => t.name));
  }

  @Authorized("ADMIN")
  @Mutation(() => TierType)
  async createTier(@Arg("input", () => CreateTierInput) input: CreateTierInput, @Ctx() ctx: GraphQLContext): Promise<TierType> {
    return tierView(await ctx.services.tiers.createTier(ctx.actor!, input));
  }

  @Authorized("ADMIN")
  @Mutation(() => TierType, { description: "Partial update; takes effect on every replica within seconds." })
  async updateTier(
    @Arg("id", () => ID) id: string,
    @Arg("input", () => UpdateTierInput) input: UpdateTierInput,
    @Ctx() ctx: GraphQLContext,
  ): Promise<TierType> {
    return tierView(await ctx.services.tiers.updateTier(ctx.actor!, id, input));
  }
}
