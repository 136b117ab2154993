import { z } from "zod";
import { formatUsd, MAX_COUNTER_NANO, parseUsd } from "../billing/money.js";
import type { AnomalyAction, AnomalySettings, BreakerSettings, Priority, Tier } from "../tenancy/types.js";

/**
 * Per-tier abuse settings: the spend circuit breaker and the anomaly detector. They live in
 * the tier's policy JSON, so a tier written before these existed (or by a fixture that does
 * not name them) reads as the defaults below.
 */

export const DEFAULT_BREAKER_SETTINGS: Readonly<BreakerSettings> = Object.freeze({
  enabled: true,
  // "More than 3× the tenant's normal spend rate for 10 minutes" (DESIGN.md section 7).
  multiplier: 3,
  windowSeconds: 600,
  // Below $10 per window nobody is woken up, whatever the baseline says.
  minSpendNano: 10_000_000_000n,
  cooldownSeconds: 600,
  halfOpenOneIn: 10,
  baselineSeconds: 7 * 86_400,
});

export const DEFAULT_ANOMALY_SETTINGS: Readonly<AnomalySettings> = Object.freeze({
  action: "NONE",
  windowSeconds: 3_600,
  // "100× its usual hourly rate" (issue #5), and never for fewer than 1000 requests an hour.
  volumeMultiplier: 100,
  minRequests: 1_000,
  sizeMultiplier: 20,
  minInputTokens: 8_000,
  minSamples: 100,
  variantMultiplier: 20,
  minVariants: 1_000,
  degradeMaxOutputTokens: 256,
  degradePriority: "BACKGROUND",
  degradeSeconds: 3_600,
  baselineSeconds: 7 * 86_400,
});

export const breakerSettingsOf = (tier: Pick<Tier, "breaker">): BreakerSettings => tier.breaker ?? { ...DEFAULT_BREAKER_SETTINGS };
export const anomalySettingsOf = (tier: Pick<Tier, "anomaly">): AnomalySettings => tier.anomaly ?? { ...DEFAULT_ANOMALY_SETTINGS };

// ── JSON forms (tier policy column): money as a decimal string of nano-USD ──

export interface BreakerSettingsJson {
  enabled: boolean;
  multiplier: number;
  windowSeconds: number;
  minSpendNano: string;
  cooldownSeconds: number;
  halfOpenOneIn: number;
  baselineSeconds: number;
}
export type AnomalySettingsJson = AnomalySettings;

export function breakerSettingsToJson(b: BreakerSettings): BreakerSettingsJson {
  return { ...b, minSpendNano: b.minSpendNano.toString() };
}

/** Fields a stored object lacks (an older row) take their default. */
export function breakerSettingsFromJson(j: Partial<BreakerSettingsJson> | null | undefined): BreakerSettings {
  const d = DEFAULT_BREAKER_SETTINGS;
  if (!j) return { ...d };
  return {
    enabled: j.enabled ?? d.enabled,
    multiplier: j.multiplier ?? d.multiplier,
    windowSeconds: j.windowSeconds ?? d.windowSeconds,
    minSpendNano: j.minSpendNano !== undefined ? BigInt(j.minSpendNano) : d.minSpendNano,
    cooldownSeconds: j.cooldownSeconds ?? d.cooldownSeconds,
    halfOpenOneIn: j.halfOpenOneIn ?? d.halfOpenOneIn,
    baselineSeconds: j.baselineSeconds ?? d.baselineSeconds,
  };
}

export function anomalySettingsFromJson(j: Partial<AnomalySettingsJson> | null | undefined): AnomalySettings {
  return { ...DEFAULT_ANOMALY_SETTINGS, ...(j ?? {}) };
}

// ── operator input (GraphQL input classes satisfy these shapes) ──

export interface BreakerSettingsInput {
  enabled?: boolean | null;
  multiplier?: number | null;
  windowSeconds?: number | null;
  minSpendUsd?: string | null;
  cooldownSeconds?: number | null;
  halfOpenOneIn?: number | null;
  baselineSeconds?: number | null;
}

export interface AnomalySettingsInput {
  action?: string | null;
  windowSeconds?: number | null;
  volumeMultiplier?: number | null;
  minRequests?: number | null;
  sizeMultiplier?: number | null;
  minInputTokens?: number | null;
  minSamples?: number | null;
  variantMultiplier?: number | null;
  minVariants?: number | null;
  degradeMaxOutputTokens?: number | null;
  degradePriority?: string | null;
  degradeSeconds?: number | null;
  baselineSeconds?: number | null;
}

