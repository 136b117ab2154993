import { readFileSync } from "node:fs";

/**
 * Summarises a bench/gc-survivors.mjs profile: sampled bytes that no scavenge collected, by
 * allocation stack (innermost frames first). Run the server with --no-turbo-inlining for
 * allocation sites that name the function that allocates rather than the one it was inlined into.
 *
 *   npx tsx bench/survivors-summary.ts <file> [frames=4] [rows=25]
 */
interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: Node[];
}
interface Profile {
  head: Node;
  samples: Array<{ size: number; nodeId: number }>;
}

const [file, framesArg, rowsArg] = process.argv.slice(2);
if (!file) throw new Error("usage: survivors-summary.ts <file> [frames] [rows]");
const { scavenges, majorGcs, profile } = JSON.parse(readFileSync(file, "utf8")) as { scavenges: number; majorGcs: number; profile: Profile };
const frames = Number(framesArg ?? 4);
const parent = new Map<number, Node | null>();
const byId = new Map<number, Node>();
const walk = (n: Node, p: Node | null) => {
  byId.set(n.id, n);
  parent.set(n.id, p);
  for (const c of n.children ?? []) walk(c, n);
};
walk(profile.head, null);

const stack = (id: number): string => {
  const out: string[] = [];
  for (let n: Node | null | undefined = byId.get(id); n && out.length < frames; n = parent.get(n.id)) {
    if (n.callFrame.functionName === "(root)") break;
    out.push(`${n.callFrame.functionName || "(anonymous)"} ${n.callFrame.url.split("/").pop()}:${n.callFrame.lineNumber + 1}`);
  }
  return out.join(" ← ");
};

const bySite = new Map<string, { samples: number; bytes: number }>();
let total = 0;
for (const s of profile.samples) {
  const k = stack(s.nodeId);
  const e = bySite.get(k) ?? { samples: 0, bytes: 0 };
  e.samples++;
  e.bytes += s.size;
  total += s.size;
  bySite.set(k, e);
}
console.log(`${profile.samples.length} samples, ${(total / 1e6).toFixed(2)} MB (sampled estimate) over ${scavenges} scavenges; mark-compacts in the window: ${majorGcs}${majorGcs ? " (young garbage they collected is included)" : ""}`);
for (const [k, e] of [...bySite.entries()].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, Number(rowsArg ?? 25))) {
  console.log(`${(e.bytes / 1024).toFixed(0).padStart(8)} KB ${String(e.samples).padStart(6)}  ${k}`);
}
