/**
 * One figure (`new_space_survived`, `promoted`, … in bytes) of each scavenge in node's
 * `--trace-gc-nvp` output, in KB, for the main thread's isolate: the busiest one (tsx's loader
 * runs in a worker with an isolate of its own).
 */
export function mainThreadScavenges(stdout: string, field: string): number[] {
  const pattern = new RegExp(`^\\[\\d+:(0x[0-9a-f]+)\\].* gc=s .*\\b${field}=(\\d+)`);
  const byIsolate = new Map<string, number[]>();
  for (const line of stdout.split("\n")) {
    const m = pattern.exec(line);
    if (m) byIsolate.set(m[1]!, [...(byIsolate.get(m[1]!) ?? []), Number(m[2]) / 1024]);
  }
  return [...byIsolate.values()].sort((a, b) => b.length - a.length)[0] ?? [];
}
