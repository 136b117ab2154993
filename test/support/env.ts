import pg from "pg";
import { Redis, Cluster } from "ioredis";
import { randomBytes } from "node:crypto";
import { loadConfig, type Config } from "../../src/config/config.js";

/** The machine's services; CI and developers have them on these addresses (see README). */
export const PG_ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/test";
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
export const BOOTSTRAP_TOKEN = "test-bootstrap-admin-token-0123456789";
/**
 * `TEST_REDIS_CLUSTER_NODES=host:port,…` (set by `npm run test:cluster`) runs the test apps and
 * spawned servers against a Redis Cluster. A test that passes its own REDIS_URL (a private
 * redis-server it stops, pauses or flushes) keeps that single server.
 */
export const REDIS_CLUSTER_NODES = process.env.TEST_REDIS_CLUSTER_NODES ?? "";
export const CLUSTER_MODE = REDIS_CLUSTER_NODES.trim() !== "";

/** A plain client for the Redis the test apps use (the cluster in cluster mode), to inspect keys. */
export function rawRedis(): Redis | Cluster {
  if (!CLUSTER_MODE) return new Redis(REDIS_URL);
  return new Cluster(REDIS_CLUSTER_NODES.split(",").map((n) => ({ host: n.split(":")[0]!, port: Number(n.split(":")[1]) })));
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`;
}

/** When `uniqueName(prefix)` made `name` (ms since the epoch), or null if it did not make it. */
export function uniqueNameTime(prefix: string, name: string): number | null {
  const stamp = new RegExp(`^${prefix}_([0-9a-z]+)_[0-9a-f]{8}$`).exec(name)?.[1];
  return stamp === undefined ? null : parseInt(stamp, 36);
}

/** The name every test app's and spawned server's Redis key prefix starts with (testEnv). */
export const KEY_PREFIX_NAME = "k";

/**
 * A fresh database per test file (or benchmark run), dropped afterwards: files never see each
 * other's rows.
 */
export async function createTestDatabase(
  opts: { prefix?: string; adminUrl?: string } = {},
): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const adminUrl = opts.adminUrl ?? PG_ADMIN_URL;
  const name = uniqueName(opts.prefix ?? "t").toLowerCase();
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    name,
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
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
    ...(CLUSTER_MODE && extra.REDIS_URL === undefined ? { REDIS_CLUSTER_NODES } : {}),
    REDIS_KEY_PREFIX: `${uniqueName(KEY_PREFIX_NAME)}:`,
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
