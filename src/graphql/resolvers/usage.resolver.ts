import { Arg, Authorized, Ctx, GraphQLISODateTime, ID, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import { UsageGroupBy, UsageReportType, usageReportView } from "../types/usage.types.js";

/**
 * Usage reports for operators, billing systems and tenant admins (their own tenant only:
 * another tenant reads as NOT_FOUND, decided in the service). Gateways enforce, they do not read.
 */
@Resolver()
export class UsageResolver {
  @Authorized("ADMIN", "BILLING", "TENANT_ADMIN")
  @Query(() => UsageReportType, {
    description:
      "Usage of a tenant over the tenant-local days overlapping [from, to), optionally grouped. Exact at any moment: rollups plus the ledger rows not rolled up yet.",
  })
  async usage(
    @Arg("tenantId", () => ID) tenantId: string,
    @Arg("from", () => GraphQLISODateTime) from: Date,
    @Arg("to", () => GraphQLISODateTime) to: Date,
    @Arg("groupBy", () => [UsageGroupBy], { nullable: true }) groupBy: UsageGroupBy[] | null,
    @Ctx() ctx: GraphQLContext,
  ): Promise<UsageReportType> {
    return usageReportView(await ctx.services.usage.report(ctx.actor!, { tenantId, from, to, groupBy: groupBy ?? null }));
  }
}
