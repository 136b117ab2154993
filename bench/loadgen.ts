import { readFileSync, writeFileSync } from "node:fs";
import { HttpClient, UnsupportedResponse } from "./http-client.js";
import { keyPicker, summarize, type LatencySummary } from "./lib.js";

/**
 * The load generator: its own process, so it never shares an event loop with the server under
 * test (it does share the machine's two cores, as the targets assume).
 *
 *   closed loop: `concurrency` workers, each reserve → commit → next pair, for `durationMs`;
 *   open loop:   pairs start on a fixed schedule (`rate` per second) whatever the server does,
 *                and a reserve's latency counts from its scheduled start, so a stall shows up
 *                in every request it delayed (no coordinated omission).
 *
 * Reads its settings from the JSON file named by argv[2]; prints one JSON line of results.
 */
export interface LoadSpec {
  kind: "graphql" | "bare";
  url: string;
  token: string;
  keysFile: string;
  dist: "uniform" | "zipf";
  mode: "closed" | "open";
  concurrency: number;
  rate: number;
  durationMs: number;
  warmupMs: number;
  /**
   * Before anything else, one pair per key (unrecorded): the first use of a key seeds its quota
   * counters from the ledger, which a long-running service did long ago. Once per target.
   */
  prime: boolean;
  /** Open loop: also write every recorded reserve as `scheduled-ms latency-ms send-lag-ms` lines here. */
  traceFile?: string;
}

export interface LoadResult {
  pairs: number;
  seconds: number;
  pairsPerSec: number;
  reserve: LatencySummary;
  commit: LatencySummary;
  denied: number;
  /** Denials by the answer's reason (e.g. BACKEND_UNAVAILABLE when a Redis command timed out). */
  deniedReasons: Record<string, number>;
  errors: number;
  firstError: string | null;
  /**
   * Open loop only: how late the generator itself sent each reserve (scheduled start → handed
   * to a connection; timers, its own event loop, waiting for a free connection). It is inside
   * the CO-corrected reserve figures; printed so a reader can tell the generator's share from
   * the server's.
   */
  sendLag: LatencySummary | null;
}

export const RESERVE_DOC = `mutation Reserve($input: CheckAndReserveInput!) {
  checkAndReserve(input: $input) {
    outcome allowed reason message retryAfterMs tenantId keyId
    reservation { id expiresAt inputTokens outputTokens costUsd }
    directives { model maxInputTokens maxOutputTokens priority }
    limits { dimension scope limit remaining resetAt }
  }
}`;

export const COMMIT_DOC = `mutation Commit($input: CommitInput!) {
  commit(input: $input) { reservationId inputTokens outputTokens costUsd overage replayed limits { dimension scope limit remaining } }
}`;

/** What every target is asked, per pair. */
export const PAIR = { route: "chat.completions", model: "bench-model", inputTokens: 200, maxOutputTokens: 300, usedOutputTokens: 150 };

const RESERVATION_ID = '"reservation":{"id":"';
const REASON = '"reason":"';

/** The JSON string value that follows `marker`, or null. The values read here (ids, reason codes) carry no escapes. */
function stringAfter(text: string, marker: string): string | null {
  const i = text.indexOf(marker);
  if (i < 0) return null;
  const from = i + marker.length;
  const j = text.indexOf('"', from);
  return j < 0 ? null : text.slice(from, j);
}

