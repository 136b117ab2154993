import { Arg, Args, Authorized, Ctx, FieldResolver, ID, Mutation, Query, Resolver, Root } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import { isIdOf } from "../../lib/ids.js";
import { mergeLimitOverrides } from "../../domain/tenancy/tenants.service.js";
import { PageArgs, toConnection, toPage } from "../types/pagination.js";
import { CreateTenantInput, TenantConnection, TenantType, tenantView, UpdateTenantInput } from "../types/tenant.types.js";
import { ScopeLimitsType, scopeLimitsView, TierType, tierView } from "../types/tier.types.js";
import { CONFIG_READERS, keysetPage } from "./tier.resolver.js";

@Resolver(() => TenantType)
export class TenantResolver {
  @Authorized(CONFIG_READERS)
  @Query(() => TenantType, { description: "A tenant by id. Tenant-bound callers see only their own; any other id is NOT_FOUND." })
  async tenant(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<TenantType> {
    return tenantView(await ctx.services.tenants.tenant(ctx.actor!, id));
  }

  @Authorized(CONFIG_READERS)
  @Query(() => TenantConnection, { description: "Tenants ordered by id; a tenant-bound caller's list holds only its own tenant." })
  async tenants(@Args(() => PageArgs) args: PageArgs, @Ctx() ctx: GraphQLContext) {
    const page = keysetPage(args, (k) => isIdOf("tenant", k));
    const rows = await ctx.services.tenants.tenants(ctx.actor!, { limit: page.first + 1, after: page.after });
    return toConnection(toPage(rows.map(tenantView), page.first, (t) => t.id));
  }

  @Authorized("ADMIN")
  @Mutation(() => TenantType)
  async createTenant(@Arg("input", () => CreateTenantInput) input: CreateTenantInput, @Ctx() ctx: GraphQLContext): Promise<TenantType> {
    return tenantView(await ctx.services.tenants.createTenant(ctx.actor!, input));
  }

  @Authorized("ADMIN")
  @Mutation(() => TenantType, { description: "Partial update; takes effect on every replica within seconds." })
  async updateTenant(
    @Arg("id", () => ID) id: string,
    @Arg("input", () => UpdateTenantInput) input: UpdateTenantInput,
    @Ctx() ctx: GraphQLContext,
  ): Promise<TenantType> {
    return tenantView(await ctx.services.tenants.updateTenant(ctx.actor!, id, input));
  }

  @Authorized("ADMIN")
  @Mutation(() => TenantType, { description: "Denies all of the tenant's requests (TENANT_SUSPENDED) until resumed. Idempotent." })
  async suspendTenant(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<TenantType> {
    return tenantView(await ctx.services.tenants.suspendTenant(ctx.actor!, id));
  }

  @Authorized("ADMIN")
  @Mutation(() => TenantType, { description: "Lifts a suspension. Idempotent." })
  async resumeTenant(@Arg("id", () => ID) id: string, @Ctx() ctx: GraphQLContext): Promise<TenantType> {
    return tenantView(await ctx.services.tenants.resumeTenant(ctx.actor!, id));
  }

  // A caller who may see the tenant may see its tier: the parent query did the scoping.
  @FieldResolver(() => TierType)
  async tier(@Root() tenant: TenantType, @Ctx() ctx: GraphQLContext): Promise<TierType> {
    return tierView(await this.tierOf(tenant, ctx));
  }

  @FieldResolver(() => ScopeLimitsType, { description: "The tier's tenant limits with this tenant's overrides applied: what enforcement applies." })
  async effectiveLimits(@Root() tenant: TenantType, @Ctx() ctx: GraphQLContext): Promise<ScopeLimitsType> {
    const tier = await this.tierOf(tenant, ctx);
    return scopeLimitsView(mergeLimitOverrides(tier.tenantLimits, tenant.source.limitOverrides));
  }

  private async tierOf(tenant: TenantType, ctx: GraphQLContext) {
    const tier = await ctx.services.tiers.getTier(tenant.tierId);
    // The foreign key and the absence of tier deletion make this unreachable; if it happens it is a fault.
    if (!tier) throw new Error(`tenant ${tenant.id} references missing tier ${tenant.tierId}`);
    return tier;
  }
}
