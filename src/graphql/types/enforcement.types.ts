import { Field, ID, InputType, Int, ObjectType, registerEnumType, GraphQLISODateTime } from "type-graphql";
import { DecimalScalar } from "../scalars.js";
import { LimitDimension, Priority } from "./enums.js";

/** The hot-path contract of DESIGN.md section 4: names are fixed, gateways are written against them. */

/**
 * The hot path's output types resolve every field by plain property access. By default
 * type-graphql wraps each field in a resolver that runs the (empty) middleware chain, which also
 * makes graphql-jit build a resolve-info object per field: for a Decision with a dozen limits that
 * was the largest single allocation of a reserve. None of these fields has a field resolver,
 * `@Authorized` or a middleware, and none may get one while this is set: type-graphql would
 * silently skip it (test/ops/hot-types.test.ts checks the built schema).
 */
const HOT_OUTPUT = { simpleResolvers: true } as const;

export enum DecisionOutcome {
  ALLOW = "ALLOW",
  ALLOW_DEGRADED = "ALLOW_DEGRADED",
  DENY = "DENY",
}
registerEnumType(DecisionOutcome, { name: "DecisionOutcome" });

export enum DecisionReason {
  KEY_INVALID = "KEY_INVALID",
  KEY_REVOKED = "KEY_REVOKED",
  KEY_EXPIRED = "KEY_EXPIRED",
  TENANT_SUSPENDED = "TENANT_SUSPENDED",
  ROUTE_FORBIDDEN = "ROUTE_FORBIDDEN",
  MODEL_FORBIDDEN = "MODEL_FORBIDDEN",
  TOOL_FORBIDDEN = "TOOL_FORBIDDEN",
  PROMPT_TOO_LARGE = "PROMPT_TOO_LARGE",
  RATE_LIMITED = "RATE_LIMITED",
  CONCURRENCY_LIMITED = "CONCURRENCY_LIMITED",
  QUOTA_EXCEEDED = "QUOTA_EXCEEDED",
  BUDGET_EXCEEDED = "BUDGET_EXCEEDED",
  CIRCUIT_OPEN = "CIRCUIT_OPEN",
  BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE",
  DEGRADED = "DEGRADED",
}
registerEnumType(DecisionReason, { name: "DecisionReason" });

export enum CommitStatus {
  SUCCEEDED = "SUCCEEDED",
  FAILED = "FAILED",
  CANCELLED = "CANCELLED",
}
registerEnumType(CommitStatus, { name: "CommitStatus" });

@InputType("CheckAndReserveInput")
export class CheckAndReserveInput {
  @Field(() => String, { description: "The tenant API key the end client presented." })
  apiKey!: string;
  @Field(() => String, { description: 'e.g. "chat.completions"' })
  route!: string;
  @Field(() => String)
  model!: string;
  @Field(() => Int, { description: "The gateway's count or estimate of prompt tokens." })
  inputTokens!: number;
  @Field(() => Int, { nullable: true, description: "Requested output cap; default from the tier." })
  maxOutputTokens?: number | null;
  @Field(() => String, { nullable: true, description: "The gateway's request id: a retry with it returns the first decision." })
  idempotencyKey?: string | null;
  @Field(() => String, { nullable: true, description: "End user inside the tenant, for per-subject limits." })
  subject?: string | null;
  @Field(() => Priority, { nullable: true, defaultValue: Priority.NORMAL })
  priority?: Priority;
  @Field(() => [String], { nullable: true })
  tools?: string[] | null;
  @Field(() => String, {
    nullable: true,
    description: "The end client's address as the gateway saw it (IP or host name): failed-auth throttling per source, and the audit trail.",
  })
  clientAddress?: string | null;
  @Field(() => String, {
    nullable: true,
    description: "A hash of the prompt's shape, chosen by the gateway (never the prompt itself): storms of distinct variants are flagged.",
  })
  promptFingerprint?: string | null;
}

@ObjectType("LimitStatus", HOT_OUTPUT)
export class LimitStatusType {
  @Field(() => LimitDimension) dimension!: LimitDimension;
  @Field(() => String, { description: 'tenant, key:<id>, subject:<s> or "route:<r> model:<m>"' }) scope!: string;
  @Field(() => String, { description: "Tokens or requests, or USD for budgets (as a string: may exceed 2^31)." }) limit!: string;
  @Field(() => String) remaining!: string;
  @Field(() => GraphQLISODateTime, { nullable: true }) resetAt!: Date | null;
}

@ObjectType("Directives", HOT_OUTPUT)
export class DirectivesType {
  @Field(() => String) model!: string;
  @Field(() => Int, { nullable: true }) maxInputTokens!: number | null;
  @Field(() => Int) maxOutputTokens!: number;
  @Field(() => Priority) priority!: Priority;
}

@ObjectType("Reservation", HOT_OUTPUT)
export class ReservationType {
  @Field(() => ID) id!: string;
  @Field(() => GraphQLISODateTime) expiresAt!: Date;
  @Field(() => Int) inputTokens!: number;
  @Field(() => Int) outputTokens!: number;
  @Field(() => DecimalScalar) costUsd!: string;
}

@ObjectType("Decision", HOT_OUTPUT)
export class DecisionType {
  @Field(() => DecisionOutcome) outcome!: DecisionOutcome;
  @Field(() => Boolean) allowed!: boolean;
  @Field(() => DecisionReason, { nullable: true }) reason!: DecisionReason | null;
  @Field(() => String, { nullable: true }) message!: string | null;
  @Field(() => Int, {
    nullable: true,
    description: "How long waiting helps, when it does; at most 2147483647 (24.8 days): a limit that clears later says when in its resetAt.",
  })
  retryAfterMs!: number | null;
  @Field(() => ReservationType, { nullable: true }) reservation!: ReservationType | null;
  @Field(() => DirectivesType, { nullable: true }) directives!: DirectivesType | null;
  @Field(() => [LimitStatusType]) limits!: LimitStatusType[];
  @Field(() => ID, { nullable: true }) tenantId!: string | null;
  @Field(() => ID, { nullable: true }) keyId!: string | null;
}

@InputType("CommitInput")
export class CommitInput {
  @Field(() => ID) reservationId!: string;
  @Field(() => Int) inputTokens!: number;
  @Field(() => Int) outputTokens!: number;
  @Field(() => CommitStatus, { nullable: true, defaultValue: CommitStatus.SUCCEEDED }) status?: CommitStatus;
}

@ObjectType("CommitResult", HOT_OUTPUT)
export class CommitResultType {
  @Field(() => ID) reservationId!: string;
  @Field(() => Int) inputTokens!: number;
  @Field(() => Int) outputTokens!: number;
  @Field(() => DecimalScalar) costUsd!: string;
  @Field(() => Boolean, { description: "Actual usage exceeded the reservation; it is charged in full." }) overage!: boolean;
  @Field(() => Boolean, { description: "This commit was already recorded; nothing new was written." }) replayed!: boolean;
  @Field(() => [LimitStatusType]) limits!: LimitStatusType[];
}

@ObjectType("ReleaseResult", HOT_OUTPUT)
export class ReleaseResultType {
  @Field(() => ID) reservationId!: string;
  @Field(() => Boolean) released!: boolean;
}
