import { Arg, Args, Authorized, Ctx, ID, Mutation, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context.js";
import { badInput } from "../../lib/errors.js";
import { isIdOf } from "../../lib/ids.js";
import { toConnection, toPage } from "../types/pagination.js";
import {
  AnomaliesArgs,
  AnomalyConnection,
  anomalyView,
  AuditEntryConnection,
  auditEntryView,
  AuditLogArgs,
  BreakerType,
  breakerView,
} from "../types/abuse.types.js";
import { CONFIG_READERS, keysetPage } from "./tier.resolver.js";

/** Who may investigate: operators, and tenant admins for their own tenant. */
const INVESTIGATORS = ["ADMIN", "TENANT_ADMIN"];

const ANOMALY_CURSOR = /^(\d{1,16})\|(anm_[0-9A-Za-z]{8,64})$/;

/** Spend circuit breakers, anomalies and the audit trail (issue #5). */
@Resolver()
export class AbuseResolver {
  @Authorized(CONFIG_READERS)
  @Query(() => BreakerType, { description: "A tenant's spend circuit breaker. Tenant-bound callers see only their own." })
  async breaker(@Arg("tenantId", () => ID) tenantId: string, @Ctx() ctx: GraphQLContext): Promise<BreakerType> {
    return breakerView(await ctx.services.abuse.breakers.tenantBreaker(ctx.actor!, tenantId));
  }

  @Authorized(CONFIG_READERS)
  @Query(() => BreakerType, { description: "The global spend circuit breaker (every tenant's spend together)." })
  async globalBreaker(@Ctx() ctx: GraphQLContext): Promise<BreakerType> {
    return breakerView(await ctx.services.abuse.breakers.globalBreaker());
  }

  @Authorized("ADMIN")
  @Query(() => [BreakerType], { description: "Every tenant breaker that is OPEN or HALF_OPEN, by tenant id." })
  async openBreakers(@Ctx() ctx: GraphQLContext): Promise<BreakerType[]> {
    return (await ctx.services.abuse.breakers.openBreakers(ctx.actor!)).map(breakerView);
  }

  @Authorized("ADMIN")
  @Mutation(() => BreakerType, { description: "Open a tenant's breaker by hand: non-CRITICAL requests are denied CIRCUIT_OPEN until closeBreaker." })
  async openBreaker(@Arg("tenantId", () => ID) tenantId: string, @Arg("reason", () => String) reason: string, @Ctx() ctx: GraphQLContext): Promise<BreakerType> {
    return breakerView(await ctx.services.abuse.breakers.open(ctx.actor!, tenantId, reason));
  }

  @Authorized("ADMIN")
  @Mutation(() => BreakerType, { description: "Close a tenant's breaker; automatic tripping waits one window (the operator has looked)." })
  async closeBreaker(@Arg("tenantId", () => ID) tenantId: string, @Ctx() ctx: GraphQLContext): Promise<BreakerType> {
    return breakerView(await ctx.services.abuse.breakers.close(ctx.actor!, tenantId));
  }

  @Authorized("ADMIN")
  @Mutation(() => BreakerType, { description: "Open the global breaker: every tenant's non-CRITICAL requests are denied CIRCUIT_OPEN." })
  async openGlobalBreaker(@Arg("reason", () => String) reason: string, @Ctx() ctx: GraphQLContext): Promise<BreakerType> {
    return breakerView(await ctx.services.abuse.breakers.openGlobal(ctx.actor!, reason));
  }

  @Authorized("ADMIN")
  @Mutation(() => BreakerType)
  async closeGlobalBreaker(@Ctx() ctx: GraphQLContext): Promise<BreakerType> {
    return breakerView(await ctx.services.abuse.breakers.closeGlobal(ctx.actor!));
  }

  @Authorized(INVESTIGATORS)
  @Query(() => AnomalyConnection, { description: "Anomalies, newest first." })
  async anomalies(@Args(() => AnomaliesArgs) args: AnomaliesArgs, @Ctx() ctx: GraphQLContext) {
    const page = keysetPage(args, (k) => ANOMALY_CURSOR.test(k));
    const m = page.after === null ? null : ANOMALY_CURSOR.exec(page.after)!;
    if (args.tenantId && !isIdOf("tenant", args.tenantId)) throw badInput("tenantId", "is not a tenant id");
    const rows = await ctx.services.abuse.anomalies.anomalies(
      ctx.actor!,
      { tenantId: args.tenantId ?? null, kind: args.kind ?? null, from: args.from ?? null, to: args.to ?? null },
      { first: page.first, after: m ? { at: new Date(Number(m[1])), id: m[2]! } : null },
    );
    return toConnection(toPage(rows.map(anomalyView), page.first, (a) => `${a.detectedAt.getTime()}|${a.id}`));
  }

  @Authorized(INVESTIGATORS)
  @Query(() => AuditEntryConnection, {
    description: "The audit trail, newest first: operator actions, breaker transitions, anomalies, and denials/degradations aggregated per minute.",
  })
  async auditLog(@Args(() => AuditLogArgs) args: AuditLogArgs, @Ctx() ctx: GraphQLContext) {
    const page = keysetPage(args, (k) => k.length <= 64);
    const rows = await ctx.services.abuse.audit.query(
      ctx.actor!,
      { tenantId: args.tenantId ?? null, actorId: args.actorId ?? null, kind: args.kind ?? null, from: args.from ?? null, to: args.to ?? null },
      page,
    );
    const p = toPage(rows, page.first, (r) => r.sortKey);
    return toConnection({ ...p, items: p.items.map(auditEntryView), endCursor: p.endCursor });
  }
}
