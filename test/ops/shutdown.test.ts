import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { startTestApp, type TestApp } from "../support/app.js";
import { spawnServer, type ServerProcess } from "../support/process.js";
import { COMMIT, createGateway, createKey, insertModel, insertTenant, insertTier, RESERVE } from "../support/enforcement.js";

/**
 * Graceful shutdown under load: a replica gets SIGTERM while gateways keep reserving and
 * committing over keep-alive connections (as a gateway's pool does). It must stop taking new
 * work, finish what it accepted, make every acknowledged commit durable, flush the reservation
 * archive, and exit 0.
 */
const LOOPS = 16;

interface Outcome {
  /** Commits answered 200 with data: the gateway was told "recorded". */
  ackedCommits: string[];
  ackedCommitsAfterSignal: number;
  /** Allowed reservations the gateway was told about. */
  ackedReservations: string[];
  /** Answers that were neither success nor a refused/reset connection. */
  badAnswers: string[];
  networkErrors: number;
}

describe("SIGTERM under reserve + commit load", () => {
  let t: TestApp;
  let server: ServerProcess;
  let token: string;
  const keys: string[] = [];

  beforeAll(async () => {
    t = await startTestApp();
    await insertModel(t, "m-small", 1_000n, 2_000n);
    const tierId = await insertTier(t, { defaultMaxOutputTokens: 10, tenantLimits: { dailyTokens: 100_000_000 } });
    for (let i = 0; i < 4; i++) {
      const tenantId = await insertTenant(t, tierId);
      for (let k = 0; k < 2; k++) keys.push((await createKey(t, tenantId)).secret);
    }
    token = (await createGateway(t)).token!;
    // A long linger keeps commits waiting inside the group commit, so some are surely in
    // flight when the signal lands: the drain has to finish them, not drop them.
    server = await spawnServer({ ...t.env, LEDGER_LINGER_MS: "50" });
  }, 120_000);

  afterAll(async () => {
    await server?.kill("SIGKILL");
    await t?.close();
  });

  async function post(query: string, variables: Record<string, unknown>): Promise<{ status: number; body: any }> {
    const res = await fetch(server.url, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
    });
    return { status: res.status, body: await res.json() };
  }

  async function load(out: Outcome, signalAt: { ms: number | null }): Promise<Outcome> {
    const loop = async (i: number) => {
      for (let n = 0; ; n++) {
        try {
          const r = await post(RESERVE, {
            input: { apiKey: keys[(i + n) % keys.length], route: "chat.completions", model: "m-small", inputTokens: 10, maxOutputTokens: 10 },
          });
          const d = r.body?.data?.checkAndReserve;
          if (r.status !== 200 || !d?.allowed) {
            out.badAnswers.push(`reserve ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
            return;
          }
          out.ackedReservations.push(d.reservation.id);
          const c = await post(COMMIT, { input: { reservationId: d.reservation.id, inputTokens: 10, outputTokens: 5 } });
          if (c.status === 200 && c.body?.data?.commit && !c.body.errors) {
            out.ackedCommits.push(c.body.data.commit.reservationId);
            if (signalAt.ms !== null) out.ackedCommitsAfterSignal++;
          } else {
            out.badAnswers.push(`commit ${c.status} ${JSON.stringify(c.body).slice(0, 200)}`);
            return;
          }
        } catch {
          // Refused or reset: the server stopped taking work. Nothing was acknowledged.
          out.networkErrors++;
          return;
        }
      }
    };
    await Promise.all(Array.from({ length: LOOPS }, (_, i) => loop(i)));
    return out;
  }

  it("finishes in-flight commits, loses none that were acknowledged, flushes the archive, and exits 0", async () => {
    const signalAt: { ms: number | null } = { ms: null };
    const exited = new Promise<number | null>((resolve) => server.child.once("exit", (code) => resolve(code)));
    const out: Outcome = { ackedCommits: [], ackedCommitsAfterSignal: 0, ackedReservations: [], badAnswers: [], networkErrors: 0 };
    const running = load(out, signalAt);
    // Signal once the load is well under way, counted in acknowledged commits rather than
    // wall time: a slow or busy machine (CI ran this at a third of its usual rate) must not
    // turn the test into a test of its speed.
    const deadline = Date.now() + 30_000;
    while (out.ackedCommits.length < 80 && out.badAnswers.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25));
    }
    signalAt.ms = Date.now();
    server.child.kill("SIGTERM");
    const [outcome, code] = await Promise.all([running, exited]);
    const drainMs = Date.now() - signalAt.ms;
    console.log(
      `shutdown: ${outcome.ackedCommits.length} commits acknowledged (${outcome.ackedCommitsAfterSignal} after SIGTERM), ` +
        `${outcome.networkErrors} loops ended by a closed connection, exit ${code} after ${drainMs} ms`,
    );

    expect(code).toBe(0);
    // Well inside the server's 20 s grace period: keep-alive sockets did not hold the drain open.
    expect(drainMs).toBeLessThan(10_000);
    expect(server.output()).toContain("draining");
    expect(outcome.badAnswers).toEqual([]);
    // Every loop ended because the server stopped, not because it hung or erred.
    expect(outcome.networkErrors).toBe(LOOPS);
    expect(outcome.ackedCommits.length).toBeGreaterThan(50);
    // Work accepted before the signal was finished after it, not cut off.
    expect(outcome.ackedCommitsAfterSignal).toBeGreaterThan(0);

    const committed = new Set(
      ((await t.app.services.db.execute(sql`select reservation_id from usage_ledger where entry = 'COMMIT'`)) as unknown as { rows: Array<{ reservation_id: string }> }).rows.map(
        (r) => r.reservation_id,
      ),
    );
    const lost = outcome.ackedCommits.filter((id) => !committed.has(id));
    expect(lost).toEqual([]);
    expect(committed.size).toBe(outcome.ackedCommits.length);

    // The write-behind archive was flushed: every reservation a gateway holds can still be
    // settled if Redis loses it.
    const archived = new Set(
      ((await t.app.services.db.execute(sql`select id from reservations`)) as unknown as { rows: Array<{ id: string }> }).rows.map((r) => r.id),
    );
    expect(outcome.ackedReservations.filter((id) => !archived.has(id))).toEqual([]);
  }, 90_000);
});
