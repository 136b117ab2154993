import type { BreakerSettings } from "../tenancy/types.js";
import { alphaFor, baselineMean, bucketOf, learnThrough, type Baseline } from "./baseline.js";

/**
 * The spend circuit breaker as a pure state machine: no I/O, time passed in, so every rule is
 * unit-tested with a fake clock. The Redis adapter stores the record and applies a transition
 * with a compare-and-set on `version`; the service turns transitions into events and audit.
 *
 *   CLOSED ──spend over the window ≥ max(minSpend, multiplier × baseline)──▶ OPEN
 *   OPEN ──cooldown elapsed (not for a breaker an operator opened)──▶ HALF_OPEN
 *   HALF_OPEN ──projected spend (spend since half-open × halfOpenOneIn) still over the bar──▶ OPEN
 *   HALF_OPEN ──a whole window below the bar──▶ CLOSED
 *   any ──operator──▶ OPEN (manual: stays open) / CLOSED (with one window of grace)
 *
 * OPEN and HALF_OPEN keep the Redis flag the reserve script reads, which denies every
 * non-CRITICAL reserve; HALF_OPEN lets one non-CRITICAL request in `halfOpenOneIn` past it
 * (each replica counts for itself).
 * In HALF_OPEN only that trickle is spent, so its spend times `halfOpenOneIn` estimates what
 * the tenant is still asking for; a runaway loop still running is seen at once and re-opens.
 */

export type BreakerState = "CLOSED" | "OPEN" | "HALF_OPEN";

/** The actor id the service's own actions carry (transitions, anomaly actions, audit entries). */
export const SYSTEM_ACTOR_ID = "abuse-monitor";

export interface BreakerRecord {
  state: BreakerState;
  /** When the current state began (ms). */
  since: number;
  reason: string;
  /** Opened by an operator: no automatic half-open, an operator closes it. */
  manual: boolean;
  /** Who made the last transition: SYSTEM_ACTOR_ID or the operator's actor id. */
  actor: string;
  /** OPEN: when it may turn half-open (ms). */
  cooldownUntil: number;
  /** HALF_OPEN: the earliest it may close (ms): one whole window of probing. */
  probeUntil: number;
  /** HALF_OPEN: the first bucket whose spend is the trickle's. */
  probeFromBucket: number;
  /** After a manual close: no automatic trip before this (ms). */
  graceUntil: number;
  /** Compare-and-set guard for concurrent writers (evaluator vs operator). */
  version: number;
  /** The spend baseline, nano-USD per bucket (learned only while CLOSED). */
  baseline: Baseline;
  /** The window's spend at the last evaluation (the global breaker's spend is not kept anywhere else). */
  lastWindowSpendNano: bigint;
}

export function closedRecord(now: number): BreakerRecord {
  return {
    state: "CLOSED",
    since: now,
    reason: "",
    manual: false,
    actor: SYSTEM_ACTOR_ID,
    cooldownUntil: 0,
    probeUntil: 0,
    probeFromBucket: 0,
    graceUntil: 0,
    version: 0,
    baseline: { ewma: 0, n: 0, last: null },
    lastWindowSpendNano: 0n,
  };
}

export interface BreakerTransition {
  from: BreakerState;
  to: BreakerState;
  reason: string;
  manual: boolean;
  actor: string;
}

/** The figures a decision was made on (shown to operators and put into events). */
export interface BreakerFigures {
  windowSpendNano: bigint;
  thresholdNano: bigint;
  baselinePerWindowNano: bigint;
  /** HALF_OPEN: the trickle's spend scaled up to the demand it stands for. */
  projectedNano: bigint | null;
}

export interface BreakerEvaluation {
  next: BreakerRecord;
  transition: BreakerTransition | null;
  figures: BreakerFigures;
}

export interface SpendWindow {
  /** Spend (nano-USD) per bucket index; absent buckets spent nothing. */
  buckets: ReadonlyMap<number, bigint>;
  bucketMs: number;
}

export const windowBuckets = (windowSeconds: number, bucketMs: number) => Math.max(1, Math.ceil((windowSeconds * 1000) / bucketMs));

function sumBuckets(w: SpendWindow, from: number, to: number): bigint {
  let s = 0n;
  for (const [b, v] of w.buckets) if (b >= from && b <= to) s += v;
  return s;
}

/** The bar: `multiplier` × the baseline for a window, never below `minSpendNano`. */
export function figuresFor(rec: BreakerRecord, s: BreakerSettings, w: SpendWindow, now: number): BreakerFigures {
  const cur = bucketOf(now, w.bucketMs);
  const W = windowBuckets(s.windowSeconds, w.bucketMs);
  const perBucket = baselineMean(rec.baseline, alphaFor(w.bucketMs, s.baselineSeconds));
  const baselinePerWindowNano = BigInt(Math.round(perBucket * W));
  const scaled = BigInt(Math.ceil(s.multiplier * perBucket * W));
  const thresholdNano = scaled > s.minSpendNano ? scaled : s.minSpendNano;
  const windowSpendNano = sumBuckets(w, cur - W + 1, cur);
  let projectedNano: bigint | null = null;
  if (rec.state === "HALF_OPEN") {
    projectedNano = sumBuckets(w, Math.max(rec.probeFromBucket, cur - W + 1), cur) * BigInt(s.halfOpenOneIn);
  }
  return { windowSpendNano, thresholdNano, baselinePerWindowNano, projectedNano };
}

