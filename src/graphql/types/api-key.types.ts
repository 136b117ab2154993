import { Field, ID, InputType, ObjectType, registerEnumType, GraphQLISODateTime } from "type-graphql";
import { DecimalScalar } from "../scalars.js";
import { Connection } from "./pagination.js";
import { formatUsd } from "../../domain/billing/money.js";
import type { ApiKey } from "../../domain/tenancy/types.js";

export enum ApiKeyStatus {
  ACTIVE = "ACTIVE",
  REVOKED = "REVOKED",
}
registerEnumType(ApiKeyStatus, {
  name: "ApiKeyStatus",
  description: "REVOKED keys are refused (KEY_REVOKED). An ACTIVE key past its expiresAt is refused as KEY_EXPIRED.",
});

@ObjectType("ApiKey", { description: "A tenant's API key. The secret is never readable; only its public prefix is." })
export class ApiKeyType {
  @Field(() => ID) id!: string;
  @Field(() => ID) tenantId!: string;
  @Field(() => String) name!: string;
  @Field(() => String, { description: "The public start of the key (`<prefix>_<id>`), to recognise it in listings." })
  prefix!: string;
  @Field(() => ApiKeyStatus) status!: ApiKeyStatus;
  @Field(() => GraphQLISODateTime, { nullable: true, description: "After this instant the key is refused. Null: no expiry." })
  expiresAt!: Date | null;
  @Field(() => DecimalScalar, { nullable: true, description: "USD per calendar month for this key. Null: only the tenant's budget applies." })
  monthlyBudgetUsd!: string | null;
  @Field(() => DecimalScalar, { nullable: true, description: "USD per calendar day for this key. Null: only the tenant's budget applies." })
  dailyBudgetUsd!: string | null;
  @Field(() => [String], { nullable: true, description: "Routes this key may call, within the tier's. Null: the tier's list." })
  allowedRoutes!: string[] | null;
  @Field(() => [String], { nullable: true, description: "Models this key may call, within the tier's. Null: the tier's list." })
  allowedModels!: string[] | null;
  @Field(() => ID, { nullable: true, description: "The key this one replaced by rotation." })
  rotatedFromId!: string | null;
  @Field(() => GraphQLISODateTime) createdAt!: Date;
  @Field(() => GraphQLISODateTime, { nullable: true }) revokedAt!: Date | null;
}

export function toApiKeyType(k: ApiKey): ApiKeyType {
  return {
    id: k.id,
    tenantId: k.tenantId,
    name: k.name,
    prefix: k.prefix,
    status: k.status as ApiKeyStatus,
    expiresAt: k.expiresAt,
    monthlyBudgetUsd: k.monthlyBudgetNano === null ? null : formatUsd(k.monthlyBudgetNano),
    dailyBudgetUsd: k.dailyBudgetNano === null ? null : formatUsd(k.dailyBudgetNano),
    allowedRoutes: k.allowedRoutes,
    allowedModels: k.allowedModels,
    rotatedFromId: k.rotatedFromId,
    createdAt: k.createdAt,
    revokedAt: k.revokedAt,
  };
}

@ObjectType("ApiKeyWithSecret", { description: "Returned once when a key is created or rotated." })
export class ApiKeyWithSecretType {
  @Field(() => ApiKeyType) apiKey!: ApiKeyType;
  @Field(() => String, { description: "The whole key to give the client. Shown only now: it is stored as a hash and cannot be read again." })
  secret!: string;
}

@InputType("CreateApiKeyInput")
export class CreateApiKeyInput {
  @Field(() => ID) tenantId!: string;
  @Field(() => String, { description: "1 to 200 characters." }) name!: string;
  @Field(() => DecimalScalar, { nullable: true, description: "USD per calendar month (tenant time zone); null for none." })
  monthlyBudgetUsd?: string | null;
  @Field(() => DecimalScalar, { nullable: true, description: "USD per calendar day (tenant time zone); null for none." })
  dailyBudgetUsd?: string | null;
  @Field(() => GraphQLISODateTime, { nullable: true, description: "Must be in the future; null for no expiry." })
  expiresAt?: Date | null;
  @Field(() => [String], { nullable: true, description: "At most 100 entries of 1 to 200 characters. Null: the tier's list; []: none." })
  allowedRoutes?: string[] | null;
  @Field(() => [String], { nullable: true, description: "At most 100 entries of 1 to 200 characters. Null: the tier's list; []: none." })
  allowedModels?: string[] | null;
}

export const ApiKeyConnection = Connection("ApiKeyConnection", ApiKeyType);
export type ApiKeyConnection = InstanceType<typeof ApiKeyConnection>;
