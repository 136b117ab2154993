import { describe, expect, it } from "vitest";
import { FakeClock } from "../../src/lib/clock.js";
import { createLogger } from "../../src/lib/logger.js";
import { UsageObserver } from "../../src/domain/abuse/observer.js";
import { publicKeyPrefix } from "../../src/domain/abuse/auth-throttle.js";
import type { DecisionAuditGroup } from "../../src/domain/abuse/audit.js";
import type { AbuseStore, UsageBatch } from "../../src/domain/abuse/ports.js";
import type { Decision, ReserveRequest } from "../../src/domain/enforcement/types.js";
import type { Actor } from "../../src/domain/tenancy/types.js";

/**
 * The hot path's observer buffers and flushes: aggregates per minute and group, keeps what a
 * failed flush could not write for the next one, and never lets a secret into a group.
 */
const actor: Actor = { kind: "credential", id: "cred_gateway0001", role: "GATEWAY", tenantId: null, name: "gw" };
const SECRET = "llm_AbCdEfGh12345678_s3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3tXYZ";
const req = (over: Partial<ReserveRequest> = {}): ReserveRequest => ({
  apiKey: SECRET,
  route: "chat.completions",
  model: "m",
  inputTokens: 10,
  maxOutputTokens: 20,
  idempotencyKey: null,
  subject: null,
  priority: "NORMAL",
  tools: [],
  ...over,
});
const denial = (reason: "KEY_INVALID" | "RATE_LIMITED", ids: { tenantId: string | null; keyId: string | null }): Decision => ({
  allowed: false,
  outcome: "DENY",
  reason,
  message: "no",
  retryAfterMs: null,
  reservation: null,
  directives: null,
  limits: [],
  ...ids,
});

function harness() {
  const clock = new FakeClock(Date.UTC(2026, 0, 15, 12, 0, 30));
  const written: DecisionAuditGroup[][] = [];
  const usage: Array<[string, UsageBatch]> = [];
  let failSink = 0;
  const store = { recordUsage: async (t: string, b: UsageBatch) => void usage.push([t, b]) } as unknown as AbuseStore;
  const audit = {
    add: async (g: DecisionAuditGroup[]) => {
      if (failSink-- > 0) throw new Error("postgres down");
      written.push(g);
    },
  };
  const observer = new UsageObserver({ store, audit, clock, logger: createLogger({ level: "silent" }), bucketMs: 1_000, apiKeyPrefix: "llm", keepMs: 60_000 });
  return { clock, observer, written, usage, failOnce: () => (failSink = 1) };
}

describe("UsageObserver", () => {
  it("aggregates denials per minute and group, and a failed flush loses nothing", async () => {
    const h = harness();
    for (let i = 0; i < 1000; i++) h.observer.decided({ req: req(), actor, decision: denial("KEY_INVALID", { tenantId: null, keyId: null }) });
    h.failOnce();
    await expect(h.observer.flush()).rejects.toThrow("postgres down");
    for (let i = 0; i < 500; i++) h.observer.decided({ req: req(), actor, decision: denial("KEY_INVALID", { tenantId: null, keyId: null }) });
    h.clock.advance(60_000); // the next minute is its own group
    h.observer.decided({ req: req(), actor, decision: denial("KEY_INVALID", { tenantId: null, keyId: null }) });
    await h.observer.flush();
    const groups = h.written.flat();
    expect(groups.map((g) => [g.minute.toISOString(), g.count])).toEqual([
      ["2026-01-15T12:00:00.000Z", 1500],
      ["2026-01-15T12:01:00.000Z", 1],
    ]);
    expect(groups[0]).toMatchObject({ actorId: "cred_gateway0001", keyPrefix: "llm_AbCdEfGh12345678", reason: "KEY_INVALID", inputTokens: 15_000n, outputTokens: 30_000n });
    expect(JSON.stringify(groups, (_k, v) => (typeof v === "bigint" ? String(v) : v))).not.toContain("s3cr3t");
  });

  it("counts verified keys' traffic and fingerprints per bucket, and spend per tenant and bucket", async () => {
    const h = harness();
    const allow = { tenantId: "ten_a", keyId: "key_a" };
    for (const fp of ["x", "y", "x"]) h.observer.decided({ req: req({ promptFingerprint: fp, inputTokens: 100 }), actor, decision: { ...denial("RATE_LIMITED", allow) } });
    h.observer.committed({ tenantId: "ten_a", keyId: "key_a", costNano: 5n });
    h.observer.committed({ tenantId: "ten_a", keyId: "key_a", costNano: 7n });
    h.clock.advance(1_000);
    h.observer.committed({ tenantId: "ten_a", keyId: "key_a", costNano: 1n });
    await h.observer.flush();
    const [tenantId, batch] = h.usage[0]!;
    expect(tenantId).toBe("ten_a");
    const bucket = Math.floor(Date.UTC(2026, 0, 15, 12, 0, 30) / 1000);
    expect(batch.spend).toEqual([
      { bucket, costNano: 12n },
      { bucket: bucket + 1, costNano: 1n },
    ]);
    expect(batch.keys).toEqual([{ keyId: "key_a", bucket, requests: 3, inputTokens: 300, maxInputTokens: 100, fingerprints: ["x", "y"] }]);
  });

  it("writes a flush a few tenants at a time, not all at once, and writes every one", async () => {
    const h = harness();
    let inFlight = 0;
    let most = 0;
    const done: string[] = [];
    const store = {
      recordUsage: async (t: string) => {
        most = Math.max(most, ++inFlight);
        await new Promise((r) => setTimeout(r, 1));
        inFlight--;
        done.push(t);
      },
    } as unknown as AbuseStore;
    const observer = new UsageObserver({ store, audit: { add: async () => {} }, clock: h.clock, logger: createLogger({ level: "silent" }), bucketMs: 1_000, apiKeyPrefix: "llm", keepMs: 60_000 });
    for (let i = 0; i < 200; i++) observer.committed({ tenantId: `ten_${i}`, keyId: `key_${i}`, costNano: 1n });
    await observer.flush();
    expect(done).toHaveLength(200);
    expect(new Set(done).size).toBe(200);
    // A burst of 200 scripts would queue every reserve on the shared connection behind it.
    expect(most).toBeLessThanOrEqual(4);
    expect(most).toBeGreaterThan(1);
  });

  it("finds the public prefix of a presented key and nothing of anything else", () => {
    expect(publicKeyPrefix(SECRET, "llm")).toBe("llm_AbCdEfGh12345678");
    expect(publicKeyPrefix("garbage", "llm")).toBeNull();
    expect(publicKeyPrefix("xyz_AbCdEfGh12345678_tail", "llm")).toBeNull();
    expect(publicKeyPrefix("llm_short_tail", "llm")).toBeNull();
  });
});
