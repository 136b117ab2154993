import { describe, expect, it } from "vitest";
import { alphaFor, baselineMean, emptyBaseline, learnThrough, learnValue, type Baseline } from "../../src/domain/abuse/baseline.js";
import { closedRecord, closeManually, evaluateBreaker, openManually, type BreakerRecord } from "../../src/domain/abuse/breaker.js";
import { detectKeyAnomalies, emptyKeyBaseline, learnKeyBaseline, type KeyBucket } from "../../src/domain/abuse/anomaly.js";
import { DEFAULT_ANOMALY_SETTINGS } from "../../src/domain/abuse/settings.js";
import type { AnomalySettings, BreakerSettings } from "../../src/domain/tenancy/types.js";

/**
 * The pure rules behind the spend breaker and the anomaly detector, with a fake clock: the
 * integration tests show them wired to real traffic; these pin the arithmetic and every edge.
 */

const BUCKET = 60_000; // one-minute buckets
const T0 = 1_800_000 * BUCKET; // a bucket boundary
const USD = 1_000_000_000n;

const settings: BreakerSettings = {
  enabled: true,
  multiplier: 3,
  windowSeconds: 600, // 10 buckets
  minSpendNano: 1n * USD,
  cooldownSeconds: 300,
  halfOpenOneIn: 10,
  baselineSeconds: 6 * 3600,
};

/**
 * A tenant that spent `perMinute` every minute for `minutes` minutes before T0, evaluated every
 * minute (with the breaker not yet enabled: a brand-new tenant at $2/min is over a $1 floor).
 */
function steadyTenant(perMinute: bigint, minutes: number): { rec: BreakerRecord; spend: Map<number, bigint> } {
  const spend = new Map<number, bigint>();
  let rec = closedRecord(T0 - minutes * BUCKET);
  for (let m = minutes; m > 0; m--) {
    const now = T0 - m * BUCKET;
    spend.set(now / BUCKET, perMinute);
    const ev = evaluateBreaker(rec, { ...settings, enabled: false }, { buckets: spend, bucketMs: BUCKET }, now + 30_000);
    expect(ev.transition).toBeNull();
    rec = ev.next;
  }
  return { rec, spend };
}

describe("baseline", () => {
  it("is the exact mean of a constant series from the first bucket on (bias-corrected)", () => {
    const alpha = alphaFor(BUCKET, 3600);
    let b = emptyBaseline();
    for (let i = 0; i < 3; i++) b = learnValue(b, 42, alpha);
    expect(baselineMean(b, alpha)).toBeCloseTo(42, 9);
  });

  it("learns a run of idle buckets in closed form, the same as one by one", () => {
    const alpha = alphaFor(BUCKET, 600);
    const start = { ...emptyBaseline(), last: 99 };
    const present = new Map([[100, 50], [105, 10]]);
    const jumped = learnThrough(start, { through: 10_000, firstBucket: 0, present: present.keys(), valueOf: (b) => present.get(b)!, alpha, learn: true });
    let stepped: Baseline = start;
    for (let b = 100; b <= 10_000; b++) stepped = learnValue(stepped, present.get(b) ?? 0, alpha);
    expect(jumped.n).toBe(stepped.n);
    expect(jumped.ewma).toBeCloseTo(stepped.ewma, 12);
    expect(jumped.last).toBe(10_000);
  });
});

