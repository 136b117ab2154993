import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ConfigError, DEV_WEBHOOK_SECRET_KEY, loadConfig, type Config } from "../src/config/config.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

/** The variable each problem line names (the text before the first colon). */
const named = (e: ConfigError) => e.problems.map((p) => p.split(":")[0]);

describe("loadConfig", () => {
  it("reports every bad variable at once, each by name, per-variable and cross-field problems together", () => {
    const e = configError({
      PORT: "abc",
      LOG_LEVEL: "loud",
      DATABASE_URL: "not a url",
      MAX_QUERY_DEPTH: "1",
      GRAPHQL_INTROSPECTION: "maybe",
      BOOTSTRAP_ADMIN_TOKEN: "short",
      // Cross-field: OIDC half configured, and a symmetric algorithm for a JWKS.
      OIDC_ISSUER: "https://issuer.example",
      OIDC_ALGORITHMS: "RS256,HS256",
    });
    expect(new Set(named(e))).toEqual(
      new Set([
        "PORT",
        "LOG_LEVEL",
        "DATABASE_URL",
        "MAX_QUERY_DEPTH",
        "GRAPHQL_INTROSPECTION",
        "BOOTSTRAP_ADMIN_TOKEN",
        "OIDC_JWKS_URL",
        "OIDC_AUDIENCE",
        "OIDC_ALGORITHMS",
      ]),
    );
    // The message an operator reads lists them all, one per line.
    for (const name of named(e)) expect(e.message).toContain(`- ${name}:`);
    // A rejected secret is named, never echoed.
    expect(e.message).not.toContain("short");
  });

  it("runs the cross-field checks even when every single variable is fine", () => {
    const e = configError({ OIDC_JWKS_URL: "https://idp.example/jwks", OIDC_AUDIENCE: "llm", OIDC_ALGORITHMS: "none" });
    expect(named(e).sort()).toEqual(["OIDC_ALGORITHMS", "OIDC_ISSUER"]);
    expect(e.problems.find((p) => p.startsWith("OIDC_ISSUER"))).toMatch(/OIDC_JWKS_URL, OIDC_AUDIENCE are set/);
  });

  it("starts from an empty environment with documented defaults (embedded database and Redis)", () => {
    const expected: Config = {
      env: "development",
      http: { host: "127.0.0.1", port: 4000, maxBodyBytes: 1_000_000, workers: 1 },
      runtime: { maxHeapMb: 256 },
      log: { level: "info" },
      postgres: { url: null, poolSize: 10, dataDir: "./.data" },
      redis: { url: null, clusterNodes: [], keyPrefix: "", commandTimeoutMs: 100, dataDir: "./.data" },
      auth: { bootstrapAdminToken: null, apiKeyPrefix: "llm", oidc: null },
      graphql: { introspection: true, maxDepth: 12, maxComplexity: 2_000, jit: true },
      abuse: {
        bucketSeconds: 60,
        evaluateIntervalMs: 10_000,
        flushIntervalMs: 1_000,
        stateRefreshMs: 1_000,
        globalBreaker: { enabled: true, multiplier: 3, windowSeconds: 600, minSpendNano: 1_000_000_000_000n, cooldownSeconds: 600, halfOpenOneIn: 10, baselineSeconds: 604_800 },
        authThrottle: { windowSeconds: 60, maxFailuresPerSource: 20, maxFailuresPerPrefix: 10, blockSeconds: 300 },
      },
      ledger: { lingerMs: 2, maxBatch: 1_000 },
      cacheTtlMs: 60_000,
      workersEnabled: true,
      webhooks: { allowPrivateTargets: false, secretKey: DEV_WEBHOOK_SECRET_KEY, timeoutMs: 10_000 },
    };
    expect(loadConfig({})).toEqual(expected);
  });

  it("treats an empty variable as unset, so `FOO=` takes the default instead of failing", () => {
    const c = loadConfig({ DATABASE_URL: "", REDIS_URL: "", PORT: "", BOOTSTRAP_ADMIN_TOKEN: "" });
    expect(c.postgres.url).toBeNull();
    expect(c.redis.url).toBeNull();
    expect(c.http.port).toBe(4000);
    expect(c.auth.bootstrapAdminToken).toBeNull();
  });

  it("turns introspection off in production unless GRAPHQL_INTROSPECTION says otherwise", () => {
    const key = { WEBHOOK_SECRET_KEY: "k".repeat(32) };
    expect(loadConfig({ NODE_ENV: "production", ...key }).graphql.introspection).toBe(false);
    expect(loadConfig({ NODE_ENV: "production", GRAPHQL_INTROSPECTION: "true", ...key }).graphql.introspection).toBe(true);
    expect(loadConfig({ NODE_ENV: "development", GRAPHQL_INTROSPECTION: "no" }).graphql.introspection).toBe(false);
  });

  it("enables OIDC only with all three of JWKS URL, issuer and audience", () => {
    const c = loadConfig({
      OIDC_JWKS_URL: "https://idp.example/jwks",
      OIDC_ISSUER: "https://idp.example/",
      OIDC_AUDIENCE: "llm-usage",
      OIDC_ALGORITHMS: "ES256, EdDSA",
    });
    expect(c.auth.oidc).toMatchObject({ issuer: "https://idp.example/", audience: "llm-usage", algorithms: ["ES256", "EdDSA"] });
  });
});

describe("the service with a bad configuration", () => {
  it("exits with code 2 and lists every problem on stderr, before opening any connection", () => {
    // DATABASE_URL points nowhere: if the process got past loadConfig it would hang or fail
    // differently; exit code 2 with the list proves it stopped at validation.
    const r = spawnSync(process.execPath, ["--import", "tsx", path.join(ROOT, "src/main.ts")], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, PORT: "99999", LOG_LEVEL: "chatty", DATABASE_URL: "postgres://nowhere.invalid:1/x" },
      encoding: "utf8",
      timeout: 60_000,
      stdio: ["ignore", "pipe", "pipe"],
    });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain("invalid configuration");
    expect(r.stderr).toMatch(/- PORT: /);
    expect(r.stderr).toMatch(/- LOG_LEVEL: /);
  });
});

describe("configuration is read in one place", () => {
  /** Files that may read process.env: the config module and the process entry points. */
  const allowed = (rel: string) =>
    rel.startsWith("src/config/") || rel === "src/main.ts" || rel.endsWith(".cli.ts") || rel === "drizzle.config.ts";

  function sourceFiles(dir: string): string[] {
    return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((d) => {
      const rel = path.posix.join(dir, d.name);
      if (d.isDirectory()) return sourceFiles(rel);
      return /\.(ts|mts|cts|js|mjs)$/.test(d.name) ? [rel] : [];
    });
  }

  it("nothing outside src/config, src/main.ts, *.cli.ts entry files and drizzle.config.ts reads process.env", () => {
    const rootFiles = readdirSync(ROOT).filter((f) => /\.(ts|mts|js|mjs)$/.test(f));
    const readers = [...sourceFiles("src"), ...rootFiles].filter((rel) =>
      /process\s*\.\s*env|process\s*\[\s*["']env["']\s*\]/.test(readFileSync(path.join(ROOT, rel), "utf8")),
    );
    // The scan itself must see the one reader every build has, or it proves nothing.
    expect(readers).toContain("src/main.ts");
    expect(readers.filter((rel) => !allowed(rel)), "read settings through loadConfig(env) in src/config instead").toEqual([]);
  });
});
