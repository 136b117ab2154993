import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { createTestDatabase, testEnv, BOOTSTRAP_TOKEN } from "../support/env.js";
import { GraphQLClient } from "../support/client.js";
import { spawnServer, type ServerProcess } from "../support/process.js";
import { createCredential, pageAll, seedTenants, subscribe, waitUntil, type Subscriber } from "./support.js";

const REVOKE_KEY = `mutation($id: ID!) { revokeApiKey(id: $id) { id } }`;
const CREATE_KEY = `mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { apiKey { id } } }`;

/**
 * Subscriptions across replicas: two server processes on one database and Redis. Process A runs
 * the workers (the relay); process B only serves. An event caused through A (revoking an API key
 * writes key.revoked in the same transaction) reaches a subscriber connected to B through Redis
 * pub/sub. Tenant scoping, authentication at connection_init and closing on revocation are
 * checked on the same pair.
 */
describe("quotaEvents subscription over graphql-ws, across two processes", () => {
  let a: ServerProcess;
  let b: ServerProcess;
  let db: { url: string; drop(): Promise<void> };
  let adminA: GraphQLClient;
  let tenantX: string;
  let tenantY: string;
  const subscribers: Subscriber[] = [];
  const track = (s: Subscriber) => (subscribers.push(s), s);

  async function newKey(tenantId: string): Promise<string> {
    return (await adminA.ok(CREATE_KEY, { input: { tenantId, name: "k" } })).createApiKey.apiKey.id;
  }

  beforeAll(async () => {
    db = await createTestDatabase();
    const env = testEnv(db.url);
    a = await spawnServer({ ...env, WORKERS_ENABLED: "true" });
    b = await spawnServer({ ...env, WORKERS_ENABLED: "false" });
    adminA = new GraphQLClient(a.url, BOOTSTRAP_TOKEN);
    [tenantX, tenantY] = (await seedTenants(adminA, 2)) as [string, string];
  });
  afterAll(async () => {
    for (const s of subscribers) await s.dispose().catch(() => {});
    await a?.kill();
    await b?.kill();
    await db?.drop();
  });

  it("delivers an event caused on process A to a subscriber on process B, only its tenant's, in order", async () => {
    const ta = await createCredential(adminA, "TENANT_ADMIN", tenantX);
    const sub = track(subscribe(b.url, ta.secret, { tenantId: tenantX }));
    await sub.connected;
    await new Promise((r) => setTimeout(r, 300)); // let the subscribe message reach B

    const keyY = await newKey(tenantY);
    const keyX1 = await newKey(tenantX);
    const keyX2 = await newKey(tenantX);
    await adminA.ok(REVOKE_KEY, { id: keyY });
    await adminA.ok(REVOKE_KEY, { id: keyX1 });
    await adminA.ok(REVOKE_KEY, { id: keyX2 });

    await waitUntil(() => sub.events.length >= 2, 15_000, "two events on B");
    expect(sub.errors).toEqual([]);
    expect(sub.events.map((e) => [e.type, e.tenantId, e.payload.keyId])).toEqual([
      ["key.revoked", tenantX, keyX1],
      ["key.revoked", tenantX, keyX2],
    ]);
    // Same ids and cursors as the replay log.
    const log = (await pageAll(adminA, { tenantId: tenantX })).nodes;
    expect(sub.events.map((e) => [e.id, e.cursor])).toEqual(log.map((e) => [e.id, e.cursor]));
    await new Promise((r) => setTimeout(r, 500));
    expect(sub.events).toHaveLength(2); // tenant Y's event never arrived
  });

  it("replays from a cursor, then continues live, with no gap or repeat", async () => {
    const billing = await createCredential(adminA, "BILLING", tenantX);
    const log = (await pageAll(adminA, { tenantId: tenantX })).nodes;
    expect(log.length).toBeGreaterThanOrEqual(2);
    const sub = track(subscribe(b.url, billing.secret, { tenantId: tenantX, after: log[0].cursor }));
    await waitUntil(() => sub.events.length >= log.length - 1, 10_000, "replayed events");
    const key = await newKey(tenantX);
    await adminA.ok(REVOKE_KEY, { id: key });
    await waitUntil(() => sub.events.length >= log.length, 15_000, "the live event after the replay");
    expect(sub.errors).toEqual([]);
    expect(sub.events.map((e) => e.id).slice(0, log.length - 1)).toEqual(log.slice(1).map((e) => e.id));
    expect(sub.events.at(-1).payload.keyId).toBe(key);
    expect(new Set(sub.events.map((e) => e.id)).size).toBe(sub.events.length);
  });

  it("refuses a cross-tenant subscription (TENANT_ADMIN and tenant-bound BILLING), and GATEWAY altogether", async () => {
    for (const role of ["TENANT_ADMIN", "BILLING"]) {
      const c = await createCredential(adminA, role, tenantX);
      const sub = track(subscribe(b.url, c.secret, { tenantId: tenantY }));
      await waitUntil(() => sub.errors.length > 0 || sub.completed, 10_000, `${role} refusal`);
      expect(sub.errors[0]?.extensions?.code, role).toBe("NOT_FOUND");
      expect(sub.events).toEqual([]);
    }
    const gw = await createCredential(adminA, "GATEWAY", null);
    const sub = track(subscribe(b.url, gw.secret, { tenantId: tenantX }));
    await waitUntil(() => sub.errors.length > 0, 10_000, "GATEWAY refusal");
    expect(sub.errors[0].extensions.code).toBe("FORBIDDEN");

    // An unbound BILLING credential and ADMIN may subscribe to any tenant.
    const unbound = await createCredential(adminA, "BILLING", null);
    const ok = track(subscribe(b.url, unbound.secret, { tenantId: tenantY }));
    const adminSub = track(subscribe(b.url, BOOTSTRAP_TOKEN, { tenantId: tenantY }));
    await Promise.all([ok.connected, adminSub.connected]);
    await new Promise((r) => setTimeout(r, 300));
    const key = await newKey(tenantY);
    await adminA.ok(REVOKE_KEY, { id: key });
    await waitUntil(() => ok.events.length > 0 && adminSub.events.length > 0, 15_000, "events for unbound subscribers");
    expect(ok.events[0].payload.keyId).toBe(key);
    expect(adminSub.events[0].payload.keyId).toBe(key);
  });

  it("authenticates at connection_init: no or a bad credential closes the socket with 4403", async () => {
    for (const token of [null, "not-a-valid-token", "llmsvc_AAAAAAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"]) {
      const sub = track(subscribe(b.url, token, { tenantId: tenantX }));
      await waitUntil(() => sub.closed, 10_000, "close");
      expect(sub.closed!.code, String(token)).toBe(4403);
      expect(sub.events).toEqual([]);
    }
    // Queries and mutations are not served over the socket.
    const c = await createCredential(adminA, "BILLING", null);
    const sub = track(subscribe(b.url, c.secret, {}, `{ quotaEvents { nodes { id } } }`));
    await waitUntil(() => sub.errors.length > 0, 10_000, "refusal of a query");
    expect(sub.errors[0].message).toMatch(/only subscriptions/);
  });

  it("closes the socket with 4403 when the subscriber's credential is revoked on the other replica", async () => {
    const c = await createCredential(adminA, "BILLING", tenantX);
    const sub = track(subscribe(b.url, c.secret, { tenantId: tenantX }));
    const bystander = track(subscribe(b.url, (await createCredential(adminA, "BILLING", tenantX)).secret, { tenantId: tenantX }));
    await Promise.all([sub.connected, bystander.connected]);
    const revokedAt = Date.now();
    await adminA.ok(`mutation($id: ID!) { revokeCredential(id: $id) { id } }`, { id: c.id });
    await waitUntil(() => sub.closed, 10_000, "the revoked subscriber's socket to close");
    expect(sub.closed!.code).toBe(4403);
    expect(sub.closed!.reason).toMatch(/revoked/);
    // Through the invalidation bus, not the periodic re-check (CACHE_TTL_MS = 5 s).
    expect(Date.now() - revokedAt).toBeLessThan(4_000);
    expect(bystander.closed).toBeNull();
    // The revoked credential cannot open a new socket either.
    const again = track(subscribe(b.url, c.secret, { tenantId: tenantX }));
    await waitUntil(() => again.closed, 10_000, "refusal");
    expect(again.closed!.code).toBe(4403);
  });

  it("serves graphql-ws on the HTTP port's /graphql path only", async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${b.port}/elsewhere`, "graphql-transport-ws");
    const err = await new Promise<Error>((resolve) => ws.once("error", resolve));
    expect(err.message).toMatch(/400/);
  });
});
