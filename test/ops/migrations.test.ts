import { readFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { MIGRATIONS_DIR } from "../../src/storage/postgres/db.js";
import { createTestDatabase, testEnv, BOOTSTRAP_TOKEN } from "../support/env.js";
import { spawnServer, type ServerProcess } from "../support/process.js";
import { GraphQLClient } from "../support/client.js";

/**
 * Replicas of a deployment start together against one database. Each runs the migrator at
 * start; the advisory lock in db.ts must make that apply every migration exactly once, and
 * no replica may fail because another one got there first.
 */
describe("migrations under concurrent start", () => {
  const servers: ServerProcess[] = [];
  let drop: (() => Promise<void>) | undefined;

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.kill()));
    await drop?.();
  });

  it("three server processes started at once on a fresh database apply each migration exactly once", async () => {
    const journal = JSON.parse(readFileSync(path.join(MIGRATIONS_DIR, "meta/_journal.json"), "utf8")) as {
      entries: Array<{ tag: string; when: number }>;
    };
    expect(journal.entries.length).toBeGreaterThan(0);

    const db = await createTestDatabase();
    drop = db.drop;
    const env = testEnv(db.url);
    const started = await Promise.allSettled([spawnServer(env), spawnServer(env), spawnServer(env)]);
    for (const s of started) if (s.status === "fulfilled") servers.push(s.value);
    const failures = started.flatMap((s) => (s.status === "rejected" ? [String(s.reason)] : []));
    expect(failures, failures.join("\n\n")).toEqual([]);

    // Every process came up on the migrated schema and answers.
    for (const s of servers) {
      const me = await new GraphQLClient(s.url, BOOTSTRAP_TOKEN).ok(`{ viewer { role } }`);
      expect(me.viewer.role).toBe("ADMIN");
    }

    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      const { rows } = await c.query<{ hash: string; created_at: string }>(
        "SELECT hash, created_at::text AS created_at FROM drizzle.__drizzle_migrations ORDER BY id",
      );
      // One row per journal entry, in journal order (drizzle records each entry's `when`).
      expect(rows.map((r) => Number(r.created_at))).toEqual(journal.entries.map((e) => e.when));
      expect(new Set(rows.map((r) => r.hash)).size).toBe(rows.length);
    } finally {
      await c.end();
    }
  });
});
