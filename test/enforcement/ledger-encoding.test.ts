import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inArray } from "drizzle-orm";
import { createTestDatabase } from "../support/env.js";
import { openDatabase, type Database } from "../../src/storage/postgres/db.js";
import { PostgresLedgerWriter } from "../../src/storage/postgres/ledger.writer.js";
import { PostgresReservationArchive } from "../../src/storage/postgres/reservation-archive.js";
import { arrayLiteral } from "../../src/storage/postgres/bulk-insert.js";
import { reservations, usageLedger } from "../../src/storage/postgres/schema/index.js";
import { createLogger } from "../../src/lib/logger.js";
import type { LedgerEntry } from "../../src/domain/enforcement/types.js";

/**
 * The ledger's and the reservation archive's batches reach Postgres as one array literal per
 * column, built by bulk-insert.ts. A gateway's `subject` and `route` are free text, and the
 * archive's settle keys are JSON: whatever they hold must come back byte for byte, on the
 * server and on the embedded database alike.
 */
const AWKWARD = [
  'said "hi"',
  "back\\slash",
  '\\"both\\"',
  "a,b",
  "{braces}",
  "  spaces around  ",
  "NULL",
  "null",
  "",
  "ünïcødé 🚀 中文",
  "line\nbreak\ttab",
  "'single'",
  "\\",
  '"',
];

const logger = createLogger({ level: "silent" });
let seq = 0;

function entry(subject: string | null, route: string): LedgerEntry {
  return {
    reservationId: `res_enc${Date.now().toString(36)}${(seq++).toString(36).padStart(4, "0")}`,
    entry: "COMMIT",
    tenantId: "ten_encoding",
    keyId: "key_encoding",
    subject,
    route,
    model: "m-encoding",
    status: "SUCCEEDED",
    inputTokens: 9_007_199_254_740_993n,
    outputTokens: 0n,
    reservedInputTokens: 12n,
    reservedOutputTokens: 34n,
    costNano: -5n,
    overage: true,
    periodDay: "2026-12-03",
    periodMonth: "2026-12",
    reservedAt: new Date("2026-12-03T21:15:25.123Z"),
  };
}

function roundTrips(name: string, open: () => Promise<{ database: Database; cleanup(): Promise<void> }>) {
  describe(name, () => {
    let database: Database;
    let cleanup: () => Promise<void>;
    beforeAll(async () => {
      ({ database, cleanup } = await open());
      await database.migrate();
    }, 120_000);
    afterAll(async () => {
      await database?.close();
      await cleanup?.();
    });

    it("ledger rows written in one batch come back exactly, awkward text and nulls included", async () => {
      const writer = new PostgresLedgerWriter(database.db, { lingerMs: 5, maxBatch: 1_000, logger });
      const entries = [...AWKWARD.map((s, i) => entry(s, AWKWARD[AWKWARD.length - 1 - i]!)), entry(null, "chat.completions")];
      await Promise.all(entries.map((e) => writer.append(e)));
      expect(writer.stats.batches).toBe(1);
      const rows = await database.db.select().from(usageLedger).where(inArray(usageLedger.reservationId, entries.map((e) => e.reservationId)));
      expect(rows).toHaveLength(entries.length);
      const byId = new Map(rows.map((r) => [r.reservationId, r]));
      for (const e of entries) {
        const r = byId.get(e.reservationId)!;
        expect({ subject: r.subject, route: r.route }).toEqual({ subject: e.subject, route: e.route });
        expect([r.inputTokens, r.outputTokens, r.reservedInputTokens, r.reservedOutputTokens, r.costNano, r.overage]).toEqual([
          e.inputTokens,
          e.outputTokens,
          e.reservedInputTokens,
          e.reservedOutputTokens,
          e.costNano,
          e.overage,
        ]);
        expect(r.reservedAt.toISOString()).toBe(e.reservedAt.toISOString());
      }
    });

    it("archived reservations keep their subject and their JSON settle keys exactly", async () => {
      const archive = new PostgresReservationArchive(database.db, { lingerMs: 5, maxBatch: 1_000, logger });
      const ids = AWKWARD.map((_, i) => `res_arch${Date.now().toString(36)}${i}`);
      AWKWARD.forEach((s, i) =>
        archive.record({
          id: ids[i]!,
          tenantId: "ten_encoding",
          keyId: "key_encoding",
          subject: i === 0 ? null : s,
          route: s,
          model: "m-encoding",
          inputNanoPerToken: 150n,
          outputNanoPerToken: 600n,
          day: "2026-12-03",
          month: "2026-12",
          state: "R",
          inputTokens: 10,
          outputTokens: 20,
          costNano: 13_500n,
          reservedAt: new Date("2026-12-03T21:15:25.123Z"),
          expiresAt: new Date("2026-12-03T21:25:25.999Z"),
          settleKeys: JSON.stringify({ keys: [s, `{t:ten_encoding}:q:d:2026-12-03`], n: i }),
          quotaLimits: [],
          failOpen: i % 2 === 0,
        }),
      );
      await archive.flush();
      const rows = await database.db.select().from(reservations).where(inArray(reservations.id, ids));
      expect(rows).toHaveLength(ids.length);
      const byId = new Map(rows.map((r) => [r.id, r]));
      AWKWARD.forEach((s, i) => {
        const r = byId.get(ids[i]!)!;
        expect({ subject: r.subject, route: r.route, failOpen: r.failOpen }).toEqual({ subject: i === 0 ? null : s, route: s, failOpen: i % 2 === 0 });
        expect(JSON.parse(r.settle)).toEqual({ keys: [s, `{t:ten_encoding}:q:d:2026-12-03`], n: i });
        expect(r.expiresAt.toISOString()).toBe("2026-12-03T21:25:25.999Z");
      });
    });
  });
}

roundTrips("bulk inserts on PostgreSQL", async () => {
  const tdb = await createTestDatabase();
  const database = await openDatabase({ url: tdb.url, poolSize: 2, dataDir: os.tmpdir() });
  return { database, cleanup: () => tdb.drop() };
});

roundTrips("bulk inserts on the embedded database (PGlite)", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "llm-encoding-"));
  const database = await openDatabase({ url: null, poolSize: 1, dataDir: dir });
  return { database, cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
});

describe("arrayLiteral", () => {
  it("quotes every text element, escapes only quotes and backslashes, and writes NULL, numbers and booleans bare", () => {
    const rows = ['a"b', "c\\d", "plain", null, 12n, true, false, new Date("2026-01-02T03:04:05.006Z")];
    expect(arrayLiteral(rows, (v) => v)).toBe('{"a\\"b","c\\\\d","plain",NULL,12,t,f,"2026-01-02T03:04:05.006Z"}');
    expect(arrayLiteral([], (v: string) => v)).toBe("{}");
  });
});
