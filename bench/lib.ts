/** Small shared pieces of the benchmark: percentiles, key choice, report formatting. */

export function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function sortedCopy(xs: number[]): Float64Array {
  return Float64Array.from(xs).sort();
}

export interface LatencySummary {
  n: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

export function summarize(xs: number[]): LatencySummary {
  const s = sortedCopy(xs);
  return { n: s.length, p50: percentile(s, 50), p99: percentile(s, 99), p999: percentile(s, 99.9), max: s.length ? s[s.length - 1]! : NaN };
}

/** Picks key indexes 0..n-1: uniformly, or Zipf-skewed (rank r has weight 1/r^s). */
export function keyPicker(n: number, dist: "uniform" | "zipf", s = 1.0, seed = 42): () => number {
  let x = seed >>> 0 || 1;
  // xorshift32: reproducible across runs and cheap (the load generator shares the cores).
  const rand = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
  if (dist === "uniform") return () => Math.floor(rand() * n);
  const cdf = new Float64Array(n);
  let acc = 0;
  for (let r = 0; r < n; r++) cdf[r] = acc += 1 / Math.pow(r + 1, s);
  for (let r = 0; r < n; r++) cdf[r]! /= acc;
  return () => {
    const u = rand();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

export function fmtMs(x: number): string {
  if (!Number.isFinite(x)) return "–";
  return x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0);
}

export function fmtInt(x: number): string {
  return Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "–";
}

/** Renders rows as an aligned text table. */
export function table(header: string[], rows: string[][]): string {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ");
  return [line(header), w.map((n) => "-".repeat(n)).join("  "), ...rows.map(line)].join("\n");
}