describe("spend breaker state machine", () => {
  it("compares the window with the tenant's own baseline: 3× − 1 stays closed, 3× opens", () => {
    const { rec, spend } = steadyTenant(2n * USD, 120); // usual: $2/min = $20 per 10-minute window
    const quiet = new Map(spend);
    for (let i = 0; i < 10; i++) quiet.delete(T0 / BUCKET - i);
    const { thresholdNano: bar, baselinePerWindowNano } = evaluateBreaker(rec, settings, { buckets: quiet, bucketMs: BUCKET }, T0 + 10_000).figures;
    // The baseline is the tenant's own usual spend ($20 a window; the first evaluation also
    // learned the idle minutes before its first request, so a little less) and the bar 3× it.
    expect(Number(baselinePerWindowNano) / 1e9).toBeGreaterThan(18);
    expect(Number(baselinePerWindowNano) / 1e9).toBeLessThanOrEqual(20);
    expect(Number(bar) / Number(baselinePerWindowNano)).toBeCloseTo(3, 6);
    quiet.set(T0 / BUCKET, bar - 1n);
    const under = evaluateBreaker(rec, settings, { buckets: quiet, bucketMs: BUCKET }, T0 + 10_000);
    expect(under.transition).toBeNull();
    quiet.set(T0 / BUCKET, bar);
    const at = evaluateBreaker(rec, settings, { buckets: quiet, bucketMs: BUCKET }, T0 + 10_000);
    expect(at.transition).toMatchObject({ from: "CLOSED", to: "OPEN", manual: false });
    expect(at.next.cooldownUntil).toBe(T0 + 10_000 + 300_000);
  });

  it("a tenant with no history is guarded by the minimum spend only", () => {
    const rec = closedRecord(T0);
    const spend = new Map([[T0 / BUCKET, 1n * USD - 1n]]);
    expect(evaluateBreaker(rec, settings, { buckets: spend, bucketMs: BUCKET }, T0 + 1).transition).toBeNull();
    spend.set(T0 / BUCKET, 1n * USD);
    expect(evaluateBreaker(rec, settings, { buckets: spend, bucketMs: BUCKET }, T0 + 1).transition?.to).toBe("OPEN");
  });

  it("spend that left the window no longer counts (window rollover)", () => {
    const rec = closedRecord(T0);
    const spend = new Map([[T0 / BUCKET - 10, 5n * USD]]); // 10 buckets ago: just outside a 10-bucket window
    expect(evaluateBreaker(rec, settings, { buckets: spend, bucketMs: BUCKET }, T0 + 1).figures.windowSpendNano).toBe(0n);
    spend.set(T0 / BUCKET - 9, 5n * USD); // the oldest bucket inside it
    expect(evaluateBreaker(rec, settings, { buckets: spend, bucketMs: BUCKET }, T0 + 1).transition?.to).toBe("OPEN");
  });

  it("half-opens after the cooldown, re-opens while the trickle still stands for a spike, closes after a quiet window", () => {
    const { rec: base, spend } = steadyTenant(1n * USD, 60); // usual $10/window, bar $30
    spend.set(T0 / BUCKET, 100n * USD);
    let ev = evaluateBreaker(base, settings, { buckets: spend, bucketMs: BUCKET }, T0 + 5_000);
    expect(ev.next.state).toBe("OPEN");
    const learnedBeforeSpike = ev.next.baseline;
    let t = T0 + 5_000 + 299_000;
    ev = evaluateBreaker(ev.next, settings, { buckets: spend, bucketMs: BUCKET }, t);
    expect(ev.transition).toBeNull(); // cooldown not over
    t += 1_000;
    ev = evaluateBreaker(ev.next, settings, { buckets: spend, bucketMs: BUCKET }, t);
    expect(ev.transition).toMatchObject({ from: "OPEN", to: "HALF_OPEN" });
    expect(ev.next.baseline.n).toBe(learnedBeforeSpike.n); // an open breaker learns nothing
    // The trickle (1 in 10) spends $4 in a minute: it stands for $40 of demand, over the $30 bar.
    const cur = Math.floor(t / BUCKET);
    spend.set(cur + 1, 4n * USD);
    const reopened = evaluateBreaker(ev.next, settings, { buckets: spend, bucketMs: BUCKET }, (cur + 1) * BUCKET + 1_000);
    expect(reopened.transition).toMatchObject({ from: "HALF_OPEN", to: "OPEN" });
    expect(reopened.figures.projectedNano).toBe(40n * USD);
    // Instead the trickle spends $0.20 a minute ($2 of demand): it closes once a whole window has passed.
    spend.set(cur + 1, USD / 5n);
    const early = evaluateBreaker(ev.next, settings, { buckets: spend, bucketMs: BUCKET }, ev.next.probeUntil - 1);
    expect(early.transition).toBeNull();
    const closed = evaluateBreaker(ev.next, settings, { buckets: spend, bucketMs: BUCKET }, ev.next.probeUntil);
    expect(closed.transition).toMatchObject({ from: "HALF_OPEN", to: "CLOSED" });
  });

  it("a manually opened breaker stays open past any cooldown; a manual close holds off re-tripping for a window", () => {
    const spend = new Map([[T0 / BUCKET, 100n * USD]]);
    const opened = openManually(closedRecord(T0), T0, "leaked key suspected", "cred_op");
    expect(opened.transition).toMatchObject({ from: "CLOSED", to: "OPEN", manual: true, actor: "cred_op" });
    const later = evaluateBreaker(opened.next, settings, { buckets: spend, bucketMs: BUCKET }, T0 + 86_400_000);
    expect(later.next.state).toBe("OPEN");
    expect(openManually(opened.next, T0 + 1, "again", "cred_op").transition).toBeNull(); // idempotent
    const closed = closeManually(opened.next, T0 + 1_000, "cred_op", 600_000);
    expect(closed.transition).toMatchObject({ from: "OPEN", to: "CLOSED" });
    expect(evaluateBreaker(closed.next, settings, { buckets: spend, bucketMs: BUCKET }, T0 + 2_000).transition).toBeNull();
    expect(evaluateBreaker(closed.next, settings, { buckets: spend, bucketMs: BUCKET }, T0 + 601_000).transition).toBeNull(); // spike left the window
    spend.set(Math.floor((T0 + 601_000) / BUCKET), 100n * USD);
    expect(evaluateBreaker(closed.next, settings, { buckets: spend, bucketMs: BUCKET }, T0 + 601_000 + 1).transition?.to).toBe("OPEN");
  });

  it("a disabled breaker never trips and an automatically opened one closes", () => {
    const off = { ...settings, enabled: false };
    const spend = new Map([[T0 / BUCKET, 1_000n * USD]]);
    expect(evaluateBreaker(closedRecord(T0), off, { buckets: spend, bucketMs: BUCKET }, T0 + 1).transition).toBeNull();
    const open = evaluateBreaker(closedRecord(T0), settings, { buckets: spend, bucketMs: BUCKET }, T0 + 1).next;
    expect(evaluateBreaker(open, off, { buckets: spend, bucketMs: BUCKET }, T0 + 2).transition).toMatchObject({ to: "CLOSED" });
  });
});

