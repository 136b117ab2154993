import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Webhook } from "standardwebhooks";
import { startTestApp, type TestApp } from "../support/app.js";
import { spawnServer, type ServerProcess } from "../support/process.js";
import { seedTenants, sql, startReceiver, waitUntil, type Receiver } from "./support.js";

/**
 * At-least-once across a crash: a worker process is killed with SIGKILL after the receiver
 * answered 2xx but before the worker recorded it. The delivery must be sent again, with the
 * same webhook-id, by the next worker; in the end the receiver has every outbox event.
 *
 * To make "answered but not recorded" certain rather than a race, the receiver freezes the
 * worker (SIGSTOP) before it answers 200, then kills it (SIGKILL) once the answer is written:
 * a frozen process cannot have recorded anything after the answer.
 */
describe("webhook delivery survives a worker killed between the receiver's 2xx and the record", () => {
  let t: TestApp;
  let receiver: Receiver;
  let tenant: string;
  const workers: ServerProcess[] = [];

  beforeAll(async () => {
    // The API in this process runs no workers; the worker processes share its database and Redis prefix.
    t = await startTestApp({ WEBHOOK_ALLOW_PRIVATE_TARGETS: "true" });
    [tenant] = (await seedTenants(t.admin, 1)) as [string];
    receiver = await startReceiver();
  });
  afterAll(async () => {
    for (const w of workers) await w.kill("SIGKILL");
    await t?.close();
    await receiver?.close();
  });

  it("re-sends the same webhook-id after the crash, and the receiver ends with exactly the outbox's ids", async () => {
    const workerEnv = {
      ...t.env,
      WORKERS_ENABLED: "true",
      WEBHOOK_ALLOW_PRIVATE_TARGETS: "true",
      // The claim lasts WEBHOOK_TIMEOUT_MS + 5 s: how long the crashed attempt keeps its delivery.
      WEBHOOK_TIMEOUT_MS: "1000",
    };
    const created = await t.admin.ok(`mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { secret endpoint { id } } }`, {
      input: { url: receiver.url, tenantId: tenant },
    });
    const { secret, endpoint } = created.createWebhookEndpoint;
    const first = await spawnServer(workerEnv);
    workers.push(first);
    let victim: string | null = null;
    receiver.respond = async (hook, res) => {
      if (victim === null) {
        victim = hook.headers["webhook-id"]!;
        first.child.kill("SIGSTOP");
        res.writeHead(200);
        res.end("ok", () => void first.kill("SIGKILL"));
        return;
      }
      res.writeHead(200);
      res.end("ok");
    };
    // Appended once the receiver is armed (the worker relays as soon as it starts).
    const appended: string[] = [];
    for (let i = 0; i < 5; i++) {
      appended.push((await t.app.services.outbox.append({ type: "threshold.crossed", tenantId: tenant, scope: "tenant", period: "2026-11", payload: { i } })).id);
    }
    await waitUntil(() => first.child.exitCode !== null || first.child.signalCode !== null, 30_000, "the first worker to be killed");
    expect(first.child.signalCode).toBe("SIGKILL");
    expect(victim).not.toBeNull();
    const [row] = await sql(t.databaseUrl, `SELECT status, attempt_count FROM webhook_deliveries WHERE event_id = $1`, [victim]);
    expect(row).toEqual({ status: "PENDING", attempt_count: 1 }); // the 200 was never recorded

    const second = await spawnServer(workerEnv);
    workers.push(second);
    await receiver.waitFor((all) => all.filter((h) => h.headers["webhook-id"] === victim).length >= 2, 40_000);
    const outboxIds = (await sql<{ id: string }>(t.databaseUrl, `SELECT id FROM outbox_events`)).map((r) => r.id).sort();
    expect(outboxIds).toEqual([...appended].sort());
    await receiver.waitFor((all) => new Set(all.map((h) => h.headers["webhook-id"])).size === outboxIds.length, 40_000);

    // Every message verifies, and the redelivery is the same message: same id, same body.
    const forVictim = receiver.received.filter((h) => h.headers["webhook-id"] === victim);
    expect(forVictim[1]!.body).toBe(forVictim[0]!.body);
    for (const h of receiver.received) expect(new Webhook(secret).verify(h.body, h.headers)).toBeTruthy();
    expect([...new Set(receiver.received.map((h) => h.headers["webhook-id"]))].sort()).toEqual(outboxIds);

    // The log shows the interrupted attempt and the one that succeeded.
    const d = await waitUntil(async () => {
      const r = await t.admin.ok(
        `query($id: ID!) { webhookDeliveries(endpointId: $id, first: 50) { nodes { eventId status attemptCount attempts { attempt outcome statusCode } } } }`,
        { id: endpoint.id },
      );
      const x = r.webhookDeliveries.nodes.find((n: any) => n.eventId === victim);
      return x?.status === "DELIVERED" ? x : null;
    }, 20_000);
    expect(d.attempts).toEqual([
      { attempt: 1, outcome: "INTERRUPTED", statusCode: null },
      { attempt: 2, outcome: "SUCCEEDED", statusCode: 200 },
    ]);
  });
});
