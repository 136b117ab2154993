import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TestApp } from "../support/app.js";
import type { GraphQLClient } from "../support/client.js";
import { createGateway, createKey, reserve } from "../support/enforcement.js";
import { credentialClient, query, upsertModel } from "../operator/support.js";
import { createAbuseTier, createTenantOn, flushAndEvaluate, nextBucket, outboxEvents, startAbuseApp } from "./support.js";

/**
 * Anomaly detection on synthetic traffic through the real API: each kind is raised for the key
 * that misbehaves, not for a key beside it doing normal things, and the tier's action happens.
 * The evaluation pass is the abuse job's (called directly here so each step is deterministic);
 * statistics sit in one-second buckets, windows are a few seconds.
 */
const ANOMALIES = `query($tenantId: ID, $kind: AnomalyKind, $from: DateTimeISO, $to: DateTimeISO, $first: Int, $after: String) {
  anomalies(tenantId: $tenantId, kind: $kind, from: $from, to: $to, first: $first, after: $after) {
    nodes { id kind tenantId keyId source keyPrefix detectedAt windowStart windowEnd evidence action actionResult }
    pageInfo { hasNextPage endCursor }
  }
}`;

const SETTINGS = {
  windowSeconds: 5,
  volumeMultiplier: 5,
  minRequests: 30,
  sizeMultiplier: 10,
  minInputTokens: 1_000,
  minSamples: 5,
  variantMultiplier: 5,
  minVariants: 15,
  baselineSeconds: 3_600,
};

