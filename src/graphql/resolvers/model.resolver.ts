import { Arg, Args, Authorized, Ctx, Int, Mutation, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import { PageArgs, toConnection, toPage } from "../types/pagination.js";
import { CostEstimateType, costEstimateView, ModelConnection, ModelType, modelView, UpsertModelInput } from "../types/model.types.js";
import { CONFIG_READERS, keysetPage } from "./tier.resolver.js";

@Resolver(() => ModelType)
export class ModelResolver {
  @Authorized(CONFIG_READERS)
  @Query(() => ModelType, { description: "A model with its current price and price history." })
  async model(@Arg("name", () => String) name: string, @Ctx() ctx: GraphQLContext): Promise<ModelType> {
    return modelView(await ctx.services.models.model(ctx.actor!, name), ctx.services.clock.now());
  }

  @Authorized(CONFIG_READERS)
  @Query(() => ModelConnection, { description: "Models ordered by name." })
  async models(@Args(() => PageArgs) args: PageArgs, @Ctx() ctx: GraphQLContext) {
    const page = keysetPage(args, (k) => k.length > 0 && k.length <= 200);
    const rows = await ctx.services.models.models(ctx.actor!, { limit: page.first + 1, after: page.after });
    const now = ctx.services.clock.now();
    return toConnection(toPage(rows.map((m) => modelView(m, now)), page.first, (m) => m.name));
  }

  @Authorized("ADMIN")
  @Mutation(() => ModelType, { description: "Creates or changes a model; a price pair adds a price version. In force on every replica within seconds." })
  async upsertModel(@Arg("input", () => UpsertModelInput) input: UpsertModelInput, @Ctx() ctx: GraphQLContext): Promise<ModelType> {
    return modelView(await ctx.services.models.upsertModel(ctx.actor!, input), ctx.services.clock.now());
  }

  @Authorized("ADMIN", "TENANT_ADMIN", "GATEWAY", "BILLING")
  @Query(() => CostEstimateType, {
    description: "What a request would cost at the price in force now. Give exactly one of inputTokens and text (counted with gpt-tokenizer).",
  })
  async estimateCost(
    @Arg("model", () => String) model: string,
    @Arg("inputTokens", () => Int, { nullable: true }) inputTokens: number | null | undefined,
    @Arg("text", () => String, { nullable: true }) text: string | null | undefined,
    @Arg("maxOutputTokens", () => Int, { nullable: true, description: "Default: the rest of the model's context window." })
    maxOutputTokens: number | null | undefined,
    @Ctx() ctx: GraphQLContext,
  ): Promise<CostEstimateType> {
    return costEstimateView(await ctx.services.models.estimateCost({ model, inputTokens, text, maxOutputTokens }));
  }
}