const DAY = 86_400;
const YEAR = 365 * DAY;
const BIG = 1_000_000_000;

const typeError = (expected: string) => (iss: { input?: unknown }) =>
  iss.input === null ? "cannot be null" : iss.input === undefined ? "is required" : `must be ${expected}`;
const whole = (min: number, max: number) => {
  const msg = `must be a whole number from ${min} to ${max}`;
  return z.number({ error: typeError("a whole number") }).int(msg).min(min, msg).max(max, msg);
};
const factor = (max: number) => {
  const msg = `must be a number from 1 to ${max}`;
  return z.number({ error: typeError("a number") }).min(1, msg).max(max, msg).refine(Number.isFinite, msg);
};
const opt = <T extends z.ZodType>(s: T) => s.nullable().optional();

const minSpendUsd = z.string({ error: typeError("a USD decimal string") }).transform((s, ctx): bigint => {
  let nano: bigint;
  try {
    nano = parseUsd(s, "minSpendUsd");
  } catch {
    ctx.addIssue({ code: "custom", message: `"${s}" is not a USD amount (digits with at most 9 decimals, not negative)` });
    return z.NEVER;
  }
  if (nano > MAX_COUNTER_NANO) {
    ctx.addIssue({ code: "custom", message: `must be at most ${formatUsd(MAX_COUNTER_NANO)} USD` });
    return z.NEVER;
  }
  return nano;
});

/** A given settings object replaces the old one whole; fields it leaves out take their default. */
export const breakerSettingsSchema = z
  .object(
    {
      enabled: opt(z.boolean({ error: typeError("a boolean") })),
      multiplier: opt(factor(10_000)),
      windowSeconds: opt(whole(1, DAY)),
      minSpendUsd: opt(minSpendUsd),
      cooldownSeconds: opt(whole(1, DAY)),
      halfOpenOneIn: opt(whole(1, 1_000_000)),
      baselineSeconds: opt(whole(1, YEAR)),
    },
    { error: typeError("an object") },
  )
  .transform((b): BreakerSettings => {
    const d = DEFAULT_BREAKER_SETTINGS;
    return {
      enabled: b.enabled ?? d.enabled,
      multiplier: b.multiplier ?? d.multiplier,
      windowSeconds: b.windowSeconds ?? d.windowSeconds,
      minSpendNano: b.minSpendUsd ?? d.minSpendNano,
      cooldownSeconds: b.cooldownSeconds ?? d.cooldownSeconds,
      halfOpenOneIn: b.halfOpenOneIn ?? d.halfOpenOneIn,
      baselineSeconds: b.baselineSeconds ?? d.baselineSeconds,
    };
  });

export const ANOMALY_ACTIONS = ["NONE", "DEGRADE", "SUSPEND_KEY"] as const satisfies readonly AnomalyAction[];
const PRIORITY_VALUES = ["CRITICAL", "NORMAL", "BACKGROUND"] as const satisfies readonly Priority[];

export const anomalySettingsSchema = z
  .object(
    {
      action: opt(z.enum(ANOMALY_ACTIONS, { error: typeError("an AnomalyAction") })),
      windowSeconds: opt(whole(1, DAY)),
      volumeMultiplier: opt(factor(1_000_000)),
      minRequests: opt(whole(1, BIG)),
      sizeMultiplier: opt(factor(1_000_000)),
      minInputTokens: opt(whole(1, BIG)),
      minSamples: opt(whole(0, BIG)),
      variantMultiplier: opt(factor(1_000_000)),
      minVariants: opt(whole(1, BIG)),
      degradeMaxOutputTokens: opt(whole(1, 2_147_483_647)),
      degradePriority: opt(z.enum(PRIORITY_VALUES, { error: typeError("a Priority") })),
      degradeSeconds: opt(whole(1, 30 * DAY)),
      baselineSeconds: opt(whole(1, YEAR)),
    },
    { error: typeError("an object") },
  )
  .transform((a): AnomalySettings => {
    const out: AnomalySettings = { ...DEFAULT_ANOMALY_SETTINGS };
    for (const [k, v] of Object.entries(a)) if (v !== null && v !== undefined) (out as unknown as Record<string, unknown>)[k] = v;
    return out;
  });
