/**
 * "Normal" for a tenant or a key: an exponentially weighted mean of a per-bucket figure (spend,
 * requests, prompt variants), learned one completed time bucket at a time.
 *
 * - `alpha` follows from the bucket length and the time constant, so the weight of the past
 *   does not depend on how often the evaluator happens to run.
 * - The mean is bias-corrected (divided by 1 − (1 − alpha)^n, as Adam does): a series that has
 *   been constant for three buckets has exactly that constant as its baseline instead of a
 *   value still creeping up from zero, so a young tenant is judged by what it actually did.
 * - A run of empty buckets is learned in closed form (ewma × (1 − alpha)^k), so a tenant that
 *   was idle for a week costs one step, not 10 080.
 *
 * This is a heuristic guard, not billing: doubles are fine here (the money path stays bigint).
 */
export interface Baseline {
  /** The uncorrected moving average. */
  ewma: number;
  /** Buckets learned. */
  n: number;
  /** The last bucket index learned, or null before the first. */
  last: number | null;
}

export const emptyBaseline = (): Baseline => ({ ewma: 0, n: 0, last: null });

export function alphaFor(bucketMs: number, timeConstantSeconds: number): number {
  return 1 - Math.exp(-bucketMs / (timeConstantSeconds * 1000));
}

/** The bias-corrected mean per bucket; 0 before anything was learned. */
export function baselineMean(b: Baseline, alpha: number): number {
  if (b.n === 0) return 0;
  const correction = 1 - Math.pow(1 - alpha, b.n);
  return correction > 0 ? b.ewma / correction : 0;
}

/** Learns `k` buckets of 0 at once. */
export function learnZeros(b: Baseline, k: number, alpha: number): Baseline {
  if (k <= 0) return b;
  return { ewma: b.ewma * Math.pow(1 - alpha, k), n: b.n + k, last: b.last };
}

export function learnValue(b: Baseline, value: number, alpha: number): Baseline {
  return { ewma: b.ewma + alpha * (value - b.ewma), n: b.n + 1, last: b.last };
}

/**
 * Learns every bucket after `b.last` up to and including `through`, reading values from
 * `valueOf` for the buckets listed in `present` (others are 0). A baseline that never learned
 * starts at `firstBucket`. With `learn` false the buckets are skipped, not learned (a breaker
 * that is open must not teach the baseline that its spike, or its silence, is normal).
 */
export function learnThrough(
  b: Baseline,
  opts: { through: number; firstBucket: number; present: Iterable<number>; valueOf: (bucket: number) => number; alpha: number; learn: boolean },
): Baseline {
  const start = b.last === null ? opts.firstBucket : b.last + 1;
  if (opts.through < start) return b.last === null ? { ...b, last: opts.through } : b;
  if (!opts.learn) return { ...b, last: opts.through };
  const buckets = [...opts.present].filter((x) => x >= start && x <= opts.through).sort((x, y) => x - y);
  let out: Baseline = { ...b };
  let cursor = start;
  for (const bucket of buckets) {
    out = learnZeros(out, bucket - cursor, opts.alpha);
    out = learnValue(out, opts.valueOf(bucket), opts.alpha);
    cursor = bucket + 1;
  }
  out = learnZeros(out, opts.through + 1 - cursor, opts.alpha);
  return { ...out, last: opts.through };
}

/**
 * A baseline equivalent to having learned `buckets` buckets that averaged `mean` (used to seed
 * a lost or brand-new baseline from the Postgres ledger).
 */
export function seededBaseline(mean: number, buckets: number, alpha: number, last: number): Baseline {
  if (buckets <= 0) return { ewma: 0, n: 0, last };
  return { ewma: mean * (1 - Math.pow(1 - alpha, buckets)), n: buckets, last };
}

export const bucketOf = (ms: number, bucketMs: number) => Math.floor(ms / bucketMs);