describe("anomaly detection", () => {
  let t: TestApp;
  let gw: GraphQLClient;
  let suspendTenant: string;
  let degradeTenant: string;
  let noneTenant: string;

  const ask = (secret: string, extra: Record<string, unknown> = {}) => reserve(gw, { apiKey: secret, model: "m-anm", inputTokens: 100, maxOutputTokens: 50, ...extra });
  const anomaliesOf = async (vars: Record<string, unknown>) => (await t.admin.ok(ANOMALIES, vars)).anomalies;

  beforeAll(async () => {
    t = await startAbuseApp();
    await upsertModel(t.admin, { name: "m-anm", contextWindow: 100_000, inputPriceUsdPerMTok: "1", outputPriceUsdPerMTok: "2" });
    const off = { enabled: false };
    suspendTenant = await createTenantOn(t.admin, await createAbuseTier(t.admin, { breaker: off, anomaly: { ...SETTINGS, action: "SUSPEND_KEY" } }));
    degradeTenant = await createTenantOn(
      t.admin,
      await createAbuseTier(t.admin, { breaker: off, anomaly: { ...SETTINGS, action: "DEGRADE", degradeMaxOutputTokens: 7, degradePriority: "BACKGROUND", degradeSeconds: 60 } }),
    );
    noneTenant = await createTenantOn(t.admin, await createAbuseTier(t.admin, { breaker: off, anomaly: { ...SETTINGS, action: "NONE" } }));
    gw = await createGateway(t);
  }, 60_000);
  afterAll(async () => t?.close());

  it("a key hammered far above its rate is a VOLUME_SPIKE and, on a SUSPEND_KEY tier, is revoked; a normal key beside it is not flagged", async () => {
    const leaked = await createKey(t, suspendTenant);
    const normal = await createKey(t, suspendTenant);
    await Promise.all(Array.from({ length: 40 }, () => ask(leaked.secret)));
    for (let i = 0; i < 5; i++) expect((await ask(normal.secret)).allowed).toBe(true);
    const run = await flushAndEvaluate(t);
    expect(run).toMatchObject({ ran: true, failures: 0 });

    const found = (await anomaliesOf({ tenantId: suspendTenant })).nodes;
    expect(found.map((a: any) => [a.kind, a.keyId])).toEqual([["VOLUME_SPIKE", leaked.id]]);
    expect(found[0].evidence).toMatchObject({ requests: 40, minRequests: 30, bar: 30, windowSeconds: 5 });
    expect(found[0].action).toBe("SUSPEND_KEY");
    expect(found[0].actionResult).toBe(`key ${leaked.id} revoked`);
    expect(await ask(leaked.secret)).toMatchObject({ allowed: false, reason: "KEY_REVOKED" });
    expect((await ask(normal.secret)).allowed).toBe(true);

    const events = await outboxEvents(t, "anomaly.detected", suspendTenant);
    expect(events).toHaveLength(1);
    expect(events[0]!).toMatchObject({ scope: `key:${leaked.id}`, payload: { kind: "VOLUME_SPIKE", keyId: leaked.id, action: "SUSPEND_KEY" } });
    const audit = await query(t.databaseUrl, `SELECT action, actor_kind, actor_id FROM audit_log WHERE target_id = $1 ORDER BY id`, [leaked.id]);
    expect(audit.map((a: any) => [a.action, a.actor_kind])).toEqual([
      ["apiKey.create", "bootstrap"],
      ["anomaly.volume_spike", "system"],
      ["apiKey.revoke", "system"],
    ]);

    // The same episode is not reported again on the next pass.
    await flushAndEvaluate(t);
    expect((await anomaliesOf({ tenantId: suspendTenant })).nodes).toHaveLength(1);
  });

  it("a prompt far larger than the key's usual is a LARGE_REQUEST and, on a DEGRADE tier, the key gets tighter directives", async () => {
    const odd = await createKey(t, degradeTenant);
    const steady = await createKey(t, degradeTenant);
    await nextBucket();
    for (let i = 0; i < 6; i++) {
      expect((await ask(odd.secret, { inputTokens: 100 })).allowed).toBe(true);
      expect((await ask(steady.secret, { inputTokens: 100 })).allowed).toBe(true);
    }
    await nextBucket(); // the bucket with their usual traffic is complete: the next pass learns it
    await flushAndEvaluate(t);
    expect((await anomaliesOf({ tenantId: degradeTenant })).nodes).toHaveLength(0);

    expect((await ask(odd.secret, { inputTokens: 2_000 })).allowed).toBe(true); // 20× the usual 100 tokens
    expect((await ask(steady.secret, { inputTokens: 300 })).allowed).toBe(true); // 3×: normal variation
    await flushAndEvaluate(t);
    const found = (await anomaliesOf({ tenantId: degradeTenant })).nodes;
    expect(found.map((a: any) => [a.kind, a.keyId])).toEqual([["LARGE_REQUEST", odd.id]]);
    expect(found[0].evidence).toMatchObject({ maxInputTokens: 2_000, usualInputTokens: 100, samples: 6, bar: 1_000 });
    expect(found[0].action).toBe("DEGRADE");
    expect(found[0].actionResult).toMatch(/^degraded until .*: at most 7 output tokens, priority BACKGROUND$/);

    const d = await ask(odd.secret, { maxOutputTokens: 500, priority: "CRITICAL" });
    expect(d).toMatchObject({ allowed: true, outcome: "ALLOW_DEGRADED", reason: "DEGRADED" });
    expect(d.directives).toMatchObject({ maxOutputTokens: 7, priority: "BACKGROUND" });
    expect(d.message).toMatch(/anomaly anm_\w+ \(LARGE_REQUEST\)/);
    const fine = await ask(steady.secret, { maxOutputTokens: 500 });
    expect(fine).toMatchObject({ outcome: "ALLOW", directives: { maxOutputTokens: 500, priority: "NORMAL" } });
  });

  it("a storm of distinct prompt fingerprints is a PROMPT_VARIANT_STORM; with action NONE the key keeps working", async () => {
    const fuzzer = await createKey(t, noneTenant);
    const chat = await createKey(t, noneTenant);
    for (let i = 0; i < 20; i++) {
      await ask(fuzzer.secret, { promptFingerprint: `variant-${i}` });
      await ask(chat.secret, { promptFingerprint: `template-${i % 3}` });
    }
    await flushAndEvaluate(t);
    const found = (await anomaliesOf({ tenantId: noneTenant })).nodes;
    expect(found.map((a: any) => [a.kind, a.keyId])).toEqual([["PROMPT_VARIANT_STORM", fuzzer.id]]);
    expect(found[0].evidence).toMatchObject({ distinctFingerprints: 20, bar: 15 });
    expect(found[0]).toMatchObject({ action: "NONE", actionResult: "none: recorded only" });
    expect((await ask(fuzzer.secret)).outcome).toBe("ALLOW");
  });

  it("anomalies are filtered by tenant and kind and paged by cursor; tenant admins see only their own", async () => {
    const all = await anomaliesOf({ first: 200 });
    expect(all.nodes.map((a: any) => a.kind).sort()).toEqual(["LARGE_REQUEST", "PROMPT_VARIANT_STORM", "VOLUME_SPIKE"]);
    const times = all.nodes.map((a: any) => Date.parse(a.detectedAt));
    expect([...times].sort((a, b) => b - a)).toEqual(times); // newest first

    const seen: string[] = [];
    let after: string | null = null;
    for (let i = 0; i < 5; i++) {
      const page: any = await anomaliesOf({ first: 1, after });
      seen.push(...page.nodes.map((a: any) => a.id));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    expect(seen).toEqual(all.nodes.map((a: any) => a.id));
    expect((await anomaliesOf({ kind: "LARGE_REQUEST" })).nodes.map((a: any) => a.tenantId)).toEqual([degradeTenant]);
    expect((await anomaliesOf({ kind: "AUTH_FAILURE_BURST" })).nodes).toEqual([]);
    const oldest = all.nodes[all.nodes.length - 1];
    expect((await anomaliesOf({ from: oldest.detectedAt })).nodes).toHaveLength(3);
    expect((await anomaliesOf({ to: oldest.detectedAt })).nodes).toEqual([]); // "to" is exclusive
    expect((await anomaliesOf({ from: new Date(Date.now() + 60_000).toISOString() })).nodes).toEqual([]);

    const tenantAdmin = await credentialClient(t, "TENANT_ADMIN", noneTenant);
    const own = await tenantAdmin.ok(ANOMALIES, {});
    expect(own.anomalies.nodes.map((a: any) => a.tenantId)).toEqual([noneTenant]);
    const foreign = await tenantAdmin.request(ANOMALIES, { tenantId: suspendTenant });
    expect(foreign.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
    const bad = await t.admin.request(ANOMALIES, { after: "bm90LWEtY3Vyc29y" });
    expect(bad.errors?.[0]?.extensions?.code).toBe("BAD_USER_INPUT");
  });
});
