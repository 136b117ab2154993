import { badInput } from "../../lib/errors.js";

/**
 * Money is integer nano-USD (1e-9 USD) held in `bigint`. Floating point never touches it:
 * parsing and formatting work on decimal strings digit by digit.
 */
export type NanoUsd = bigint;

export const NANO_PER_USD = 1_000_000_000n;
/** Counters live in Redis Lua (IEEE doubles), which are exact only up to 2^53. */
export const MAX_COUNTER_NANO = 9_007_199_254_740_991n;

const USD_RE = /^(\d{1,12})(?:\.(\d{1,9}))?$/;

/** "12.5" → 12_500_000_000n. Negative, exponent or more than 9 decimals is refused, naming `field`. */
export function parseUsd(value: string, field: string): NanoUsd {
  const s = value.trim();
  const m = USD_RE.exec(s);
  if (!m) throw badInput(field, `"${value}" is not a non-negative USD amount with at most 9 decimals`);
  const whole = BigInt(m[1]!);
  const frac = BigInt((m[2] ?? "").padEnd(9, "0"));
  return whole * NANO_PER_USD + frac;
}

/** 150_000n → "0.000150000": always 9 decimals so strings compare and sum without surprises. */
export function formatUsd(nano: NanoUsd): string {
  const neg = nano < 0n;
  const abs = neg ? -nano : nano;
  const whole = abs / NANO_PER_USD;
  const frac = (abs % NANO_PER_USD).toString().padStart(9, "0");
  return `${neg ? "-" : ""}${whole}.${frac}`;
}

/**
 * A price quoted per million tokens becomes whole nano-USD per token: "3" → 3000n, "0.15" → 150n.
 * A price with sub-nano-per-token precision (more than 3 decimals per MTok) cannot be charged
 * exactly per token, so it is refused rather than rounded.
 */
export function parsePricePerMTok(value: string, field: string): NanoUsd {
  const perMTokNano = parseUsd(value, field);
  if (perMTokNano % 1_000_000n !== 0n) {
    throw badInput(field, `"${value}" has more than 3 decimals per million tokens; prices are whole nano-USD per token`);
  }
  const perToken = perMTokNano / 1_000_000n;
  if (perToken > 1_000_000n) throw badInput(field, `"${value}" is above the supported 1000 USD per million tokens`);
  return perToken;
}

export function formatPricePerMTok(nanoPerToken: NanoUsd): string {
  return formatUsd(nanoPerToken * 1_000_000n);
}

/** Cost of a request in nano-USD: exact integer arithmetic. */
export function costNano(inputTokens: number | bigint, outputTokens: number | bigint, price: { inputNano: NanoUsd; outputNano: NanoUsd }): NanoUsd {
  return BigInt(inputTokens) * price.inputNano + BigInt(outputTokens) * price.outputNano;
}
