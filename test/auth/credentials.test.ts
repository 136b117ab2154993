import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.js";
import { createTestDatabase, testEnv } from "../support/env.js";
import { errorCode, GraphQLClient } from "../support/client.js";
import { spawnServer, type ServerProcess } from "../support/process.js";
import { credentialFormat, mintToken } from "../../src/auth/api-key-format.js";
import { newId } from "../../src/lib/ids.js";
import { dumpDatabase, seedTenant, waitUntil } from "./support.js";

const VIEWER = `{ viewer { id role tenantId name } }`;
const CREATE_CRED = `mutation($input: CreateCredentialInput!) { createCredential(input: $input) { secret credential { id role tenantId name status createdAt revokedAt } } }`;
const REVOKE_CRED = `mutation($id: ID!) { revokeCredential(id: $id) { id status revokedAt } }`;
const LIST_CREDS = `query($first: Int, $after: String) { credentials(first: $first, after: $after) { nodes { id role } pageInfo { hasNextPage endCursor } } }`;
const GET_CRED = `query($id: ID!) { credential(id: $id) { id } }`;
const CREATE_KEY = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id } } }`;
const ROTATE_KEY = `mutation($id: ID!) { rotateApiKey(id: $id, overlapSeconds: 0) { secret } }`;
const REVOKE_KEY = `mutation($id: ID!) { revokeApiKey(id: $id) { id } }`;
const GET_KEY = `query($id: ID!) { apiKey(id: $id) { id tenantId } }`;
const LIST_KEYS = `query($t: ID!) { apiKeys(tenantId: $t) { nodes { id tenantId } } }`;

describe("service credentials", () => {
  let t: TestApp;
  let tenantA: string;
  let tenantB: string;
  let keyA: string;
  let keyB: string;

  async function createCredential(input: Record<string, unknown>) {
    return (await t.admin.ok(CREATE_CRED, { input })).createCredential as { secret: string; credential: Record<string, any> };
  }

  beforeAll(async () => {
    t = await startTestApp();
    tenantA = await seedTenant(t.app.database.db, "tenant-a");
    tenantB = await seedTenant(t.app.database.db, "tenant-b");
    keyA = (await t.admin.ok(CREATE_KEY, { input: { tenantId: tenantA, name: "a" } })).createApiKey.apiKey.id;
    keyB = (await t.admin.ok(CREATE_KEY, { input: { tenantId: tenantB, name: "b" } })).createApiKey.apiKey.id;
  });
  afterAll(async () => t?.close());

  it("creates GATEWAY, BILLING and TENANT_ADMIN credentials that authenticate as themselves", async () => {
    const gw = await createCredential({ role: "GATEWAY", name: "edge gateway" });
    const billing = await createCredential({ role: "BILLING", name: "invoicing", tenantId: tenantA });
    const ta = await createCredential({ role: "TENANT_ADMIN", name: "acme admin", tenantId: tenantA });

    for (const c of [gw, billing, ta]) {
      expect(c.secret).toMatch(/^llmsvc_[0-9A-Za-z]{16}_[0-9A-Za-z]{38}$/);
      expect(c.credential).toMatchObject({ status: "ACTIVE", revokedAt: null });
      const me = (await t.client(c.secret).ok(VIEWER)).viewer;
      expect(me).toEqual({ id: c.credential.id, role: c.credential.role, tenantId: c.credential.tenantId, name: c.credential.name });
    }
    expect(gw.credential.tenantId).toBeNull();
    expect(billing.credential.tenantId).toBe(tenantA);

    const dump = await dumpDatabase(t.databaseUrl);
    for (const c of [gw, billing, ta]) {
      expect(dump).toContain(c.credential.id);
      expect(dump).not.toContain(c.secret.split("_")[2]!.slice(0, 32));
    }
    expect(dump).toMatch(/credential\.create/);
  });

  it("validates the role's tenant binding: BAD_USER_INPUT naming the field, or NOT_FOUND", async () => {
    const noTenant = await t.admin.request(CREATE_CRED, { input: { role: "TENANT_ADMIN", name: "x" } });
    expect(errorCode(noTenant)).toBe("BAD_USER_INPUT");
    expect(noTenant.errors![0]!.extensions!.field).toBe("input.tenantId");

    const boundAdmin = await t.admin.request(CREATE_CRED, { input: { role: "ADMIN", name: "x", tenantId: tenantA } });
    expect(errorCode(boundAdmin)).toBe("BAD_USER_INPUT");
    expect(boundAdmin.errors![0]!.extensions!.field).toBe("input.tenantId");

    const longName = await t.admin.request(CREATE_CRED, { input: { role: "GATEWAY", name: "n".repeat(201) } });
    expect(longName.errors![0]!.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "input.name" });

    expect(errorCode(await t.admin.request(CREATE_CRED, { input: { role: "GATEWAY", name: "x", tenantId: newId("tenant") } }))).toBe("NOT_FOUND");
    expect(errorCode(await t.admin.request(CREATE_CRED, { input: { role: "SUPERUSER", name: "x" } }))).toBe("BAD_USER_INPUT");
  });

  it("refuses wrong secrets, malformed tokens and tenant API keys with 401", async () => {
    const gw = await createCredential({ role: "GATEWAY", name: "gw" });
    const forged = mintToken(credentialFormat("llm"), gw.credential.id);
    const tenantKey = (await t.admin.ok(CREATE_KEY, { input: { tenantId: tenantA, name: "k" } })).createApiKey.secret as string;
    for (const token of [forged, gw.secret.slice(0, -1) + (gw.secret.endsWith("a") ? "b" : "a"), "garbage-token", tenantKey]) {
      const r = await t.client(token).request(VIEWER);
      expect(r.status).toBe(401);
      expect(errorCode(r)).toBe("UNAUTHENTICATED");
    }
    const keyAsBearer = await t.client(tenantKey).request(VIEWER);
    expect(keyAsBearer.errors![0]!.message).toMatch(/checkAndReserve/);
    expect((await t.client("a b").request(VIEWER)).status).toBe(401);
  });

  it("GATEWAY and BILLING are FORBIDDEN on every key and credential operation", async () => {
    const callers = [await createCredential({ role: "GATEWAY", name: "gw" }), await createCredential({ role: "BILLING", name: "bill", tenantId: tenantA })];
    const ops: Array<[string, Record<string, unknown>]> = [
      [CREATE_KEY, { input: { tenantId: tenantA, name: "x" } }],
      [ROTATE_KEY, { id: keyA }],
      [REVOKE_KEY, { id: keyA }],
      [GET_KEY, { id: keyA }],
      [LIST_KEYS, { t: tenantA }],
      [CREATE_CRED, { input: { role: "ADMIN", name: "escalate" } }],
      [REVOKE_CRED, { id: callers[0]!.credential.id }],
      [GET_CRED, { id: callers[0]!.credential.id }],
      [LIST_CREDS, {}],
    ];
    for (const c of callers) {
      for (const [query, variables] of ops) {
        const r = await t.client(c.secret).request(query, variables);
        expect(errorCode(r), `${c.credential.role}: ${query.slice(0, 40)}`).toBe("FORBIDDEN");
      }
    }
    // Nothing those calls attempted happened.
    expect((await t.admin.ok(GET_KEY, { id: keyA })).apiKey.id).toBe(keyA);
    expect((await t.client(callers[0]!.secret).ok(VIEWER)).viewer.role).toBe("GATEWAY");
  });

  it("a TENANT_ADMIN reads its own tenant's keys only; another tenant's reads as NOT_FOUND", async () => {
    const ta = await createCredential({ role: "TENANT_ADMIN", name: "a-admin", tenantId: tenantA });
    const c = t.client(ta.secret);

    expect((await c.ok(GET_KEY, { id: keyA })).apiKey).toEqual({ id: keyA, tenantId: tenantA });
    const own = (await c.ok(LIST_KEYS, { t: tenantA })).apiKeys.nodes;
    expect(own.length).toBeGreaterThan(0);
    expect(own.every((k: any) => k.tenantId === tenantA)).toBe(true);

    const otherKey = await c.request(GET_KEY, { id: keyB });
    const unknownKey = await c.request(GET_KEY, { id: newId("apiKey") });
    expect(errorCode(otherKey)).toBe("NOT_FOUND");
    expect(errorCode(unknownKey)).toBe("NOT_FOUND");
    // Same shape as an unknown id, so ids of other tenants cannot be probed.
    expect(otherKey.errors![0]!.message).toBe(`api key ${keyB} not found`);
    expect(errorCode(await c.request(LIST_KEYS, { t: tenantB }))).toBe("NOT_FOUND");

    for (const [query, variables] of [
      [CREATE_KEY, { input: { tenantId: tenantA, name: "x" } }],
      [ROTATE_KEY, { id: keyA }],
      [REVOKE_KEY, { id: keyA }],
      [LIST_CREDS, {}],
    ] as const) {
      expect(errorCode(await c.request(query, variables))).toBe("FORBIDDEN");
    }
  });

  it("lists credentials a page at a time", async () => {
    const all: string[] = [];
    let after: string | null = null;
    for (;;) {
      const page: any = (await t.admin.ok(LIST_CREDS, { first: 2, after })).credentials;
      all.push(...page.nodes.map((n: any) => n.id));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    expect(all.length).toBeGreaterThanOrEqual(6);
    expect([...all].sort()).toEqual(all);
    expect(new Set(all).size).toBe(all.length);
  });

  describe("revocation across server processes", () => {
    let replica: ServerProcess;
    beforeAll(async () => {
      // A TTL far above 5 s on the replica: only the invalidation message can make it forget.
      replica = await spawnServer({ ...t.env, CACHE_TTL_MS: "600000" });
    });
    afterAll(async () => {
      await replica?.kill();
    });

    it("a second process refuses a revoked credential within 5 s", async () => {
      const gw = await createCredential({ role: "GATEWAY", name: "to revoke" });
      const onReplica = new GraphQLClient(replica.url, gw.secret);
      expect((await onReplica.ok(VIEWER)).viewer.id).toBe(gw.credential.id);

      const revoked = (await t.admin.ok(REVOKE_CRED, { id: gw.credential.id })).revokeCredential;
      expect(revoked.status).toBe("REVOKED");
      const elapsed = await waitUntil(async () => (await onReplica.request(VIEWER)).status === 401, 5_000, 25);
      expect(elapsed).toBeLessThan(5_000);
      const r = await onReplica.request(VIEWER);
      expect(errorCode(r)).toBe("UNAUTHENTICATED");
      expect(r.errors![0]!.message).toMatch(/revoked/);
      expect((await t.client(gw.secret).request(VIEWER)).status).toBe(401);

      // Revoking again is harmless and keeps the first revocation time.
      expect((await t.admin.ok(REVOKE_CRED, { id: gw.credential.id })).revokeCredential.revokedAt).toBe(revoked.revokedAt);
      expect(errorCode(await t.admin.request(REVOKE_CRED, { id: newId("credential") }))).toBe("NOT_FOUND");
    });
  });
});

describe("first start without configuration", () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  const servers: ServerProcess[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    for (const s of servers) await s.kill();
    await db?.drop();
  });

  it("prints a generated bootstrap token that works until an ADMIN credential exists, and stores it nowhere", async () => {
    // An empty variable counts as unset, whatever the test runner's own environment holds.
    const env = testEnv(db.url, { BOOTSTRAP_ADMIN_TOKEN: "" });
    const first = await spawnServer(env);
    servers.push(first);
    const printed = first.output().match(/llmboot_[0-9A-Za-z]{43}/g) ?? [];
    expect(new Set(printed).size).toBe(1);
    const token = printed[0]!;
    expect(first.output()).toMatch(/createCredential/);

    const boot = new GraphQLClient(first.url, token);
    expect((await boot.ok(VIEWER)).viewer.role).toBe("ADMIN");
    expect(await dumpDatabase(db.url)).not.toContain(token.slice("llmboot_".length));

    const created = (await boot.ok(CREATE_CRED, { input: { role: "ADMIN", name: "first operator" } })).createCredential;
    const realAdmin = new GraphQLClient(first.url, created.secret);
    expect((await realAdmin.ok(VIEWER)).viewer).toMatchObject({ role: "ADMIN", id: created.credential.id });

    // Retired for good on this process as soon as an ADMIN credential exists.
    const retired = await boot.request(VIEWER);
    expect(retired.status).toBe(401);
    expect(retired.errors![0]!.message).toMatch(/retired/);
    expect(await dumpDatabase(db.url)).not.toContain(token.slice("llmboot_".length));

    // A restart with an ADMIN credential in place generates nothing, and the old token is dead.
    await first.kill();
    const second = await spawnServer(env);
    servers.push(second);
    expect(second.output()).not.toMatch(/llmboot_/);
    expect((await new GraphQLClient(second.url, token).request(VIEWER)).status).toBe(401);
    expect((await new GraphQLClient(second.url, created.secret).ok(VIEWER)).viewer.role).toBe("ADMIN");
  });
});
