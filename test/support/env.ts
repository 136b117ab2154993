import pg from "pg";
import { randomBytes } from "node:crypto";
import { loadConfig, type Config } from "../../src/config/config.js";

/** The machine's services; CI and developers have them on these addresses (see README). */
export const PG_ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/test";
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
export const BOOTSTRAP_TOKEN = "test-bootstrap-admin-token-0123456789";

export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`;
}

/** A fresh database per test file, dropped afterwards: files never see each other's rows. */
export async function createTestDatabase(): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = uniqueName("t").toLowerCase();
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(PG_ADMIN_URL);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    name,
    async drop() {
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** Environment for a test app or a spawned server process: own database, own Redis key prefix. */
export function testEnv(databaseUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: "test",
    HOST: "127.0.0.1",
    PORT: "0",
    LOG_LEVEL: "silent",
    DATABASE_URL: databaseUrl,
    REDIS_URL,
    REDIS_KEY_PREFIX: `${uniqueName("k")}:`,
    BOOTSTRAP_ADMIN_TOKEN: BOOTSTRAP_TOKEN,
    WORKERS_ENABLED: "false",
    // Production-mode test apps need a real key (config refuses the development default there).
    WEBHOOK_SECRET_KEY: "test-webhook-secret-key-0123456789abcdef",
    ...extra,
  };
}

export function testConfig(databaseUrl: string, extra: Record<string, string> = {}): Config {
  return loadConfig(testEnv(databaseUrl, extra));
}
