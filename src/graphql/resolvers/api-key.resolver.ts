import { Arg, Args, Authorized, Ctx, ID, Int, Mutation, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import { PageArgs, pageRequest, toConnection, toPage } from "../types/pagination.js";
import { ApiKeyConnection, ApiKeyType, ApiKeyWithSecretType, CreateApiKeyInput, toApiKeyType } from "../types/api-key.types.js";
import { parseUsd } from "../../domain/billing/money.js";

/**
 * Tenant API keys. ADMIN manages them; a TENANT_ADMIN reads its own tenant's keys only
 * (another tenant's key reads as NOT_FOUND, enforced in the service). GATEWAY and BILLING
 * credentials are FORBIDDEN here: gateways verify keys through checkAndReserve.
 */
@Resolver()
export class ApiKeyResolver {
  @Authorized("ADMIN")
  @Mutation(() => ApiKeyWithSecretType, { description: "Creates a key. The secret is in this response only." })
  async createApiKey(@Arg("input", () => CreateApiKeyInput) input: CreateApiKeyInput, @Ctx() ctx: GraphQLContext): Promise<ApiKeyWithSecretType> {
    const budget = (v: string | null | undefined, field: string) => (v === null || v === undefined ? null : parseUsd(v, field));
    const { apiKey, secret } = await ctx.services.apiKeys.create(ctx.actor!, {
      tenantId: input.tenantId,
      name: input.name,
      monthlyBudgetNano: budget(input.monthlyBudgetUsd, "input.monthlyBudgetUsd"),
      dailyBudgetNano: budget(input.dailyBudgetUsd, "input.dailyBudgetUsd"),
      expiresAt: input.expiresAt ?? null,
      allowedRoutes: input.allowedRoutes ?? null,
      allowedModels: input.allowedModels ?? null,
    });
    return { apiKey: toApiKeyType(apiKey), secret };
  }

  @Authorized("ADMIN")
  @Mutation(() => ApiKeyWithSecretType, {
    description:
      "Issues a successor key with the same settings; the old key keeps working for overlapSeconds (0 to 2592000) and then expires. The new secret is in this response only.",
  })
  async rotateApiKey(
    @Arg("id", () => ID) id: string,
    @Arg("overlapSeconds", () => Int) overlapSeconds: number,
    @Ctx() ctx: GraphQLContext,
  ): Promise<ApiKeyWithSecretType> {
    const { apiKey, secret } = await ctx.services.apiKeys.rotate(ctx.actor!, id, overlapSeconds);
    return { apiKey: toApiKeyType(apiKey), secret };
  }

  @Authorized("ADMIN")
  @Mutation(() => ApiKeyType, { description: "Revokes a key on every replica within seconds. Revoking twice is harmless." })
  async revokeApiKey(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<ApiKeyType> {
    return toApiKeyType(await ctx.services.apiKeys.revoke(ctx.actor!, id));
  }

  @Authorized("ADMIN", "TENANT_ADMIN")
  @Query(() => ApiKeyType)
  async apiKey(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<ApiKeyType> {
    return toApiKeyType(await ctx.services.apiKeys.get(ctx.actor!, id));
  }

  @Authorized("ADMIN", "TENANT_ADMIN")
  @Query(() => ApiKeyConnection, { description: "A tenant's keys, ordered by id, a page at a time." })
  async apiKeys(
    @Arg("tenantId", () => ID) tenantId: string,
    @Args(() => PageArgs) args: PageArgs,
    @Ctx() ctx: GraphQLContext,
  ): Promise<ApiKeyConnection> {
    const page = pageRequest(args);
    const keys = await ctx.services.apiKeys.list(ctx.actor!, tenantId, page);
    return toConnection(toPage(keys.map(toApiKeyType), page.first, (k) => k.id));
  }
}