describe("key anomaly rules", () => {
  const s: AnomalySettings = { ...DEFAULT_ANOMALY_SETTINGS, windowSeconds: 3600, volumeMultiplier: 100, minRequests: 1000, sizeMultiplier: 20, minInputTokens: 8000, minSamples: 100, variantMultiplier: 20, minVariants: 1000 };
  const HOUR = 3_600_000; // buckets of an hour: the window is one bucket
  const cur = 500_000;

  /** A key that made `perHour` requests of `tokens` tokens with `variants` distinct prompts every hour for `hours` hours. */
  function history(perHour: number, tokens: number, variants: number, hours: number) {
    let b = emptyKeyBaseline();
    for (let h = hours; h > 0; h--) {
      const bucket = cur - h;
      const buckets = new Map<number, KeyBucket>([[bucket, { requests: perHour, inputTokens: perHour * tokens, maxInputTokens: tokens, variants }]]);
      b = learnKeyBaseline(b, s, { buckets, windowVariants: 0, bucketMs: HOUR, current: bucket + 1 });
    }
    return b;
  }
  const win = (k: KeyBucket, windowVariants = k.variants) => ({ buckets: new Map([[cur, k]]), windowVariants, bucketMs: HOUR, current: cur });

  it("volume: 100× the usual hourly rate (and at least minRequests) is a spike; just below is not", () => {
    const b = history(50, 200, 5, 48); // usually 50 requests an hour
    expect(detectKeyAnomalies(b, s, win({ requests: 4_999, inputTokens: 0, maxInputTokens: 200, variants: 1 })).map((a) => a.kind)).toEqual([]);
    const spike = detectKeyAnomalies(b, s, win({ requests: 5_000, inputTokens: 0, maxInputTokens: 200, variants: 1 }));
    expect(spike.map((a) => a.kind)).toEqual(["VOLUME_SPIKE"]);
    expect(spike[0]!.evidence).toMatchObject({ requests: 5_000, bar: 5_000, multiplier: 100 });
    // A new key has no baseline: the floor alone decides.
    expect(detectKeyAnomalies(emptyKeyBaseline(), s, win({ requests: 999, inputTokens: 0, maxInputTokens: 1, variants: 0 }))).toEqual([]);
    expect(detectKeyAnomalies(emptyKeyBaseline(), s, win({ requests: 1_000, inputTokens: 0, maxInputTokens: 1, variants: 0 })).map((a) => a.kind)).toEqual(["VOLUME_SPIKE"]);
  });

  it("size: a prompt 20× the key's usual size is flagged, only once the usual size rests on enough requests", () => {
    const b = history(50, 1_000, 5, 10); // 500 requests of 1000 tokens
    expect(detectKeyAnomalies(b, s, win({ requests: 1, inputTokens: 19_999, maxInputTokens: 19_999, variants: 1 }))).toEqual([]);
    const big = detectKeyAnomalies(b, s, win({ requests: 1, inputTokens: 20_000, maxInputTokens: 20_000, variants: 1 }));
    expect(big.map((a) => a.kind)).toEqual(["LARGE_REQUEST"]);
    expect(big[0]!.evidence).toMatchObject({ usualInputTokens: 1000, bar: 20_000 });
    const young = history(50, 1_000, 5, 1); // 50 samples < minSamples 100
    expect(detectKeyAnomalies(young, s, win({ requests: 1, inputTokens: 50_000, maxInputTokens: 50_000, variants: 1 }))).toEqual([]);
  });

  it("prompt variants: a storm of distinct fingerprints over the usual count is flagged", () => {
    const b = history(100, 100, 60, 24); // usually 60 distinct prompts an hour
    expect(detectKeyAnomalies(b, s, win({ requests: 100, inputTokens: 10_000, maxInputTokens: 100, variants: 0 }, 1_199))).toEqual([]);
    expect(detectKeyAnomalies(b, s, win({ requests: 100, inputTokens: 10_000, maxInputTokens: 100, variants: 0 }, 1_200)).map((a) => a.kind)).toEqual(["PROMPT_VARIANT_STORM"]);
  });
});
