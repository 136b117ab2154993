import { Writable } from "node:stream";
import pg from "pg";
import { pino } from "pino";
import type { Logger } from "../../src/lib/logger.js";
import { compose, type App } from "../../src/compose.js";
import { loadConfig } from "../../src/config/config.js";
import { newId } from "../../src/lib/ids.js";
import { tenants, tiers } from "../../src/storage/postgres/schema/index.js";
import type { Db } from "../../src/storage/postgres/db.js";
import { uniqueName } from "../support/env.js";
import { GraphQLClient } from "../support/client.js";

/**
 * Until the operator API for tiers and tenants exists, tests insert them directly. The tier is
 * permissive: these tests are about keys and credentials, not limits.
 */
export async function seedTenant(db: Db, name = "acme"): Promise<string> {
  const tierId = newId("tier");
  await db.insert(tiers).values({
    id: tierId,
    name: uniqueName("tier"),
    policy: { tenantLimits: {}, keyLimits: {}, subjectLimits: {}, routeModelLimits: [], degradationLadder: [], routeReservationTtlSeconds: [] },
    defaultMaxOutputTokens: 1_000,
    maxOutputTokens: 4_000,
  });
  const tenantId = newId("tenant");
  await db.insert(tenants).values({ id: tenantId, name, tierId });
  return tenantId;
}

/** Every row of every table outside the system schemas, as text: where a leaked secret would be. */
export async function dumpDatabase(databaseUrl: string): Promise<string> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    const { rows: tables } = await c.query<{ schema: string; name: string }>(
      `SELECT table_schema AS schema, table_name AS name FROM information_schema.tables
       WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')`,
    );
    let out = "";
    for (const t of tables) {
      const { rows } = await c.query<{ r: string }>(`SELECT t::text AS r FROM "${t.schema}"."${t.name}" t`);
      for (const r of rows) out += `${t.schema}.${t.name} ${r.r}\n`;
    }
    return out;
  } finally {
    await c.end();
  }
}

/** A pino logger at trace level whose every line is kept, to prove secrets never reach logs. */
export function capturingLogger() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  const logger: Logger = pino({ level: "trace" }, stream);
  return { logger, text: () => lines.join("") };
}

export interface Instance {
  app: App;
  url: string;
  client(token?: string): GraphQLClient;
  stop(): Promise<void>;
}

/**
 * Another replica in this process: its own composition (own caches, own connections) over a
 * given environment, so two instances can share one database and Redis key prefix.
 */
export async function startInstance(env: Record<string, string>, opts: { logger?: Logger } = {}): Promise<Instance> {
  const app = await compose(loadConfig(env), opts.logger ? { logger: opts.logger } : {});
  const port = await app.listen();
  const url = `http://127.0.0.1:${port}/graphql`;
  return { app, url, client: (token) => new GraphQLClient(url, token), stop: () => app.stop() };
}

/** Polls `probe` until it returns true; resolves with the elapsed milliseconds, or throws after `timeoutMs`. */
export async function waitUntil(probe: () => Promise<boolean>, timeoutMs: number, intervalMs = 50): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await probe()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
