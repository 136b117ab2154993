import { Authorized, Ctx, Field, ObjectType, Query, Resolver } from "type-graphql";
import type { GraphQLContext } from "../context.js";

@ObjectType("Viewer", { description: "The authenticated caller." })
export class ViewerType {
  @Field(() => String) id!: string;
  @Field(() => String) role!: string;
  @Field(() => String, { nullable: true }) tenantId!: string | null;
  @Field(() => String) name!: string;
}

@Resolver()
export class HealthResolver {
  @Authorized()
  @Query(() => ViewerType, { description: "Who the presented credential is." })
  viewer(@Ctx() ctx: GraphQLContext): ViewerType {
    const a = ctx.actor!;
    return { id: a.id, role: a.role, tenantId: a.tenantId, name: a.name };
  }
}
