import { createHash, timingSafeEqual } from "node:crypto";
import { ID_PREFIX, randomBase62 } from "../lib/ids.js";

/**
 * Bearer secrets (tenant API keys and service credentials) look like
 *
 *     <prefix>_<idCore>_<secret><checksum>
 *
 * - `prefix` says what the string is (and lets secret scanners find leaked ones);
 * - `idCore` is the base62 part of the object's id (`key_<idCore>` / `cred_<idCore>`), so a
 *   verifier finds the record by primary key and never scans by hash;
 * - `secret` is SECRET_LENGTH base62 characters from the CSPRNG (about 190 bits);
 * - `checksum` is CHECKSUM_LENGTH base62 characters of SHA-256 over the rest, so a mistyped,
 *   truncated or made-up string is refused before any cache, database or Redis lookup.
 *
 * The checksum is not a secret and not a MAC: anyone can compute it. It exists to turn typos
 * and garbage into cheap refusals, and (because it is domain-separated by kind) to make a
 * tenant API key never parse as a service credential or the other way round.
 *
 * Only SHA-256 of the whole presented string is stored. Plain SHA-256 (not a password hash)
 * is right here: the input has ~190 bits of entropy, so there is nothing to brute-force.
 */

export const SECRET_LENGTH = 32;
export const CHECKSUM_LENGTH = 6;
/** Anything longer is refused unparsed: a verifier never hashes attacker-sized input. */
export const MAX_TOKEN_LENGTH = 256;

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const CORE_RE = /^[0-9A-Za-z]{8,64}$/;
const TAIL_RE = new RegExp(`^[0-9A-Za-z]{${SECRET_LENGTH + CHECKSUM_LENGTH},128}$`);

/** Also the IdKind of the object a token names. */
export type TokenKind = "apiKey" | "credential";

export interface TokenFormat {
  kind: TokenKind;
  /** The public prefix, e.g. "llm" for keys and "llmsvc" for service credentials. */
  prefix: string;
}

/** Tenant API keys: `<API_KEY_PREFIX>_<keyIdCore>_<secret+checksum>`. */
export function apiKeyFormat(apiKeyPrefix: string): TokenFormat {
  return { kind: "apiKey", prefix: apiKeyPrefix };
}

/**
 * Service credentials share the deployment's prefix with an `svc` suffix, so both kinds are
 * recognisable as this deployment's secrets and yet never confused with each other.
 */
export function credentialFormat(apiKeyPrefix: string): TokenFormat {
  return { kind: "credential", prefix: `${apiKeyPrefix}svc` };
}

function checksumOf(kind: TokenKind, body: string): string {
  const digest = createHash("sha256").update(`${kind}:${body}`).digest();
  // 64 bits of the digest → 6 base62 digits (~35 bits): a typo slips through 1 in 5.7e10.
  let n = digest.readBigUInt64BE(0);
  let out = "";
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out += ALPHABET[Number(n % 62n)];
    n /= 62n;
  }
  return out;
}

function idCoreOf(kind: TokenKind, id: string): string {
  const prefix = `${ID_PREFIX[kind]}_`;
  const core = id.startsWith(prefix) ? id.slice(prefix.length) : "";
  if (!CORE_RE.test(core)) throw new Error(`cannot mint a ${kind} token for malformed id ${id}`);
  return core;
}

/** A new presentable token for the object `id` (`key_…` or `cred_…`). Shown once, never stored. */
export function mintToken(format: TokenFormat, id: string): string {
  const body = `${format.prefix}_${idCoreOf(format.kind, id)}_${randomBase62(SECRET_LENGTH)}`;
  return body + checksumOf(format.kind, body);
}

/** The displayable, non-secret part of a token for `id`: `<prefix>_<idCore>`. */
export function publicPrefix(format: TokenFormat, id: string): string {
  return `${format.prefix}_${idCoreOf(format.kind, id)}`;
}

/** A token that has the format's shape; its checksum is not checked yet (`checksumValid`). */
export interface TokenShape {
  id: string;
  /** The token without its checksum digits, and those digits. */
  body: string;
  checksum: string;
}

/** Everything `parseToken` checks except the checksum, which costs a SHA-256. */
export function parseTokenShape(format: TokenFormat, presented: string): TokenShape | null {
  if (typeof presented !== "string" || presented.length > MAX_TOKEN_LENGTH) return null;
  const parts = presented.split("_");
  if (parts.length !== 3) return null;
  const [prefix, core, tail] = parts as [string, string, string];
  if (prefix !== format.prefix || !CORE_RE.test(core) || !TAIL_RE.test(tail)) return null;
  return { id: `${ID_PREFIX[format.kind]}_${core}`, body: presented.slice(0, presented.length - CHECKSUM_LENGTH), checksum: tail.slice(-CHECKSUM_LENGTH) };
}

export function checksumValid(format: TokenFormat, shape: TokenShape): boolean {
  return checksumOf(format.kind, shape.body) === shape.checksum;
}

/**
 * The object id a well-formed token names, or null when the string is not a token of this
 * format (wrong prefix, wrong shape, too long, bad checksum). Pure: no I/O, no secrets kept.
 */
export function parseToken(format: TokenFormat, presented: string): { id: string } | null {
  const shape = parseTokenShape(format, presented);
  return shape && checksumValid(format, shape) ? { id: shape.id } : null;
}

/** SHA-256 of a presented token: stored as hex, and what a presented one is compared by. */
export function digestToken(presented: string): Buffer {
  return createHash("sha256").update(presented, "utf8").digest();
}

/** What is stored for a token: hex SHA-256 of the whole presented string. */
export function hashToken(presented: string): string {
  return digestToken(presented).toString("hex");
}

/**
 * Constant-time comparison of a presented token's digest against a stored hash, so response
 * timing says nothing about how much of a guess was right.
 */
export function digestMatchesHash(digest: Buffer, storedHashHex: string): boolean {
  const stored = Buffer.from(storedHashHex, "hex");
  return digest.length === stored.length && timingSafeEqual(digest, stored);
}

export function tokenMatchesHash(presented: string, storedHashHex: string): boolean {
  return digestMatchesHash(digestToken(presented), storedHashHex);
}
