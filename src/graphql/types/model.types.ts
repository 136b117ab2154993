import { Field, GraphQLISODateTime, InputType, Int, ObjectType } from "type-graphql";
import { DecimalScalar } from "../scalars.js";
import { Connection } from "./pagination.js";
import { formatPricePerMTok, formatUsd } from "../../domain/billing/money.js";
import { priceInForce, type CostEstimate } from "../../domain/billing/estimate.js";
import type { Model, ModelPrice } from "../../domain/tenancy/types.js";
import type { ModelInput } from "../../domain/tenancy/validation.js";

@ObjectType("ModelPrice", { description: "One version of a model's price, in USD per million tokens." })
export class ModelPriceType {
  @Field(() => DecimalScalar) inputPriceUsdPerMTok!: string;
  @Field(() => DecimalScalar) outputPriceUsdPerMTok!: string;
  @Field(() => GraphQLISODateTime) effectiveFrom!: Date;
}

@ObjectType("Model")
export class ModelType {
  @Field(() => String) name!: string;
  @Field(() => Int) contextWindow!: number;
  @Field(() => String, { nullable: true, description: "The cheaper model a degradation rung or operator may route to." })
  downgradeTo!: string | null;
  @Field(() => ModelPriceType, { nullable: true, description: "The price in force now; null = the model cannot be used." })
  currentPrice!: ModelPriceType | null;
  @Field(() => [ModelPriceType], { description: "Every price version, newest effectiveFrom first (scheduled ones included)." })
  prices!: ModelPriceType[];
  @Field(() => GraphQLISODateTime) createdAt!: Date;
  @Field(() => GraphQLISODateTime) updatedAt!: Date;
}

export const ModelConnection = Connection("ModelConnection", ModelType);

const priceView = (p: ModelPrice): ModelPriceType => ({
  inputPriceUsdPerMTok: formatPricePerMTok(p.inputNano),
  outputPriceUsdPerMTok: formatPricePerMTok(p.outputNano),
  effectiveFrom: p.effectiveFrom,
});

export function modelView(m: Model, now: Date): ModelType {
  const current = priceInForce(m, now);
  return {
    name: m.name,
    contextWindow: m.contextWindow,
    downgradeTo: m.downgradeTo,
    currentPrice: current ? priceView(current) : null,
    prices: m.prices.map(priceView),
    createdAt: m.createdAt,
    updatedAt: m.updatedAt,
  };
}

@InputType("UpsertModelInput", {
  description:
    "Creates the model or changes the fields given. A price pair adds a new price version from effectiveFrom " +
    "(default now, never in the past); history is never rewritten.",
})
export class UpsertModelInput implements ModelInput {
  @Field(() => String) name!: string;
  @Field(() => DecimalScalar, { nullable: true, description: "USD per million input tokens, at most 3 decimals." })
  inputPriceUsdPerMTok?: string | null;
  @Field(() => DecimalScalar, { nullable: true, description: "USD per million output tokens, at most 3 decimals." })
  outputPriceUsdPerMTok?: string | null;
  @Field(() => Int, { nullable: true, description: "Required when creating a model." }) contextWindow?: number | null;
  @Field(() => String, { nullable: true, description: "An existing model; null clears it." }) downgradeTo?: string | null;
  @Field(() => GraphQLISODateTime, { nullable: true }) effectiveFrom?: Date | null;
}

@ObjectType("CostEstimate", { description: "What a request would cost at the price in force now, in USD." })
export class CostEstimateType {
  @Field(() => String) model!: string;
  @Field(() => Int) inputTokens!: number;
  @Field(() => Int, { description: "As given, or the rest of the context window when omitted." }) maxOutputTokens!: number;
  @Field(() => DecimalScalar) inputCostUsd!: string;
  @Field(() => DecimalScalar, { description: "Input only: the cost if the model produces nothing." }) minCostUsd!: string;
  @Field(() => DecimalScalar, { description: "Input plus all of maxOutputTokens." }) maxCostUsd!: string;
  @Field(() => DecimalScalar) inputPriceUsdPerMTok!: string;
  @Field(() => DecimalScalar) outputPriceUsdPerMTok!: string;
  @Field(() => GraphQLISODateTime, { description: "When the price used took effect." }) priceEffectiveFrom!: Date;
}

export function costEstimateView(e: CostEstimate): CostEstimateType {
  return {
    model: e.model,
    inputTokens: e.inputTokens,
    maxOutputTokens: e.maxOutputTokens,
    inputCostUsd: formatUsd(e.inputCostNano),
    minCostUsd: formatUsd(e.minCostNano),
    maxCostUsd: formatUsd(e.maxCostNano),
    inputPriceUsdPerMTok: formatPricePerMTok(e.price.inputNano),
    outputPriceUsdPerMTok: formatPricePerMTok(e.price.outputNano),
    priceEffectiveFrom: e.price.effectiveFrom,
  };
}
