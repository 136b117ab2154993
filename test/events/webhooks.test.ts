import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Webhook } from "standardwebhooks";
import { startTestApp, type TestApp } from "../support/app.js";
import { errorCode, type GraphQLClient } from "../support/client.js";
import { dumpDatabase } from "../auth/support.js";
import { newId } from "../../src/lib/ids.js";
import type { NewQuotaEvent } from "../../src/domain/events/types.js";
import { WEBHOOK_RETRY_DELAYS_MS, WEBHOOK_RETRY_JITTER } from "../../src/domain/events/webhook-retry.js";
import { createCredential, seedTenants, sql, startReceiver, waitUntil, type Receiver } from "./support.js";

const CREATE = `mutation($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) { secret endpoint { id tenantId url eventTypes status disabledReason createdAt } }
}`;
const ROTATE = `mutation($id: ID!, $overlap: Int) { rotateWebhookSecret(id: $id, overlapSeconds: $overlap) { secret endpoint { id secretRotatedAt previousSecretExpiresAt } } }`;
const DELETE = `mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { id status } }`;
const LIST = `query($tenantId: ID, $after: String, $first: Int) { webhookEndpoints(tenantId: $tenantId, after: $after, first: $first) { nodes { id tenantId status disabledReason } pageInfo { hasNextPage endCursor } } }`;
const DELIVERIES = `query($id: ID!, $after: String, $first: Int) {
  webhookDeliveries(endpointId: $id, after: $after, first: $first) {
    nodes { id eventId eventType status attemptCount nextAttemptAt lastStatusCode lastError deliveredAt
      attempts { attempt outcome startedAt finishedAt durationMs statusCode error nextRetryAt } }
    pageInfo { hasNextPage endCursor }
  }
}`;

/**
 * Webhooks end to end in one process with the real relay and dispatcher (WORKERS_ENABLED=true),
 * delivering to a local receiver (so WEBHOOK_ALLOW_PRIVATE_TARGETS=true here; the refusals are
 * tested with it off at the end).
 */
