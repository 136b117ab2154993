import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, testEnv, BOOTSTRAP_TOKEN } from "../support/env.js";
import { errorCode, type GraphQLClient } from "../support/client.js";
import { apiKeyFormat, hashToken, mintToken, parseToken } from "../../src/auth/api-key-format.js";
import { newId } from "../../src/lib/ids.js";
import { apiKeys } from "../../src/storage/postgres/schema/index.js";
import { MAX_COUNTER_NANO, formatUsd } from "../../src/domain/billing/money.js";
import { capturingLogger, dumpDatabase, seedTenant, sleep, startInstance, waitUntil, type Instance } from "./support.js";

const KEY_FIELDS = `id tenantId name prefix status expiresAt monthlyBudgetUsd dailyBudgetUsd allowedRoutes allowedModels rotatedFromId createdAt revokedAt`;
const CREATE = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { ${KEY_FIELDS} } } }`;
const ROTATE = `mutation($id: ID!, $s: Int!) { rotateApiKey(id: $id, overlapSeconds: $s) { secret apiKey { ${KEY_FIELDS} } } }`;
const REVOKE = `mutation($id: ID!) { revokeApiKey(id: $id) { ${KEY_FIELDS} } }`;
const GET = `query($id: ID!) { apiKey(id: $id) { ${KEY_FIELDS} } }`;
const LIST = `query($t: ID!, $first: Int, $after: String) { apiKeys(tenantId: $t, first: $first, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }`;

describe("tenant API keys", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let env: Record<string, string>;
  let primary: Instance;
  let admin: GraphQLClient;
  let tenantId: string;
  const logs = capturingLogger();

  const verifier = () => primary.app.services.apiKeyVerifier;
  async function createKey(input: Record<string, unknown> = {}) {
    const r = await admin.ok(CREATE, { input: { tenantId, name: "primary", ...input } });
    return r.createApiKey as { secret: string; apiKey: Record<string, any> };
  }
  async function keyRowCount(): Promise<number> {
    return primary.app.database.db.$count(apiKeys);
  }

  beforeAll(async () => {
    db = await createTestDatabase();
    env = testEnv(db.url);
    primary = await startInstance(env, { logger: logs.logger });
    admin = primary.client(BOOTSTRAP_TOKEN);
    tenantId = await seedTenant(primary.app.database.db);
  });
  afterAll(async () => {
    await primary?.stop();
    await db?.drop();
  });

  it("shows the secret once and stores only its SHA-256", async () => {
    const { secret, apiKey } = await createKey({
      monthlyBudgetUsd: "250.5",
      dailyBudgetUsd: "10",
      allowedRoutes: ["chat.completions"],
      allowedModels: ["gpt-4o-mini", "gpt-4o-mini"],
    });
    expect(secret).toMatch(/^llm_[0-9A-Za-z]{16}_[0-9A-Za-z]{38}$/);
    expect(parseToken(apiKeyFormat("llm"), secret)).toEqual({ id: apiKey.id });
    expect(apiKey).toMatchObject({
      tenantId,
      status: "ACTIVE",
      prefix: `llm_${apiKey.id.slice(4)}`,
      monthlyBudgetUsd: "250.500000000",
      dailyBudgetUsd: "10.000000000",
      allowedRoutes: ["chat.completions"],
      allowedModels: ["gpt-4o-mini"],
      expiresAt: null,
      rotatedFromId: null,
    });
    expect(secret.startsWith(apiKey.prefix + "_")).toBe(true);

    // The key cannot be read back: the type has no secret field at all.
    const again = await admin.request(`query($id: ID!) { apiKey(id: $id) { id secret } }`, { id: apiKey.id });
    expect(errorCode(again)).toBe("GRAPHQL_VALIDATION_FAILED");

    // Exercise the verification path too, so anything it might write or log is in the dumps.
    expect(await verifier().verify(secret, new Date())).toMatchObject({ ok: true, key: { id: apiKey.id } });

    const dump = await dumpDatabase(db.url);
    const randomPart = secret.split("_")[2]!;
    expect(dump).toContain(apiKey.id);
    expect(dump).toContain(hashToken(secret));
    expect(dump).not.toContain(secret);
    expect(dump).not.toContain(randomPart);
    expect(dump).not.toContain(randomPart.slice(0, 32));
    expect(dump).toMatch(/apiKey\.create/);

    // A regression guard: every service of this replica logs through `logs` (at trace level).
    expect(primary.app.logger).toBe(logs.logger);
    expect(logs.text()).not.toContain(randomPart.slice(0, 32));
  });

  it("refuses malformed keys as KEY_INVALID without any lookup", async () => {
    const { secret } = await createKey();
    const last = secret.at(-1)!;
    const badChecksum = secret.slice(0, -1) + (last === "a" ? "b" : "a");
    const typoInSecret = secret.slice(0, 30) + (secret[30] === "x" ? "y" : "x") + secret.slice(31);
    const wrongPrefix = "abc" + secret.slice(3);
    const malformed = [
      badChecksum,
      typoInSecret,
      wrongPrefix,
      secret.slice(0, -1),
      secret + "0",
      secret.replace("_", "-"),
      `${secret}_extra`,
      "",
      "garbage",
      "llm__",
      "llm_key_" + "a".repeat(38),
      "x".repeat(10_000),
      // A service credential is never accepted as a tenant key, even with the same core and secret.
      "llmsvc" + secret.slice(3),
    ];
    const before = verifier().lookups;
    for (const k of malformed) {
      expect(await verifier().verify(k, new Date()), k.slice(0, 60)).toEqual({ ok: false, reason: "KEY_INVALID", keyId: null });
    }
    expect(verifier().lookups).toBe(before);
  });

  it("verifies from the per-process cache in steady state and still refuses wrong secrets", async () => {
    const { secret, apiKey } = await createKey();
    const before = verifier().lookups;
    for (let i = 0; i < 100; i++) expect((await verifier().verify(secret, new Date())).ok).toBe(true);
    expect(verifier().lookups - before).toBe(1);

    // Well formed, right id, wrong secret: refused by the constant-time hash check, still from cache.
    const forged = mintToken(apiKeyFormat("llm"), apiKey.id);
    expect(await verifier().verify(forged, new Date())).toEqual({ ok: false, reason: "KEY_INVALID", keyId: apiKey.id });
    expect(verifier().lookups - before).toBe(1);

    // A typo in the checksum of a cached key: malformed as before (no key named), no lookup,
    // although the cached record now decides it (the checksum is not computed on that path).
    const last = secret.at(-1) === "A" ? "B" : "A";
    expect(await verifier().verify(secret.slice(0, -1) + last, new Date())).toEqual({ ok: false, reason: "KEY_INVALID", keyId: null });
    expect(verifier().lookups - before).toBe(1);

    // Well formed but unknown id: one lookup, then the negative answer is cached too.
    const unknown = mintToken(apiKeyFormat("llm"), newId("apiKey"));
    expect(await verifier().verify(unknown, new Date())).toEqual({ ok: false, reason: "KEY_INVALID", keyId: null });
    expect(await verifier().verify(unknown, new Date())).toEqual({ ok: false, reason: "KEY_INVALID", keyId: null });
    expect(verifier().lookups - before).toBe(2);
  });

  it("rotates with an overlap: both keys work, then the old one expires", async () => {
    const { secret: oldSecret, apiKey: old } = await createKey({ name: "rotating", monthlyBudgetUsd: "5", allowedModels: ["m1"] });
    expect((await verifier().verify(oldSecret, new Date())).ok).toBe(true);

    const t0 = Date.now();
    const r = (await admin.ok(ROTATE, { id: old.id, s: 1 })).rotateApiKey;
    expect(r.secret).not.toBe(oldSecret);
    expect(r.apiKey).toMatchObject({
      tenantId,
      name: "rotating",
      monthlyBudgetUsd: "5.000000000",
      allowedModels: ["m1"],
      rotatedFromId: old.id,
      status: "ACTIVE",
      expiresAt: null,
    });
    const oldAfter = (await admin.ok(GET, { id: old.id })).apiKey;
    const oldExpiry = Date.parse(oldAfter.expiresAt);
    expect(oldExpiry).toBeGreaterThanOrEqual(t0 + 1_000 - 50);
    expect(oldExpiry).toBeLessThanOrEqual(Date.now() + 1_000 + 50);

    // During the overlap both verify (the rotation invalidated the cached old record).
    expect(await verifier().verify(oldSecret, new Date())).toMatchObject({ ok: true, key: { id: old.id } });
    expect(await verifier().verify(r.secret, new Date())).toMatchObject({ ok: true, key: { id: r.apiKey.id } });

    await sleep(Math.max(0, oldExpiry - Date.now()) + 100);
    expect(await verifier().verify(oldSecret, new Date())).toEqual({ ok: false, reason: "KEY_EXPIRED", keyId: old.id });
    expect(await verifier().verify(r.secret, new Date())).toMatchObject({ ok: true });

    // A key is rotated once; an expired one not at all.
    const again = await admin.request(ROTATE, { id: old.id, s: 60 });
    expect(errorCode(again)).toBe("CONFLICT");
  });

  it("keeps an earlier existing expiry when rotating with a longer overlap", async () => {
    const expiresAt = new Date(Date.now() + 60_000).toISOString();
    const { apiKey } = await createKey({ expiresAt });
    const r = (await admin.ok(ROTATE, { id: apiKey.id, s: 3_600 })).rotateApiKey;
    expect((await admin.ok(GET, { id: apiKey.id })).apiKey.expiresAt).toBe(expiresAt);
    // The successor keeps the lifetime the key was created with.
    expect(r.apiKey.expiresAt).toBe(expiresAt);
    // Its successor is the one to rotate next.
    expect(errorCode(await admin.request(ROTATE, { id: apiKey.id, s: 10 }))).toBe("CONFLICT");
  });

  it("revokes: KEY_REVOKED at once, idempotently, audited", async () => {
    const { secret, apiKey } = await createKey();
    expect((await verifier().verify(secret, new Date())).ok).toBe(true);
    const revoked = (await admin.ok(REVOKE, { id: apiKey.id })).revokeApiKey;
    expect(revoked.status).toBe("REVOKED");
    expect(revoked.revokedAt).not.toBeNull();
    expect(await verifier().verify(secret, new Date())).toEqual({ ok: false, reason: "KEY_REVOKED", keyId: apiKey.id });

    const twice = (await admin.ok(REVOKE, { id: apiKey.id })).revokeApiKey;
    expect(twice.revokedAt).toBe(revoked.revokedAt);
    expect(errorCode(await admin.request(ROTATE, { id: apiKey.id, s: 0 }))).toBe("CONFLICT");
    expect(errorCode(await admin.request(REVOKE, { id: newId("apiKey") }))).toBe("NOT_FOUND");

    const dump = await dumpDatabase(db.url);
    expect(dump.match(new RegExp(`apiKey\\.revoke[^\\n]*${apiKey.id}|${apiKey.id}[^\\n]*apiKey\\.revoke`, "g"))?.length).toBe(2);
  });

  it("revocation reaches a second replica through the bus within 5 s (not by cache expiry)", async () => {
    // A TTL far above 5 s on the second replica: only the invalidation message can make it forget.
    const second = await startInstance({ ...env, CACHE_TTL_MS: "600000" });
    try {
      const { secret, apiKey } = await createKey();
      const v2 = second.app.services.apiKeyVerifier;
      expect((await v2.verify(secret, new Date())).ok).toBe(true);
      const lookups = v2.lookups;
      expect((await v2.verify(secret, new Date())).ok).toBe(true);
      expect(v2.lookups).toBe(lookups);

      await admin.ok(REVOKE, { id: apiKey.id });
      const elapsed = await waitUntil(async () => (await v2.verify(secret, new Date())).ok === false, 5_000, 20);
      expect(elapsed).toBeLessThan(5_000);
      expect(await v2.verify(secret, new Date())).toEqual({ ok: false, reason: "KEY_REVOKED", keyId: apiKey.id });
    } finally {
      await second.stop();
    }
  });

  it("pages a tenant's keys with a cursor", async () => {
    const other = await seedTenant(primary.app.database.db, "paging");
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await admin.ok(CREATE, { input: { tenantId: other, name: `k${i}` } })).createApiKey.apiKey.id);
    ids.sort();
    const p1 = (await admin.ok(LIST, { t: other, first: 2 })).apiKeys;
    expect(p1.nodes.map((n: any) => n.id)).toEqual(ids.slice(0, 2));
    expect(p1.pageInfo.hasNextPage).toBe(true);
    const p2 = (await admin.ok(LIST, { t: other, first: 2, after: p1.pageInfo.endCursor })).apiKeys;
    expect(p2.nodes.map((n: any) => n.id)).toEqual(ids.slice(2));
    expect(p2.pageInfo.hasNextPage).toBe(false);
    expect(errorCode(await admin.request(LIST, { t: newId("tenant") }))).toBe("NOT_FOUND");
    expect(errorCode(await admin.request(LIST, { t: other, first: 201 }))).toBe("BAD_USER_INPUT");
  });

  describe("input validation: BAD_USER_INPUT naming the field, nothing written", () => {
    const past = () => new Date(Date.now() - 1_000).toISOString();
    const maxUsd = formatUsd(MAX_COUNTER_NANO);
    const overMaxUsd = formatUsd(MAX_COUNTER_NANO + 1n);
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ["empty name", { name: "" }, "input.name"],
      ["blank name", { name: "   " }, "input.name"],
      ["201-char name", { name: "n".repeat(201) }, "input.name"],
      ["101 routes", { allowedRoutes: Array.from({ length: 101 }, (_, i) => `r${i}`) }, "input.allowedRoutes"],
      ["a 201-char model", { allowedModels: ["m".repeat(201)] }, "input.allowedModels"],
      ["an empty route", { allowedRoutes: [""] }, "input.allowedRoutes"],
      ["expiry in the past", { expiresAt: past() }, "input.expiresAt"],
      ["monthly budget above the counter range", { monthlyBudgetUsd: overMaxUsd }, "input.monthlyBudgetUsd"],
      ["daily budget above the counter range", { dailyBudgetUsd: overMaxUsd }, "input.dailyBudgetUsd"],
      ["a budget with 10 decimals", { monthlyBudgetUsd: "1.0000000001" }, ""],
    ];
    for (const [what, input, field] of cases) {
      it(`refuses ${what}`, async () => {
        const before = await keyRowCount();
        const r = await admin.request(CREATE, { input: { tenantId, name: "ok", ...input } });
        expect(errorCode(r)).toBe("BAD_USER_INPUT");
        if (field) expect(r.errors![0]!.extensions!.field).toBe(field);
        expect(await keyRowCount()).toBe(before);
      });
    }

    it("accepts every limit exactly at the boundary", async () => {
      const { apiKey } = await createKey({
        name: "n".repeat(200),
        allowedRoutes: Array.from({ length: 100 }, (_, i) => `r${i}`),
        allowedModels: ["m".repeat(200)],
        monthlyBudgetUsd: maxUsd,
        dailyBudgetUsd: "0",
      });
      expect(apiKey.monthlyBudgetUsd).toBe(maxUsd);
      expect(apiKey.dailyBudgetUsd).toBe("0.000000000");
      expect(apiKey.allowedRoutes).toHaveLength(100);
      expect(apiKey.name).toHaveLength(200);
    });

    it("bounds overlapSeconds to 0..30 days", async () => {
      const { apiKey } = await createKey();
      for (const s of [-1, 2_592_001]) {
        const r = await admin.request(ROTATE, { id: apiKey.id, s });
        expect(errorCode(r)).toBe("BAD_USER_INPUT");
        expect(r.errors![0]!.extensions!.field).toBe("overlapSeconds");
      }
      expect((await admin.ok(GET, { id: apiKey.id })).apiKey.expiresAt).toBeNull();
      const ok = (await admin.ok(ROTATE, { id: apiKey.id, s: 2_592_000 })).rotateApiKey;
      expect(ok.apiKey.rotatedFromId).toBe(apiKey.id);
    });

    it("refuses an unknown tenant as NOT_FOUND", async () => {
      const before = await keyRowCount();
      expect(errorCode(await admin.request(CREATE, { input: { tenantId: newId("tenant"), name: "x" } }))).toBe("NOT_FOUND");
      expect(errorCode(await admin.request(CREATE, { input: { tenantId: "not-an-id", name: "x" } }))).toBe("NOT_FOUND");
      expect(await keyRowCount()).toBe(before);
    });
  });
});
