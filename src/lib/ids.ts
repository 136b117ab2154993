import { randomBytes, randomFillSync } from "node:crypto";

/**
 * Prefixed ids (`ten_…`, `key_…`, `res_…`): a glance at an id tells what it is, and
 * ids of one kind can never be passed where another is expected without the check failing.
 * The random part is base62 so ids contain exactly one underscore, after the prefix.
 */
export const ID_PREFIX = {
  tenant: "ten",
  tier: "tier",
  apiKey: "key",
  credential: "cred",
  reservation: "res",
  event: "evt",
  audit: "aud",
  webhook: "wh",
  webhookDelivery: "whd",
  anomaly: "anm",
} as const;
export type IdKind = keyof typeof ID_PREFIX;

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** `n` base62 characters from the CSPRNG (rejection sampling keeps it unbiased). */
export function randomBase62(n: number): string {
  let out = "";
  while (out.length < n) {
    const buf = randomBytes(n * 2);
    for (const b of buf) {
      if (b < 248) out += ALPHABET[b % 62];
      if (out.length === n) break;
    }
  }
  return out;
}

/**
 * Random bytes for ids, drawn from a pool refilled 4 KB at a time (as node's randomUUID does):
 * a reservation id per request otherwise cost a buffer and a CSPRNG call of its own. Secrets
 * (`randomBase62`, for tokens) keep their own draw, so no secret's bytes wait in a pool.
 */
const ID_POOL = Buffer.allocUnsafe(4096);
let idPoolAt = ID_POOL.length;

/** `n` base62 characters for an id (not a secret), unbiased as in `randomBase62`. */
export function idRandomBase62(n: number): string {
  let out = "";
  while (out.length < n) {
    if (idPoolAt === ID_POOL.length) {
      randomFillSync(ID_POOL);
      idPoolAt = 0;
    }
    const b = ID_POOL[idPoolAt++]!;
    if (b < 248) out += ALPHABET[b % 62];
  }
  return out;
}

export function newId(kind: IdKind, length = 16): string {
  return `${ID_PREFIX[kind]}_${idRandomBase62(length)}`;
}

const ID_RE = /^([a-z]+)_([0-9A-Za-z]{8,64})$/;

/** True when `id` is well formed for `kind`; used to refuse garbage before any lookup. */
export function isIdOf(kind: IdKind, id: string): boolean {
  const m = ID_RE.exec(id);
  return m !== null && m[1] === ID_PREFIX[kind];
}