describe("webhooks: endpoints, signed delivery, retries, 410, attempt log", () => {
  let t: TestApp;
  let tenantA: string;
  let tenantB: string;
  let receiver: Receiver;

  const event = (tenantId: string, type: NewQuotaEvent["type"] = "threshold.crossed", payload: Record<string, unknown> = {}): NewQuotaEvent => ({
    type,
    tenantId,
    scope: "tenant",
    period: "2026-11",
    payload: { dimension: "MONTHLY_TOKENS", percent: "80.00", ...payload },
  });

  async function createEndpoint(c: GraphQLClient, input: Record<string, unknown>) {
    return (await c.ok(CREATE, { input })).createWebhookEndpoint as { secret: string; endpoint: any };
  }
  async function deliveries(id: string) {
    return (await t.admin.ok(DELIVERIES, { id, first: 200 })).webhookDeliveries.nodes as any[];
  }
  /** Hooks the receiver got with this webhook-id. */
  const hooksFor = (eventId: string) => receiver.received.filter((h) => h.headers["webhook-id"] === eventId);

  beforeAll(async () => {
    t = await startTestApp({ WORKERS_ENABLED: "true", WEBHOOK_ALLOW_PRIVATE_TARGETS: "true", WEBHOOK_TIMEOUT_MS: "2000" });
    [tenantA, tenantB] = (await seedTenants(t.admin, 2)) as [string, string];
  });
  afterAll(async () => {
    await t?.close();
    await receiver?.close();
  });

  it("creates an endpoint whose secret is shown once and stored only sealed, and delivers a signed event", async () => {
    receiver = await startReceiver();
    const { secret, endpoint } = await createEndpoint(t.admin, { url: receiver.url, tenantId: tenantA, eventTypes: ["threshold.crossed", "budget.exhausted"] });
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(endpoint).toMatchObject({ tenantId: tenantA, url: receiver.url, eventTypes: ["threshold.crossed", "budget.exhausted"], status: "ACTIVE" });
    const dump = await dumpDatabase(t.databaseUrl);
    expect(dump).toContain(endpoint.id);
    expect(dump).not.toContain(secret.slice(6));
    expect(dump).not.toContain(secret.slice(6, 26));

    const e = await t.app.services.outbox.append(event(tenantA));
    const [hook] = await receiver.waitFor((all) => all.some((h) => h.headers["webhook-id"] === e.id)).then(() => hooksFor(e.id));
    expect(hook!.headers["content-type"]).toBe("application/json");
    expect(Math.abs(Number(hook!.headers["webhook-timestamp"]) - Date.now() / 1000)).toBeLessThan(30);
    const verified = new Webhook(secret).verify(hook!.body, hook!.headers) as any;
    expect(verified).toMatchObject({ type: "threshold.crossed", data: { id: e.id, tenantId: tenantA, scope: "tenant", period: "2026-11", payload: { percent: "80.00" } } });
    // The cursor in the body resumes quotaEvents right after this event.
    const page = await t.admin.ok(`query($a: String) { quotaEvents(after: $a) { nodes { id } } }`, { a: verified.data.cursor });
    expect(page.quotaEvents.nodes.map((n: any) => n.id)).not.toContain(e.id);
    expect(() => new Webhook(secret).verify(hook!.body.replace("80.00", "99.00"), hook!.headers)).toThrow();

    const [d] = await waitUntil(async () => {
      const ds = await deliveries(endpoint.id);
      return ds[0]?.status === "DELIVERED" ? ds : null;
    });
    expect(d).toMatchObject({ eventId: e.id, eventType: "threshold.crossed", status: "DELIVERED", attemptCount: 1, lastStatusCode: 200, nextAttemptAt: null });
    expect(d.attempts).toHaveLength(1);
    expect(d.attempts[0]).toMatchObject({ attempt: 1, outcome: "SUCCEEDED", statusCode: 200, error: null, nextRetryAt: null });
    expect(d.attempts[0].durationMs).toBeGreaterThanOrEqual(0);

    // Filters: another tenant's event and an unsubscribed type create no delivery.
    const other = await t.app.services.outbox.append(event(tenantB));
    const unwanted = await t.app.services.outbox.append(event(tenantA, "period.rolled"));
    const marker = await t.app.services.outbox.append(event(tenantA, "budget.exhausted"));
    await receiver.waitFor(() => hooksFor(marker.id).length > 0);
    expect(hooksFor(other.id)).toHaveLength(0);
    expect(hooksFor(unwanted.id)).toHaveLength(0);
    expect((await deliveries(endpoint.id)).map((x) => x.eventId).sort()).toEqual([e.id, marker.id].sort());
  });

  it("retries a 500 on the backoff schedule with the same webhook-id, and logs every attempt", async () => {
    const { endpoint } = await createEndpoint(t.admin, { url: receiver.url, tenantId: tenantB, eventTypes: ["degradation.applied"] });
    let calls = 0;
    receiver.respond = (_h, res) => {
      calls++;
      res.writeHead(calls === 1 ? 500 : 200);
      res.end(calls === 1 ? "database is down" : "ok");
    };
    const e = await t.app.services.outbox.append(event(tenantB, "degradation.applied"));
    await receiver.waitFor(() => hooksFor(e.id).length === 1);
    const failed = await waitUntil(async () => {
      const [d] = await deliveries(endpoint.id);
      // The delivery row and its attempts are read by separate statements: wait for both.
      return d?.attempts[0]?.outcome === "FAILED" && d.lastStatusCode !== null ? d : null;
    });
    expect(failed).toMatchObject({ status: "PENDING", attemptCount: 1, lastStatusCode: 500, lastError: "HTTP 500: database is down" });
    const a1 = failed.attempts[0];
    expect(a1).toMatchObject({ attempt: 1, statusCode: 500, error: "HTTP 500: database is down" });
    // The first retry is due 30 s ± 20 % after the failure, and the delivery says so.
    const delay = new Date(a1.nextRetryAt).getTime() - new Date(a1.finishedAt).getTime();
    expect(delay).toBeGreaterThanOrEqual(WEBHOOK_RETRY_DELAYS_MS[0]! * (1 - WEBHOOK_RETRY_JITTER) - 50);
    expect(delay).toBeLessThanOrEqual(WEBHOOK_RETRY_DELAYS_MS[0]! * (1 + WEBHOOK_RETRY_JITTER) + 50);
    expect(failed.nextAttemptAt).toBe(a1.nextRetryAt);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(hooksFor(e.id)).toHaveLength(1); // nothing is sent before the retry is due

    // Let the 30 s pass: make the retry due now.
    await sql(t.databaseUrl, `UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = $1`, [failed.id]);
    await receiver.waitFor(() => hooksFor(e.id).length === 2);
    const [first, second] = hooksFor(e.id);
    expect(second!.headers["webhook-id"]).toBe(first!.headers["webhook-id"]);
    expect(second!.body).toBe(first!.body);
    const done = await waitUntil(async () => {
      const [d] = await deliveries(endpoint.id);
      return d?.status === "DELIVERED" ? d : null;
    });
    expect(done.attemptCount).toBe(2);
    expect(done.attempts.map((a: any) => [a.attempt, a.outcome, a.statusCode])).toEqual([
      [1, "FAILED", 500],
      [2, "SUCCEEDED", 200],
    ]);
    receiver.respond = (_h, res) => {
      res.writeHead(200);
      res.end();
    };
  });

  it("gives up after the last attempt: the delivery is FAILED and no retry is scheduled", async () => {
    const { endpoint } = await createEndpoint(t.admin, { url: `${receiver.url}/flaky`, tenantId: tenantB, eventTypes: ["reservation.expired"] });
    receiver.respond = (h, res) => {
      res.writeHead(h.body.includes("reservation.expired") ? 503 : 200);
      res.end();
    };
    const e = await t.app.services.outbox.append(event(tenantB, "reservation.expired"));
    await receiver.waitFor(() => hooksFor(e.id).length === 1);
    const pending = await waitUntil(async () => {
      const [x] = await deliveries(endpoint.id);
      return x?.attempts[0]?.outcome === "FAILED" ? x : null;
    });
    // As if attempts 2 to 13 had failed too, and the 14th, the last, is due now.
    await sql(t.databaseUrl, `UPDATE webhook_deliveries SET attempt_count = 13, next_attempt_at = now() WHERE id = $1`, [pending.id]);
    await receiver.waitFor(() => hooksFor(e.id).length === 2);
    const d = await waitUntil(async () => {
      const [x] = await deliveries(endpoint.id);
      return x?.status === "FAILED" ? x : null;
    });
    expect(d).toMatchObject({ attemptCount: 14, lastStatusCode: 503, nextAttemptAt: null });
    expect(d.attempts.map((a: any) => [a.attempt, a.outcome, a.nextRetryAt === null])).toEqual([
      [1, "FAILED", false],
      [14, "FAILED", true],
    ]);
    receiver.respond = (_h, res) => {
      res.writeHead(200);
      res.end();
    };
  });

  it("disables the endpoint on 410 Gone: that delivery FAILED, the others CANCELLED, nothing more sent", async () => {
    const gone = await startReceiver();
    try {
      // The first event fails (500, retry pending); the second is answered 410.
      gone.respond = (_h, res) => {
        res.writeHead(gone.received.length === 1 ? 500 : 410);
        res.end();
      };
      const { endpoint } = await createEndpoint(t.admin, { url: gone.url, tenantId: tenantA, eventTypes: ["usage.overage"] });
      const e0 = await t.app.services.outbox.append(event(tenantA, "usage.overage", { n: 0 }));
      await waitUntil(async () => (await deliveries(endpoint.id))[0]?.attempts[0]?.outcome === "FAILED");
      const e1 = await t.app.services.outbox.append(event(tenantA, "usage.overage", { n: 1 }));
      await gone.waitFor((all) => all.length >= 2);
      const ep = await waitUntil(async () => {
        const nodes = (await t.admin.ok(LIST, { tenantId: tenantA })).webhookEndpoints.nodes as any[];
        const x = nodes.find((n) => n.id === endpoint.id);
        return x?.status === "DISABLED" ? x : null;
      });
      expect(ep.disabledReason).toMatch(/410 Gone/);
      const [d1, d0] = await waitUntil(async () => {
        const ds = await deliveries(endpoint.id);
        return ds[0]?.status === "FAILED" && ds[1]?.status === "CANCELLED" ? ds : null;
      });
      expect(d1).toMatchObject({ eventId: e1.id, status: "FAILED", lastStatusCode: 410, nextAttemptAt: null });
      expect(d1.attempts).toEqual([expect.objectContaining({ attempt: 1, outcome: "GONE", statusCode: 410, nextRetryAt: null })]);
      expect(d0).toMatchObject({ eventId: e0.id, status: "CANCELLED", nextAttemptAt: null });
      expect(d0.lastError).toMatch(/410 Gone/);

      // Later events create no deliveries for it, and nothing is sent.
      const e2 = await t.app.services.outbox.append(event(tenantA, "usage.overage"));
      const probe = await t.app.services.outbox.append(event(tenantA, "threshold.crossed"));
      await receiver.waitFor(() => hooksFor(probe.id).length > 0); // the relay is past e2
      expect((await deliveries(endpoint.id)).map((d) => d.eventId)).toEqual([e1.id, e0.id]);
      expect(gone.received.map((h) => h.headers["webhook-id"])).toEqual([e0.id, e1.id]);
      expect(e2.id).not.toBe(e1.id);
    } finally {
      await gone.close();
    }
  });

  it("rotates the secret: two signatures during the overlap, each verifying; one after an immediate rotation", async () => {
    const rx = await startReceiver();
    try {
      const { endpoint, secret: oldSecret } = await createEndpoint(t.admin, { url: rx.url, tenantId: tenantB, eventTypes: ["anomaly.detected"] });
      const r = (await t.admin.ok(ROTATE, { id: endpoint.id })).rotateWebhookSecret;
      expect(r.secret).toMatch(/^whsec_/);
      expect(r.secret).not.toBe(oldSecret);
      expect(new Date(r.endpoint.previousSecretExpiresAt).getTime() - Date.now()).toBeGreaterThan(86_400_000 - 60_000);

      const e1 = await t.app.services.outbox.append(event(tenantB, "anomaly.detected"));
      const [h1] = await rx.waitFor((all) => all.length >= 1);
      expect(h1!.headers["webhook-id"]).toBe(e1.id);
      expect(h1!.headers["webhook-signature"]!.split(" ")).toHaveLength(2);
      expect(new Webhook(r.secret).verify(h1!.body, h1!.headers)).toBeTruthy();
      expect(new Webhook(oldSecret).verify(h1!.body, h1!.headers)).toBeTruthy();

      const r2 = (await t.admin.ok(ROTATE, { id: endpoint.id, overlap: 0 })).rotateWebhookSecret;
      expect(r2.endpoint.previousSecretExpiresAt).toBeNull();
      const e2 = await t.app.services.outbox.append(event(tenantB, "anomaly.detected"));
      await rx.waitFor((all) => all.some((h) => h.headers["webhook-id"] === e2.id));
      const h2 = rx.received.find((h) => h.headers["webhook-id"] === e2.id)!;
      expect(h2.headers["webhook-signature"]!.split(" ")).toHaveLength(1);
      expect(new Webhook(r2.secret).verify(h2.body, h2.headers)).toBeTruthy();
      expect(() => new Webhook(r.secret).verify(h2.body, h2.headers)).toThrow();
      expect(() => new Webhook(oldSecret).verify(h2.body, h2.headers)).toThrow();
    } finally {
      await rx.close();
    }
  });

  it("lets a TENANT_ADMIN manage its own tenant's endpoints only; deleting stops delivery and keeps the log", async () => {
    const ta = t.client((await createCredential(t.admin, "TENANT_ADMIN", tenantA)).secret);
    const own = await createEndpoint(ta, { url: `${receiver.url}/ta`, eventTypes: ["breaker.opened"] });
    expect(own.endpoint.tenantId).toBe(tenantA); // defaults to its own tenant
    expect(errorCode(await ta.request(CREATE, { input: { url: receiver.url, tenantId: tenantB } }))).toBe("NOT_FOUND");
    const foreign = await createEndpoint(t.admin, { url: `${receiver.url}/b`, tenantId: tenantB, eventTypes: ["breaker.opened"] });
    const everyone = await createEndpoint(t.admin, { url: `${receiver.url}/all`, eventTypes: ["breaker.closed"] });
    expect(everyone.endpoint.tenantId).toBeNull();
    for (const id of [foreign.endpoint.id, everyone.endpoint.id]) {
      expect(errorCode(await ta.request(ROTATE, { id }))).toBe("NOT_FOUND");
      expect(errorCode(await ta.request(DELETE, { id }))).toBe("NOT_FOUND");
      expect(errorCode(await ta.request(DELIVERIES, { id }))).toBe("NOT_FOUND");
    }
    const listed = (await ta.ok(LIST, {})).webhookEndpoints.nodes as any[];
    expect(listed.length).toBeGreaterThan(0);
    expect(listed.every((n) => n.tenantId === tenantA)).toBe(true);
    expect(errorCode(await ta.request(LIST, { tenantId: tenantB }))).toBe("NOT_FOUND");
    const adminAll = (await t.admin.ok(LIST, { first: 200 })).webhookEndpoints.nodes as any[];
    expect(adminAll.map((n) => n.id)).toEqual(expect.arrayContaining([own.endpoint.id, foreign.endpoint.id, everyone.endpoint.id]));

    const before = await t.app.services.outbox.append(event(tenantA, "breaker.opened"));
    await receiver.waitFor(() => hooksFor(before.id).length > 0);
    expect((await ta.ok(DELETE, { id: own.endpoint.id })).deleteWebhookEndpoint.status).toBe("DELETED");
    const after = await t.app.services.outbox.append(event(tenantA, "breaker.opened"));
    const probe = await t.app.services.outbox.append(event(tenantB, "breaker.opened"));
    await receiver.waitFor(() => hooksFor(probe.id).length > 0);
    expect(hooksFor(after.id)).toHaveLength(0);
    expect((await ta.ok(LIST, {})).webhookEndpoints.nodes.map((n: any) => n.id)).not.toContain(own.endpoint.id);
    const log = (await ta.ok(DELIVERIES, { id: own.endpoint.id })).webhookDeliveries.nodes;
    expect(log.map((d: any) => d.eventId)).toEqual([before.id]);
    const [row] = await sql(t.databaseUrl, `SELECT secret_sealed, previous_secret_sealed FROM webhook_endpoints WHERE id = $1`, [own.endpoint.id]);
    expect(row).toEqual({ secret_sealed: null, previous_secret_sealed: null });
    expect(errorCode(await ta.request(DELETE, { id: own.endpoint.id }))).toBe("NOT_FOUND");
  });

  it("pages deliveries newest first without gaps", async () => {
    const { endpoint } = await createEndpoint(t.admin, { url: `${receiver.url}/paged`, tenantId: tenantB, eventTypes: ["period.rolled"] });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await t.app.services.outbox.append(event(tenantB, "period.rolled", { i }))).id);
    await receiver.waitFor(() => ids.every((id) => hooksFor(id).length > 0));
    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const page: any = (await t.admin.ok(DELIVERIES, { id: endpoint.id, first: 2, after })).webhookDeliveries;
      seen.push(...page.nodes.map((n: any) => n.eventId));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    expect(seen).toEqual([...ids].reverse());
  });

  it("validates input: event types, URL and tenant", async () => {
    const bad = async (input: Record<string, unknown>) => (await t.admin.request(CREATE, { input })).errors?.[0]?.extensions;
    expect(await bad({ url: receiver.url, tenantId: tenantA, eventTypes: ["threshold.crossed", "nope"] })).toMatchObject({ code: "BAD_USER_INPUT", field: "input.eventTypes" });
    expect(await bad({ url: receiver.url, tenantId: tenantA, eventTypes: [] })).toMatchObject({ code: "BAD_USER_INPUT", field: "input.eventTypes" });
    expect(await bad({ url: "ftp://example.com/", tenantId: tenantA })).toMatchObject({ code: "BAD_USER_INPUT", field: "input.url" });
    expect(await bad({ url: "http://does-not-exist.invalid/hook", tenantId: tenantA })).toMatchObject({ code: "BAD_USER_INPUT", field: "input.url" });
    expect(await bad({ url: receiver.url, tenantId: newId("tenant") })).toMatchObject({ code: "NOT_FOUND" });
    expect(errorCode(await t.admin.request(ROTATE, { id: newId("webhook"), overlap: 10 }))).toBe("NOT_FOUND");
    expect(errorCode(await t.admin.request(ROTATE, { id: newId("webhook"), overlap: -1 }))).toBe("BAD_USER_INPUT");
  });
});

