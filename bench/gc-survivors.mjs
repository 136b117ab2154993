/**
 * What no scavenge collects, by allocation site. Preload it into a server under steady load:
 *
 *   GC_SURVIVORS_OUT=/tmp/survivors.json node --import ./bench/gc-survivors.mjs … src/main.ts
 *   npx tsx bench/survivors-summary.ts /tmp/survivors.json
 *
 * After GC_SURVIVORS_AFTER_MS (default 20 s, past start-up and priming) it starts V8's sampling
 * heap profiler told to keep the samples of objects a mark-compact collects but not of those a
 * scavenge collects, and writes the profile after GC_SURVIVORS_SCAVENGES scavenges (default 6).
 * If a mark-compact ran in that window (run with a large --max-old-space-size and
 * --initial-old-space-size to avoid one) it says so: a mark-compact also collects young garbage,
 * which then stays in the profile. Objects allocated straight into the old generation
 * (pretenured sites, maps) are in it too, whether they survive or not; compare with
 * --no-allocation-site-pretenuring. A heap snapshot cannot show any of this: it collects
 * garbage first.
 */
import inspector from "node:inspector/promises";
import { PerformanceObserver, constants } from "node:perf_hooks";
import { writeFileSync } from "node:fs";

const out = process.env.GC_SURVIVORS_OUT ?? "gc-survivors.json";
const want = Number(process.env.GC_SURVIVORS_SCAVENGES ?? 6);
const session = new inspector.Session();
session.connect();
setTimeout(async () => {
  await session.post("HeapProfiler.startSampling", {
    samplingInterval: Number(process.env.GC_SURVIVORS_INTERVAL ?? 1024),
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: false,
  });
  let scavenges = 0;
  let majors = 0;
  let done = false;
  const obs = new PerformanceObserver(async (list) => {
    for (const e of list.getEntries()) {
      if (done) return;
      const kind = e.detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR || kind === constants.NODE_PERFORMANCE_GC_INCREMENTAL) majors++;
      else if (kind === constants.NODE_PERFORMANCE_GC_MINOR && ++scavenges === want) {
        done = true;
        obs.disconnect();
        const { profile } = await session.post("HeapProfiler.getSamplingProfile");
        await session.post("HeapProfiler.stopSampling");
        writeFileSync(out, JSON.stringify({ scavenges, majorGcs: majors, profile }));
        process.stderr.write(`gc-survivors: ${out} written after ${scavenges} scavenges, ${majors} mark-compacts in the window\n`);
      }
    }
  });
  obs.observe({ entryTypes: ["gc"] });
}, Number(process.env.GC_SURVIVORS_AFTER_MS ?? 20_000)).unref();
