import type { AnomalySettings } from "../tenancy/types.js";
import { alphaFor, baselineMean, emptyBaseline, learnThrough, type Baseline } from "./baseline.js";

/**
 * Anomalies: what is flagged, on what evidence, and the pure rules that find them in a key's
 * per-bucket statistics. Each rule compares a window's figure with the key's own baseline
 * (a multiple of it) and an absolute floor, because a brand-new key has no baseline at all.
 */

export type AnomalyKind = "VOLUME_SPIKE" | "LARGE_REQUEST" | "PROMPT_VARIANT_STORM" | "AUTH_FAILURE_BURST";
export const ANOMALY_KINDS: readonly AnomalyKind[] = ["VOLUME_SPIKE", "LARGE_REQUEST", "PROMPT_VARIANT_STORM", "AUTH_FAILURE_BURST"];

/** What was done about an anomaly: the tier's action for key anomalies, THROTTLE for failed-auth bursts. */
export type AnomalyActionTaken = "NONE" | "DEGRADE" | "SUSPEND_KEY" | "THROTTLE";

export interface Anomaly {
  id: string; // anm_…
  kind: AnomalyKind;
  tenantId: string | null;
  keyId: string | null;
  /** The client address (failed-auth bursts per source). */
  source: string | null;
  /** The public key prefix (failed-auth bursts per key prefix). */
  keyPrefix: string | null;
  detectedAt: Date;
  windowStart: Date;
  windowEnd: Date;
  /** The figures the rule fired on; never a secret or a prompt. */
  evidence: Record<string, unknown>;
  action: AnomalyActionTaken;
  /** What the action did ("key revoked", "degraded until …"), or why it failed. */
  actionResult: string | null;
}

/** One time bucket of one key's traffic. */
export interface KeyBucket {
  requests: number;
  inputTokens: number;
  maxInputTokens: number;
  /** Distinct prompt fingerprints seen in this bucket alone. */
  variants: number;
}

/**
 * A key's baselines: requests and prompt variants per bucket (moving means), and its usual
 * prompt size as exponentially decayed sums of tokens and requests.
 */
export interface KeyBaseline {
  requests: Baseline;
  variants: Baseline;
  sizeTokens: number;
  sizeRequests: number;
  /** Requests ever learned (undecayed): the usual size is trusted from minSamples on. */
  samples: number;
}

export const emptyKeyBaseline = (): KeyBaseline => ({ requests: emptyBaseline(), variants: emptyBaseline(), sizeTokens: 0, sizeRequests: 0, samples: 0 });

export interface DetectedAnomaly {
  kind: Exclude<AnomalyKind, "AUTH_FAILURE_BURST">;
  evidence: Record<string, unknown>;
}

export interface KeyWindow {
  /** Per bucket index, the buckets inside the window [cur − W + 1, cur] that saw traffic. */
  buckets: ReadonlyMap<number, KeyBucket>;
  /** Distinct fingerprints over the whole window (a HyperLogLog union: ±1%). */
  windowVariants: number;
  bucketMs: number;
  /** The current bucket index (still filling). */
  current: number;
}

export const keyWindowBuckets = (s: AnomalySettings, bucketMs: number) => Math.max(1, Math.ceil((s.windowSeconds * 1000) / bucketMs));

export function usualSize(b: KeyBaseline): number {
  return b.sizeRequests > 0 ? b.sizeTokens / b.sizeRequests : 0;
}

/** The rules, against the baseline as it stood before this window's buckets are learned. */
export function detectKeyAnomalies(b: KeyBaseline, s: AnomalySettings, w: KeyWindow): DetectedAnomaly[] {
  const W = keyWindowBuckets(s, w.bucketMs);
  const alpha = alphaFor(w.bucketMs, s.baselineSeconds);
  let requests = 0;
  let maxInputTokens = 0;
  for (const [bucket, k] of w.buckets) {
    if (bucket < w.current - W + 1 || bucket > w.current) continue;
    requests += k.requests;
    maxInputTokens = Math.max(maxInputTokens, k.maxInputTokens);
  }
  const out: DetectedAnomaly[] = [];
  const usualRequests = baselineMean(b.requests, alpha) * W;
  const volumeBar = Math.max(s.minRequests, Math.ceil(s.volumeMultiplier * usualRequests));
  if (requests >= volumeBar) {
    out.push({
      kind: "VOLUME_SPIKE",
      evidence: { requests, windowSeconds: s.windowSeconds, usualRequests: round2(usualRequests), multiplier: s.volumeMultiplier, minRequests: s.minRequests, bar: volumeBar },
    });
  }
  const usual = usualSize(b);
  if (b.samples >= s.minSamples && usual > 0) {
    const sizeBar = Math.max(s.minInputTokens, Math.ceil(s.sizeMultiplier * usual));
    if (maxInputTokens >= sizeBar) {
      out.push({
        kind: "LARGE_REQUEST",
        evidence: { maxInputTokens, usualInputTokens: round2(usual), samples: b.samples, multiplier: s.sizeMultiplier, minInputTokens: s.minInputTokens, bar: sizeBar },
      });
    }
  }
  const usualVariants = baselineMean(b.variants, alpha) * W;
  const variantBar = Math.max(s.minVariants, Math.ceil(s.variantMultiplier * usualVariants));
  if (w.windowVariants >= variantBar) {
    out.push({
      kind: "PROMPT_VARIANT_STORM",
      evidence: { distinctFingerprints: w.windowVariants, windowSeconds: s.windowSeconds, usualDistinct: round2(usualVariants), multiplier: s.variantMultiplier, minVariants: s.minVariants, bar: variantBar },
    });
  }
  return out;
}

/** Learns the completed buckets (everything before the current one) into the key's baselines. */
export function learnKeyBaseline(b: KeyBaseline, s: AnomalySettings, w: KeyWindow): KeyBaseline {
  const W = keyWindowBuckets(s, w.bucketMs);
  const alpha = alphaFor(w.bucketMs, s.baselineSeconds);
  const through = w.current - 1;
  const common = { through, firstBucket: w.current - W, present: [...w.buckets.keys()], alpha, learn: true };
  const requests = learnThrough(b.requests, { ...common, valueOf: (x) => w.buckets.get(x)?.requests ?? 0 });
  const variants = learnThrough(b.variants, { ...common, valueOf: (x) => w.buckets.get(x)?.variants ?? 0 });
  // Size: decayed sums over the same buckets, so a key's usual size follows it slowly.
  const start = b.requests.last === null ? w.current - W : b.requests.last + 1;
  let sizeTokens = b.sizeTokens;
  let sizeRequests = b.sizeRequests;
  let samples = b.samples;
  if (through >= start) {
    const decay = Math.pow(1 - alpha, through + 1 - start);
    sizeTokens *= decay;
    sizeRequests *= decay;
    for (const [bucket, k] of w.buckets) {
      if (bucket < start || bucket > through || k.requests === 0) continue;
      const weight = Math.pow(1 - alpha, through - bucket);
      sizeTokens += k.inputTokens * weight;
      sizeRequests += k.requests * weight;
      samples += k.requests;
    }
  }
  return { requests, variants, sizeTokens, sizeRequests, samples };
}

const round2 = (x: number) => Math.round(x * 100) / 100;