describe("webhook targets on private addresses are refused by default", () => {
  let t: TestApp;
  let tenant: string;
  let receiver: Receiver;

  beforeAll(async () => {
    t = await startTestApp({ WORKERS_ENABLED: "true", WEBHOOK_TIMEOUT_MS: "2000" });
    [tenant] = (await seedTenants(t.admin, 1)) as [string];
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await t?.close();
    await receiver?.close();
  });

  it.each([
    ["http://127.0.0.1:9/hook", /127\.0\.0\.1 is loopback/],
    ["http://10.0.0.1/hook", /private \(10\.0\.0\.0\/8\)/],
    ["http://169.254.169.254/latest/meta-data/", /link-local/],
    ["http://[::1]:8080/hook", /::1 is loopback/],
    ["http://[fd00::1]/hook", /unique local/],
    ["http://localhost:9/hook", /localhost resolves to .*loopback/],
  ])("refuses %s at creation", async (url, why) => {
    const r = await t.admin.request(CREATE, { input: { url, tenantId: tenant } });
    expect(r.errors?.[0]?.extensions).toMatchObject({ code: "BAD_USER_INPUT", field: "input.url" });
    expect(r.errors![0]!.message).toMatch(why);
    expect(r.errors![0]!.message).toMatch(/WEBHOOK_ALLOW_PRIVATE_TARGETS/);
  });

  it("refuses again at delivery time (an endpoint whose target became private): nothing is sent", async () => {
    // As if DNS had changed since creation: the stored URL now points at loopback.
    const id = newId("webhook");
    const { WebhookSecretBox, generateWebhookSecret } = await import("../../src/domain/events/webhook-secrets.js");
    const sealed = new WebhookSecretBox(t.app.config.webhooks.secretKey).seal(generateWebhookSecret(), id);
    await sql(t.databaseUrl, `INSERT INTO webhook_endpoints (id, tenant_id, url, secret_sealed) VALUES ($1, $2, $3, $4)`, [id, tenant, receiver.url, sealed]);
    const e = await t.app.services.outbox.append({ type: "threshold.crossed", tenantId: tenant, scope: "tenant", period: null, payload: {} });
    const d = await waitUntil(async () => {
      const [x] = (await t.admin.ok(DELIVERIES, { id })).webhookDeliveries.nodes;
      return x?.attempts?.[0]?.outcome === "FAILED" ? x : null;
    });
    expect(d.eventId).toBe(e.id);
    expect(d.status).toBe("PENDING"); // retried on the schedule, in case the target becomes public again
    expect(d.attempts[0]).toMatchObject({ statusCode: null });
    expect(d.attempts[0].error).toMatch(/^refused: 127\.0\.0\.1 is loopback/);
    expect(receiver.received).toHaveLength(0);
  });
});
