import { badInput } from "../../lib/errors.js";
import type { CommitRequest, ReserveRequest } from "./types.js";

/** Token counts beyond this are refused: no real request is that large, and money stays < 2^53. */
export const MAX_TOKENS = 1_000_000_000;
const MAX_STRING = 200;
const CLIENT_ADDRESS_RE = /^[0-9A-Za-z.:_%\[\]-]+$/;

function tokens(value: unknown, field: string, optional = false): void {
  if (optional && (value === null || value === undefined)) return;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > MAX_TOKENS) {
    throw badInput(field, `must be a whole number from 0 to ${MAX_TOKENS}`);
  }
}

function text(value: unknown, field: string, opts: { optional?: boolean; max?: number } = {}): void {
  if (opts.optional && (value === null || value === undefined)) return;
  const max = opts.max ?? MAX_STRING;
  if (typeof value !== "string" || value.length === 0) throw badInput(field, "must be a non-empty string");
  if (value.length > max) throw badInput(field, `must be at most ${max} characters`);
}

/** Refuses malformed reserve input with an error naming the field; nothing is touched. */
export function validateReserveRequest(r: ReserveRequest): void {
  text(r.apiKey, "input.apiKey", { max: 512 });
  text(r.route, "input.route");
  text(r.model, "input.model");
  tokens(r.inputTokens, "input.inputTokens");
  tokens(r.maxOutputTokens, "input.maxOutputTokens", true);
  text(r.idempotencyKey, "input.idempotencyKey", { optional: true });
  text(r.subject, "input.subject", { optional: true });
  if (r.tools.length > 64) throw badInput("input.tools", "at most 64 tools");
  text(r.promptFingerprint, "input.promptFingerprint", { optional: true });
  text(r.clientAddress, "input.clientAddress", { optional: true, max: 100 });
  // It becomes part of Redis key names: IPv4/IPv6 (with zone), host names and similar only.
  if (typeof r.clientAddress === "string" && !CLIENT_ADDRESS_RE.test(r.clientAddress)) {
    throw badInput("input.clientAddress", "must be an IP address or host name (letters, digits and . : - _ [ ] %)");
  }
  r.tools.forEach((t, i) => text(t, `input.tools[${i}]`));
}

export function validateCommitRequest(c: CommitRequest): void {
  text(c.reservationId, "input.reservationId", { max: 128 });
  tokens(c.inputTokens, "input.inputTokens");
  tokens(c.outputTokens, "input.outputTokens");
}
