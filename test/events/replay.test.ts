import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/app.js";
import { errorCode, type GraphQLClient } from "../support/client.js";
import type { NewQuotaEvent } from "../../src/domain/events/types.js";
import { createCredential, pageAll, seedTenants, sql, waitUntil, QUOTA_EVENTS_PAGE } from "./support.js";

/**
 * The outbox and its replay cursor, against real Postgres with the real relay running
 * (WORKERS_ENABLED=true): events appended in a producer's transaction exist exactly when it
 * commits, and `quotaEvents(after, first)` pages through them with no gap and no repeat, even
 * when transactions commit in another order than they drew their `seq`.
 */
describe("outbox append and quotaEvents replay", () => {
  let t: TestApp;
  let tenantA: string;
  let tenantB: string;
  let billing: GraphQLClient;

  const ev = (tenantId: string | null, n: number, extra: Partial<NewQuotaEvent> = {}): NewQuotaEvent => ({
    type: "threshold.crossed",
    tenantId,
    scope: "tenant",
    period: "2026-11",
    payload: { n, usedNano: 123_456_789_012_345n, at: new Date("2026-11-21T00:00:00Z") },
    ...extra,
  });

  /** Every published event (as an unbound BILLING credential sees them) until `n` are there. */
  async function waitForPublished(n: number, c: GraphQLClient = billing) {
    return waitUntil(async () => {
      const { nodes } = await pageAll(c, { first: 200 });
      return nodes.length >= n ? nodes : null;
    }, 20_000, `${n} published events`);
  }

  /** Waits until the relay has published everything appended so far; returns the end cursor. */
  async function settled(): Promise<string | null> {
    await waitUntil(async () => (await sql(t.databaseUrl, `SELECT count(*)::int AS n FROM outbox_events WHERE published_at IS NULL`))[0].n === 0, 20_000, "relay to catch up");
    return (await pageAll(billing, { first: 200 })).endCursor;
  }

  beforeAll(async () => {
    t = await startTestApp({ WORKERS_ENABLED: "true" });
    [tenantA, tenantB] = await seedTenants(t.admin, 2) as [string, string];
    billing = t.client((await createCredential(t.admin, "BILLING", null)).secret);
  });
  afterAll(async () => t?.close());

  it("appends in the caller's transaction: a rollback leaves no event, a commit publishes it once", async () => {
    const { outbox, db } = t.app.services;
    await expect(
      db.transaction(async (tx) => {
        await outbox.append(tx, ev(tenantA, 0, { payload: { marker: "rolled back" } }));
        throw new Error("cause failed");
      }),
    ).rejects.toThrow("cause failed");
    const committed = await db.transaction((tx) => outbox.append(tx, ev(tenantA, 1)));
    const standalone = await outbox.append(ev(null, 2, { type: "breaker.opened", scope: "global", period: null }));

    const nodes = await waitForPublished(2);
    expect(nodes.map((n) => n.id)).toEqual([committed.id, standalone.id]);
    expect(nodes[0]).toMatchObject({
      id: committed.id,
      type: "threshold.crossed",
      tenantId: tenantA,
      scope: "tenant",
      period: "2026-11",
      // bigint and Date figures arrive as strings, exactly.
      payload: { n: 1, usedNano: "123456789012345", at: "2026-11-21T00:00:00.000Z" },
    });
    expect(nodes[1]).toMatchObject({ type: "breaker.opened", tenantId: null });
    const rows = await sql(t.databaseUrl, `SELECT count(*)::int AS n FROM outbox_events WHERE payload->>'marker' = 'rolled back'`);
    expect(rows[0].n).toBe(0);
  });

  it("appending an id that exists returns the stored event and adds nothing (idempotent producers)", async () => {
    const { outbox } = t.app.services;
    const first = await outbox.append(ev(tenantA, 10, { id: "evt_idempotent0000000001" }));
    const again = await outbox.append(ev(tenantA, 11, { id: "evt_idempotent0000000001" }));
    expect(again).toEqual(first);
    expect((await sql(t.databaseUrl, `SELECT count(*)::int AS n FROM outbox_events WHERE id = 'evt_idempotent0000000001'`))[0].n).toBe(1);
    await expect(outbox.append({ ...ev(tenantA, 12), type: "made.up" as never })).rejects.toThrow(/unknown event type/);
    await expect(outbox.append(ev(tenantA, 13, { payload: { bad: Number.NaN } }))).rejects.toThrow(/finite/);
  });

  it("never steps over an event whose transaction commits after a later-numbered one was paged", async () => {
    const { outbox, db } = t.app.services;
    const start = await settled();

    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let slowSeq = 0n;
    const slow = db.transaction(async (tx) => {
      const e = await outbox.append(tx, ev(tenantA, 100, { payload: { which: "slow" } }));
      slowSeq = e.seq;
      await gate; // still uncommitted while the fast one commits and is paged
      return e;
    });
    await waitUntil(() => slowSeq > 0n, 5_000, "slow append");
    let page1: Awaited<ReturnType<typeof pageAll>>;
    let fast;
    try {
      fast = await outbox.append(ev(tenantA, 101, { payload: { which: "fast" } }));
      expect(fast.seq).toBeGreaterThan(slowSeq); // the hazard: a higher seq visible first
      page1 = await waitUntil(async () => {
        const p = await pageAll(billing, { after: start });
        return p.nodes.length > 0 ? p : null;
      });
    } finally {
      release();
    }
    expect(page1.nodes.map((n) => n.id)).toEqual([fast.id]);

    const slowEvent = await slow;
    const page2 = await waitUntil(async () => {
      const p = await pageAll(billing, { after: page1.endCursor });
      return p.nodes.length > 0 ? p : null;
    });
    // Paging by seq would have resumed after fast.seq and lost this one for good.
    expect(page2.nodes.map((n) => n.id)).toEqual([slowEvent.id]);
  });

  it("pages through every event exactly once while many transactions append concurrently", async () => {
    const { outbox, db } = t.app.services;
    const start = await settled();
    const writers = 8;
    const perWriter = 25;
    const expected = new Set<string>();
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

    let writing = true;
    const write = async (w: number) => {
      for (let i = 0; i < perWriter; i++) {
        const e = await db.transaction(async (tx) => {
          await sleep(Math.random() * 8);
          const appended = await outbox.append(tx, ev(w % 2 ? tenantA : tenantB, i, { payload: { writer: w, i } }));
          await sleep(Math.random() * 8); // commit later than others that drew higher seqs
          return appended;
        });
        expected.add(e.id);
      }
    };
    // A reader paging all the while, resuming from its cursor each time, like a billing system.
    const seen: string[] = [];
    const cursors: bigint[] = [];
    const read = async () => {
      let after = start;
      for (;;) {
        const done = !writing;
        const r = await billing.ok(QUOTA_EVENTS_PAGE, { after, first: 7 });
        for (const n of r.quotaEvents.nodes) {
          seen.push(n.id);
          cursors.push(BigInt(Buffer.from(n.cursor, "base64url").toString()));
        }
        if (r.quotaEvents.pageInfo.endCursor) after = r.quotaEvents.pageInfo.endCursor;
        if (done && seen.length >= writers * perWriter && !r.quotaEvents.pageInfo.hasNextPage) return;
        if (!r.quotaEvents.pageInfo.hasNextPage) await sleep(20);
      }
    };
    const reader = read();
    await Promise.all(Array.from({ length: writers }, (_, w) => write(w)));
    writing = false;
    await Promise.race([reader, sleep(30_000).then(() => Promise.reject(new Error(`reader saw ${seen.length} of ${expected.size}`)))]);

    expect(seen.length).toBe(writers * perWriter);
    expect(new Set(seen).size).toBe(seen.length); // no duplicates
    expect(new Set(seen)).toEqual(expected); // no gaps
    for (let i = 1; i < cursors.length; i++) expect(cursors[i]! > cursors[i - 1]!).toBe(true);
    // The run did commit out of seq order (otherwise it proved nothing about the cursor).
    const inversions = await sql(
      t.databaseUrl,
      `SELECT count(*)::int AS n FROM (SELECT seq, lag(seq) OVER (ORDER BY delivery_seq) AS prev FROM outbox_events WHERE delivery_seq IS NOT NULL) x WHERE seq < prev`,
    );
    expect(inversions[0].n).toBeGreaterThan(0);
    // Published rows are numbered 1..n without holes.
    const [gaps] = await sql(t.databaseUrl, `SELECT count(*)::int AS n, max(delivery_seq)::int AS max FROM outbox_events WHERE delivery_seq IS NOT NULL`);
    expect(gaps.n).toBe(gaps.max);
  });

  it("scopes quotaEvents to the caller's tenant for TENANT_ADMIN and tenant-bound BILLING", async () => {
    const { outbox } = t.app.services;
    const a = await outbox.append(ev(tenantA, 200, { type: "budget.exhausted" }));
    const b = await outbox.append(ev(tenantB, 201, { type: "budget.exhausted" }));
    await waitUntil(async () => {
      const { nodes } = await pageAll(billing);
      return nodes.some((n) => n.id === b.id) && nodes.some((n) => n.id === a.id);
    });

    const tenantAdminA = t.client((await createCredential(t.admin, "TENANT_ADMIN", tenantA)).secret);
    const billingB = t.client((await createCredential(t.admin, "BILLING", tenantB)).secret);
    for (const [c, own, other] of [
      [tenantAdminA, tenantA, tenantB],
      [billingB, tenantB, tenantA],
    ] as const) {
      const implicit = (await pageAll(c)).nodes;
      expect(implicit.length).toBeGreaterThan(0);
      expect(new Set(implicit.map((n) => n.tenantId))).toEqual(new Set([own]));
      expect((await pageAll(c, { tenantId: own })).nodes).toEqual(implicit);
      const refused = await c.request(QUOTA_EVENTS_PAGE, { tenantId: other });
      expect(errorCode(refused)).toBe("NOT_FOUND");
      expect(refused.data).toBeNull();
    }

    const all = (await pageAll(t.admin)).nodes;
    expect(new Set(all.map((n) => n.tenantId))).toEqual(new Set([tenantA, tenantB, null]));
    const onlyB = (await pageAll(t.admin, { tenantId: tenantB })).nodes;
    expect(onlyB.every((n) => n.tenantId === tenantB)).toBe(true);
    expect(onlyB.map((n) => n.id)).toEqual(all.filter((n) => n.tenantId === tenantB).map((n) => n.id));

    expect(errorCode(await billing.request(QUOTA_EVENTS_PAGE, { after: "not a cursor!" }))).toBe("BAD_USER_INPUT");
    expect(errorCode(await billing.request(QUOTA_EVENTS_PAGE, { after: Buffer.from("x1").toString("base64url") }))).toBe("BAD_USER_INPUT");
    expect(errorCode(await billing.request(QUOTA_EVENTS_PAGE, { first: 201 }))).toBe("BAD_USER_INPUT");
  });

  it("revokeApiKey emits key.revoked with the revocation, once", async () => {
    const key = await t.admin.ok(`mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { apiKey { id prefix } } }`, {
      input: { tenantId: tenantB, name: "to revoke" },
    });
    const id = key.createApiKey.apiKey.id;
    await t.admin.ok(`mutation($id: ID!) { revokeApiKey(id: $id) { id } }`, { id });
    await t.admin.ok(`mutation($id: ID!) { revokeApiKey(id: $id) { id } }`, { id }); // already revoked: no second event
    const revoked = await waitUntil(async () => {
      const found = (await pageAll(billing)).nodes.filter((n) => n.type === "key.revoked");
      return found.length > 0 ? found : null;
    });
    expect(revoked).toHaveLength(1);
    expect(revoked[0]).toMatchObject({
      tenantId: tenantB,
      scope: `key:${id}`,
      payload: { keyId: id, keyPrefix: key.createApiKey.apiKey.prefix, keyName: "to revoke", revokedBy: { kind: "bootstrap", id: "bootstrap" } },
    });
    const [row] = await sql(t.databaseUrl, `SELECT revoked_at FROM api_keys WHERE id = $1`, [id]);
    expect(new Date(revoked[0].payload.revokedAt).getTime()).toBe(new Date(row.revoked_at).getTime());
  });
});
