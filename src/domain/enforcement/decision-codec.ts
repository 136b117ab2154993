import type { Decision } from "./types.js";

/**
 * A Decision as stored for idempotent replay: a retried checkAndReserve gets the first answer
 * back exactly (dates as ISO strings, money as decimal strings, key order preserved).
 */
export function encodeDecision(d: Decision): string {
  return JSON.stringify(d, (_k, v) => (typeof v === "bigint" ? `${v}n` : v));
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

export function decodeDecision(json: string): Decision {
  return JSON.parse(json, (k, v) => {
    if (typeof v === "string") {
      if (k === "costNano" && v.endsWith("n")) return BigInt(v.slice(0, -1));
      if ((k === "expiresAt" || k === "resetAt") && ISO.test(v)) return new Date(v);
    }
    return v;
  }) as Decision;
}
