import { createRequire } from "node:module";
import { badInput } from "../../lib/errors.js";
import type { Model, ModelPrice } from "../tenancy/types.js";
import { costNano, type NanoUsd } from "./money.js";

/**
 * Cost estimation before a call. Pure: the caller supplies the model (with its price history)
 * and the time. A model without a price in force is refused, never estimated as free: the
 * same rule the enforcement path applies to unpriced models.
 */

export interface EstimateRequest {
  model: string;
  /** Exactly one of inputTokens and text. */
  inputTokens?: number | null;
  text?: string | null;
  /** Omitted: the rest of the model's context window, the most the model could produce. */
  maxOutputTokens?: number | null;
}

export interface CostEstimate {
  model: string;
  inputTokens: number;
  maxOutputTokens: number;
  price: ModelPrice;
  inputCostNano: NanoUsd;
  /** Input only: what the call costs if the model answers nothing. */
  minCostNano: NanoUsd;
  /** Input plus all of maxOutputTokens. */
  maxCostNano: NanoUsd;
}

/** Tokenizing is CPU work on the event loop; beyond this, callers count tokens themselves. */
export const MAX_ESTIMATE_TEXT_CHARS = 1_000_000;

/**
 * Tokens of `text` in gpt-tokenizer's default encoding (o200k_base): exact for current OpenAI
 * models, an approximation for others. Text that looks like a special token ("<|endoftext|>")
 * is counted as the plain text it is: it must neither fail the estimate nor count as one token.
 */
export function countTextTokens(text: string): number {
  return tokenizer()(text, { disallowedSpecial: new Set() }).length;
}

type Encode = (text: string, opts: { disallowedSpecial: Set<string> }) => number[];
let encode: Encode | null = null;
/**
 * Loaded on the first text estimate, not at start: the encoding tables take about 60 MB of
 * memory that a replica answering checkAndReserve/commit never needs (measured RSS with and
 * without the import). A synchronous require keeps this function synchronous.
 */
function tokenizer(): Encode {
  encode ??= (createRequire(import.meta.url)("gpt-tokenizer") as { encode: Encode }).encode;
  return encode;
}

/** The price in force at `at`: the newest whose effectiveFrom is not after it. */
export function priceInForce(model: Model, at: Date): ModelPrice | null {
  let best: ModelPrice | null = null;
  for (const p of model.prices) {
    if (p.effectiveFrom.getTime() <= at.getTime() && (best === null || p.effectiveFrom.getTime() > best.effectiveFrom.getTime())) best = p;
  }
  return best;
}

export function estimateCost(model: Model | null, req: EstimateRequest, now: Date): CostEstimate {
  if (model === null) throw badInput("model", `unknown model ${JSON.stringify(req.model)}`);
  const hasTokens = req.inputTokens !== undefined && req.inputTokens !== null;
  const hasText = req.text !== undefined && req.text !== null;
  if (hasTokens === hasText) {
    throw badInput(hasText ? "text" : "inputTokens", "give exactly one of inputTokens and text");
  }
  let inputTokens: number;
  if (hasTokens) {
    inputTokens = req.inputTokens!;
    if (!Number.isSafeInteger(inputTokens) || inputTokens < 0) throw badInput("inputTokens", "must be a whole number, 0 or more");
  } else {
    if (req.text!.length > MAX_ESTIMATE_TEXT_CHARS) {
      throw badInput("text", `must be at most ${MAX_ESTIMATE_TEXT_CHARS} characters; count larger prompts yourself and pass inputTokens`);
    }
    inputTokens = countTextTokens(req.text!);
  }
  if (inputTokens > model.contextWindow) {
    throw badInput(hasText ? "text" : "inputTokens", `${inputTokens} tokens exceed the context window of ${model.name} (${model.contextWindow})`);
  }
  const maxOutputTokens = req.maxOutputTokens ?? model.contextWindow - inputTokens;
  if (!Number.isSafeInteger(maxOutputTokens) || maxOutputTokens < 0) throw badInput("maxOutputTokens", "must be a whole number, 0 or more");

  const price = priceInForce(model, now);
  if (price === null) throw badInput("model", `model ${model.name} has no price in force; it cannot be estimated (or used)`);
  const inputCostNano = costNano(inputTokens, 0, price);
  return {
    model: model.name,
    inputTokens,
    maxOutputTokens,
    price,
    inputCostNano,
    minCostNano: inputCostNano,
    maxCostNano: costNano(inputTokens, maxOutputTokens, price),
  };
}
