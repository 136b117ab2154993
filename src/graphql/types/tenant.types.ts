import { Field, GraphQLISODateTime, ID, InputType, ObjectType } from "type-graphql";
import { Connection } from "./pagination.js";
import { LimitDimension, TenantStatus } from "./enums.js";
import { ScopeLimitsInput, ScopeLimitsType, scopeLimitsView } from "./tier.types.js";
import type { ScopeLimits, Tenant } from "../../domain/tenancy/types.js";
import type { TenantInput } from "../../domain/tenancy/validation.js";

const DIMENSION_OF: Record<keyof ScopeLimits, LimitDimension> = {
  requestsPerMinute: LimitDimension.REQUESTS_PER_MINUTE,
  inputTokensPerMinute: LimitDimension.INPUT_TOKENS_PER_MINUTE,
  outputTokensPerMinute: LimitDimension.OUTPUT_TOKENS_PER_MINUTE,
  concurrentRequests: LimitDimension.CONCURRENT_REQUESTS,
  dailyTokens: LimitDimension.DAILY_TOKENS,
  monthlyTokens: LimitDimension.MONTHLY_TOKENS,
  dailyBudgetNano: LimitDimension.DAILY_BUDGET,
  monthlyBudgetNano: LimitDimension.MONTHLY_BUDGET,
};

@ObjectType("LimitOverrides", {
  description: "A tenant's replacements for its tier's tenant limits. A null dimension is inherited, unless listed in `unlimited`.",
})
export class LimitOverridesType extends ScopeLimitsType {
  @Field(() => [LimitDimension], { description: "Dimensions whose tier limit this tenant is exempt from." })
  unlimited!: LimitDimension[];
}

@ObjectType("Tenant")
export class TenantType {
  @Field(() => ID) id!: string;
  @Field(() => String) name!: string;
  @Field(() => ID) tierId!: string;
  @Field(() => String, { description: "IANA time zone: where the tenant's days and months begin." }) timezone!: string;
  @Field(() => TenantStatus) status!: TenantStatus;
  @Field(() => LimitOverridesType) limitOverrides!: LimitOverridesType;
  @Field(() => GraphQLISODateTime) createdAt!: Date;
  @Field(() => GraphQLISODateTime) updatedAt!: Date;
  /** The domain object, for field resolvers (tier, effectiveLimits); not a GraphQL field. */
  source!: Tenant;
}

export const TenantConnection = Connection("TenantConnection", TenantType);

export function limitOverridesView(o: ScopeLimits): LimitOverridesType {
  const unlimited = (Object.keys(DIMENSION_OF) as Array<keyof ScopeLimits>).filter((k) => o[k] === null).map((k) => DIMENSION_OF[k]);
  return { ...scopeLimitsView(o), unlimited };
}

export function tenantView(t: Tenant): TenantType {
  return {
    id: t.id,
    name: t.name,
    tierId: t.tierId,
    timezone: t.timezone,
    status: t.status as TenantStatus,
    limitOverrides: limitOverridesView(t.limitOverrides),
    createdAt: t.createdAt,
    updatedAt: t.updatedAt,
    source: t,
  };
}

@InputType("CreateTenantInput")
export class CreateTenantInput implements TenantInput {
  @Field(() => String) name!: string;
  @Field(() => ID) tierId!: string;
  @Field(() => String, { nullable: true, description: "IANA time zone name; default UTC." }) timezone?: string | null;
  @Field(() => ScopeLimitsInput, { nullable: true }) limitOverrides?: ScopeLimitsInput | null;
}

@InputType("UpdateTenantInput", { description: "Omitted fields keep their value; limitOverrides, when given, replaces all overrides." })
export class UpdateTenantInput implements TenantInput {
  @Field(() => String, { nullable: true }) name?: string | null;
  @Field(() => ID, { nullable: true }) tierId?: string | null;
  @Field(() => String, { nullable: true }) timezone?: string | null;
  @Field(() => ScopeLimitsInput, { nullable: true }) limitOverrides?: ScopeLimitsInput | null;
}
