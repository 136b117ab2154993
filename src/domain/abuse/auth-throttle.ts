import type { Logger } from "../../lib/logger.js";
import { ID_PREFIX } from "../../lib/ids.js";
import type { AuthThrottle } from "../enforcement/types.js";
import type { AuthFailureBurst } from "./anomaly.service.js";
import type { AuthThrottleStore } from "./ports.js";

export interface AuthThrottleSettings {
  windowMs: number;
  /** Failures from one client address within the window that block it. */
  maxPerSource: number;
  /** Failures for one key prefix within the window that block it. */
  maxPerPrefix: number;
  blockMs: number;
}

export interface FailedAuthThrottleOptions {
  store: AuthThrottleStore;
  settings: AuthThrottleSettings;
  /** Deployment's API key prefix (`llm` in `llm_<id>_<secret>`). */
  apiKeyPrefix: string;
  /** Told (not awaited) when a source or prefix becomes blocked: an AUTH_FAILURE_BURST anomaly. */
  onBurst?: (b: AuthFailureBurst) => void;
  logger: Logger;
}

const CORE_RE = /^[0-9A-Za-z]{8,64}$/;

/**
 * The public, non-secret part of a presented tenant key (`<prefix>_<idCore>`) when the string
 * is shaped like one, else null. The checksum is not checked: a prefix is only a counter name.
 */
export function publicKeyPrefix(presented: string, apiKeyPrefix: string): string | null {
  if (typeof presented !== "string" || presented.length > 256) return null;
  const parts = presented.split("_");
  if (parts.length !== 3 || parts[0] !== apiKeyPrefix || !CORE_RE.test(parts[1]!)) return null;
  return `${parts[0]}_${parts[1]}`;
}

/** The key id a public prefix names. */
export const keyIdOfPrefix = (prefix: string) => `${ID_PREFIX.apiKey}_${prefix.slice(prefix.indexOf("_") + 1)}`;

/**
 * Failed-authentication throttling (implements the hot path's AuthThrottle port).
 *
 * - Per client address: at `maxPerSource` failures in the window the address is blocked for
 *   `blockMs`, and every request from it is refused RATE_LIMITED before any key lookup.
 * - Per key prefix: at `maxPerPrefix` failures the prefix is blocked; a failing request for it
 *   answers RATE_LIMITED instead of KEY_INVALID (no oracle for guessing), while the right
 *   secret still passes: a throttle anyone can trip must not lock the key's owner out.
 *
 * Fixed windows per scope, each a counter and a block marker under one hash tag (one script
 * call, cluster-safe). A store that cannot be reached never blocks anybody.
 */
export class FailedAuthThrottle implements AuthThrottle {
  constructor(private readonly o: FailedAuthThrottleOptions) {}

  async sourceBlockedMs(source: string): Promise<number> {
    try {
      return await this.o.store.blockedMs("source", source);
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message }, "auth throttle unavailable; not throttling");
      return 0;
    }
  }

  async failed(f: { presentedKey: string; source: string | null; reason: string }): Promise<number> {
    const prefix = publicKeyPrefix(f.presentedKey, this.o.apiKeyPrefix);
    const s = this.o.settings;
    const scopes: Array<["source" | "prefix", string, number]> = [];
    if (f.source) scopes.push(["source", f.source, s.maxPerSource]);
    if (prefix) scopes.push(["prefix", prefix, s.maxPerPrefix]);
    const results = await Promise.all(
      scopes.map(async ([scope, id, max]) => {
        try {
          const r = await this.o.store.recordFailure(scope, id, { windowMs: s.windowMs, max, blockMs: s.blockMs });
          if (r.tripped && this.o.onBurst) {
            this.o.onBurst({ scope, id, failures: r.failures, windowMs: s.windowMs, blockMs: s.blockMs, keyId: prefix && scope === "prefix" ? keyIdOfPrefix(prefix) : null });
          }
          return r.blockedMs;
        } catch (err) {
          this.o.logger.warn({ err: (err as Error).message }, "auth throttle unavailable; failure not counted");
          return 0;
        }
      }),
    );
    return Math.max(0, ...results);
  }
}