/** "$0.075", "$12.00": exact, at least two decimals (reasons are read by people). */
const usd = (nano: bigint) => {
  const whole = nano / 1_000_000_000n;
  const frac = (nano % 1_000_000_000n).toString().padStart(9, "0").replace(/0+$/, "").padEnd(2, "0");
  return `$${whole}.${frac}`;
};

/**
 * One evaluation: applies at most one transition, then learns the completed buckets into the
 * baseline if the breaker is (still) closed.
 */
export function evaluateBreaker(rec: BreakerRecord, s: BreakerSettings, w: SpendWindow, now: number): BreakerEvaluation {
  const cur = bucketOf(now, w.bucketMs);
  const W = windowBuckets(s.windowSeconds, w.bucketMs);
  const windowMs = W * w.bucketMs;
  const f = figuresFor(rec, s, w, now);
  let next: BreakerRecord = { ...rec };
  let transition: BreakerTransition | null = null;
  const to = (state: BreakerState, reason: string, patch: Partial<BreakerRecord> = {}) => {
    transition = { from: rec.state, to: state, reason, manual: false, actor: SYSTEM_ACTOR_ID };
    next = { ...next, state, since: now, reason, manual: false, actor: SYSTEM_ACTOR_ID, ...patch };
  };

  switch (rec.state) {
    case "CLOSED":
      if (s.enabled && now >= rec.graceUntil && f.windowSpendNano > 0n && f.windowSpendNano >= f.thresholdNano) {
        to("OPEN", `spend of ${usd(f.windowSpendNano)} in the last ${s.windowSeconds} s reached the bar of ${usd(f.thresholdNano)} (${s.multiplier}× the usual ${usd(f.baselinePerWindowNano)}, at least ${usd(s.minSpendNano)})`, {
          cooldownUntil: now + s.cooldownSeconds * 1000,
        });
      }
      break;
    case "OPEN":
      if (!rec.manual && !s.enabled) to("CLOSED", "the breaker was disabled for this tier");
      else if (!rec.manual && now >= rec.cooldownUntil) {
        to("HALF_OPEN", `cooldown of ${s.cooldownSeconds} s over: letting 1 in ${s.halfOpenOneIn} non-CRITICAL requests through`, {
          probeUntil: now + windowMs,
          probeFromBucket: cur,
        });
      }
      break;
    case "HALF_OPEN":
      if (!s.enabled) to("CLOSED", "the breaker was disabled for this tier");
      else if (f.projectedNano !== null && f.projectedNano > 0n && f.projectedNano >= f.thresholdNano) {
        to("OPEN", `still spending: the trickle's ${usd(f.windowSpendNano)} stands for about ${usd(f.projectedNano)}, over the bar of ${usd(f.thresholdNano)}`, {
          cooldownUntil: now + s.cooldownSeconds * 1000,
        });
      } else if (now >= rec.probeUntil) {
        to("CLOSED", `spend rate back below the bar of ${usd(f.thresholdNano)} for a whole window`);
      }
      break;
  }

  // The current bucket is still filling: learn only up to the one before it.
  const alpha = alphaFor(w.bucketMs, s.baselineSeconds);
  const baseline = learnThrough(next.baseline, {
    through: cur - 1,
    firstBucket: cur - W,
    present: [...w.buckets.keys()],
    valueOf: (b) => Number(w.buckets.get(b) ?? 0n),
    alpha,
    learn: (next as BreakerRecord).state === "CLOSED" && rec.state === "CLOSED",
  });
  next = { ...next, baseline, lastWindowSpendNano: f.windowSpendNano };
  return { next, transition, figures: f };
}

/** An operator opens the breaker: it stays open (no automatic half-open) until closed by hand. */
export function openManually(rec: BreakerRecord, now: number, reason: string, actor: string): { next: BreakerRecord; transition: BreakerTransition | null } {
  const already = rec.state === "OPEN" && rec.manual;
  return {
    next: { ...rec, state: "OPEN", since: already ? rec.since : now, reason, manual: true, actor, cooldownUntil: Number.MAX_SAFE_INTEGER },
    transition: already ? null : { from: rec.state, to: "OPEN", reason, manual: true, actor },
  };
}

/**
 * An operator closes the breaker. The spike that tripped it is still inside the window, so
 * automatic tripping waits one window (`graceUntil`): the operator looked and said it is fine.
 */
export function closeManually(rec: BreakerRecord, now: number, actor: string, windowMs: number): { next: BreakerRecord; transition: BreakerTransition | null } {
  const already = rec.state === "CLOSED";
  const reason = "closed by an operator";
  return {
    next: {
      ...rec,
      state: "CLOSED",
      since: already ? rec.since : now,
      reason: already ? rec.reason : reason,
      manual: false,
      actor,
      cooldownUntil: 0,
      graceUntil: now + windowMs,
    },
    transition: already ? null : { from: rec.state, to: "CLOSED", reason, manual: true, actor },
  };
}

/** The event type of a transition: `breaker.opened` while traffic is restricted (OPEN or HALF_OPEN), `breaker.closed` once it is not. */
export const eventTypeOf = (t: BreakerTransition): "breaker.opened" | "breaker.closed" => (t.to === "CLOSED" ? "breaker.closed" : "breaker.opened");