async function main() {
  const spec = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as LoadSpec;
  const keys = JSON.parse(readFileSync(spec.keysFile, "utf8")) as string[];
  const u = new URL(spec.url);
  const open = spec.mode === "open";
  const maxSockets = open ? 512 : spec.concurrency;
  const client = new HttpClient(u.hostname, Number(u.port), maxSockets, { "content-type": "application/json", authorization: `Bearer ${spec.token}` });
  const graphql = spec.kind === "graphql";
  const reservePath = graphql ? u.pathname : "/reserve";
  const commitPath = graphql ? u.pathname : "/commit";

  // Requests are prepared up front, whole: building them per request would be load-generator
  // CPU taken from the server under test. A commit names its reservation, so only its id is
  // spliced in per request.
  const reserveRequests = keys.map((apiKey) => {
    const input = { apiKey, route: PAIR.route, model: PAIR.model, inputTokens: PAIR.inputTokens, maxOutputTokens: PAIR.maxOutputTokens };
    return client.prepare(reservePath, graphql ? JSON.stringify({ query: RESERVE_DOC, variables: { input } }) : JSON.stringify(input));
  });
  const commitPrefix = graphql ? `{"query":${JSON.stringify(COMMIT_DOC)},"variables":{"input":{"reservationId":"` : `{"reservationId":"`;
  const commitSuffix = `","inputTokens":${PAIR.inputTokens},"outputTokens":${PAIR.usedOutputTokens}}${graphql ? "}}" : ""}`;
  const commitHead = client.head(commitPath);
  const commitFixedBytes = Buffer.byteLength(commitPrefix + commitSuffix);
  const commitRequest = (id: string) => `${commitHead}${commitFixedBytes + Buffer.byteLength(id)}\r\n\r\n${commitPrefix}${id}${commitSuffix}`;
  // The answer's decision, without parsing it: the bare servers answer with the decision itself,
  // the service with {"data":{"checkAndReserve":{...}}} (null there when it failed).
  const hasDecision = graphql ? (text: string) => text.includes('"checkAndReserve":{') : (text: string) => text.startsWith("{");
  const pick = keyPicker(keys.length, spec.dist);

  let recording = false;
  const reserveLat: number[] = [];
  const commitLat: number[] = [];
  const sendLag: number[] = [];
  const trace: string[] = [];
  let pairs = 0;
  let denied = 0;
  const deniedReasons: Record<string, number> = {};
  let errors = 0;
  let firstError: string | null = null;
  const fail = (what: string) => {
    errors++;
    firstError ??= what.slice(0, 300);
  };
  const caught = (e: unknown) => {
    // Not the server's error but the client's limit: the figures would mean nothing.
    if (e instanceof UnsupportedResponse) {
      console.error(`loadgen: ${e.message}`);
      process.exit(1);
    }
    fail(String(e));
  };

  /** One reserve + commit; `startedAt` is when the reserve should have started. */
  async function pair(startedAt: number): Promise<void> {
    let lag = 0;
    const sent = open
      ? () => {
          lag = performance.now() - startedAt;
          if (recording) sendLag.push(lag);
        }
      : undefined;
    const r = await client.request(reserveRequests[pick()]!, sent);
    const reserved = performance.now();
    const text = r.text;
    if (r.status !== 200) return fail(`reserve HTTP ${r.status}: ${text}`);
    if (!hasDecision(text)) return fail(`reserve: ${text}`);
    if (recording) {
      reserveLat.push(reserved - startedAt);
      if (spec.traceFile) trace.push(`${startedAt.toFixed(2)} ${(reserved - startedAt).toFixed(2)} ${lag.toFixed(2)}`);
    }
    if (!text.includes('"allowed":true')) {
      denied++;
      const reason = stringAfter(text, REASON) ?? "unknown";
      deniedReasons[reason] = (deniedReasons[reason] ?? 0) + 1;
      return;
    }
    const id = stringAfter(text, RESERVATION_ID);
    if (id === null) return fail(`reserve allowed without a reservation id: ${text}`);
    const c = await client.request(commitRequest(id));
    const committed = performance.now();
    if (c.status !== 200 || c.text.includes('"errors"')) return fail(`commit HTTP ${c.status}: ${c.text}`);
    if (recording) {
      commitLat.push(committed - reserved);
      pairs++;
    }
  }

  if (spec.prime) {
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(spec.concurrency || 64, 64) }, async () => {
        while (next < keys.length) {
          const i = next++;
          const r = await client.request(reserveRequests[i]!);
          const id = stringAfter(r.text, RESERVATION_ID);
          if (id !== null) await client.request(commitRequest(id));
        }
      }),
    );
  }

  let measuredFrom = 0;
  let measuredTo = 0;
  if (spec.mode === "closed") {
    let until = performance.now() + spec.warmupMs + spec.durationMs;
    setTimeout(() => {
      recording = true;
      measuredFrom = performance.now();
    }, spec.warmupMs);
    const worker = async () => {
      while (performance.now() < until) {
        try {
          await pair(performance.now());
        } catch (e) {
          caught(e);
        }
      }
    };
    await Promise.all(Array.from({ length: spec.concurrency }, worker));
    measuredTo = performance.now();
    until = 0;
  } else {
    const interval = 1000 / spec.rate;
    const inflight = new Set<Promise<void>>();
    const run = (at: number) => {
      const p = pair(at).catch(caught);
      inflight.add(p);
      p.finally(() => inflight.delete(p));
    };
    // Warm-up at the same rate, unrecorded.
    const t0 = performance.now();
    const end = t0 + spec.warmupMs + spec.durationMs;
    let next = t0;
    // One wake-up per start, not a fixed polling period: a generator that woke every
    // millisecond spent the cores it shares with the server on waking. Node's timers count
    // whole milliseconds, truncating: rounding the wait down would wake just before the start
    // and again a millisecond later, twice the wake-ups for no earlier start.
    await new Promise<void>((resolve) => {
      const tick = () => {
        const now = performance.now();
        if (!recording && now >= t0 + spec.warmupMs) {
          recording = true;
          measuredFrom = now;
        }
        while (next <= now && next < end) {
          run(next);
          next += interval;
        }
        if (next >= end) return resolve();
        setTimeout(tick, Math.max(0, Math.ceil(next - performance.now())));
      };
      tick();
    });
    await Promise.all([...inflight]);
    measuredTo = performance.now();
  }
  client.close();
  if (spec.traceFile) writeFileSync(spec.traceFile, trace.join("\n") + "\n");
  const seconds = (measuredTo - measuredFrom) / 1000;
  const result: LoadResult = {
    pairs,
    seconds,
    pairsPerSec: pairs / seconds,
    reserve: summarize(reserveLat),
    commit: summarize(commitLat),
    denied,
    deniedReasons,
    errors,
    firstError,
    sendLag: open ? summarize(sendLag) : null,
  };
  process.stdout.write(JSON.stringify(result) + "\n");
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, ""))) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
