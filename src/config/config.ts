import { z } from "zod";
import type { BreakerSettings } from "../domain/tenancy/types.js";

/**
 * The service's settings: one typed object, read once at start by `loadConfig(env)` (the only
 * reader of process.env), validated whole so every problem is reported together by variable name.
 */
const flag = z.enum(["true", "false", "1", "0", "yes", "no"]);
const isTrue = (v: z.infer<typeof flag>) => v === "true" || v === "1" || v === "yes";
const bool = (def: boolean) =>
  flag.optional().transform((v) => (v === undefined ? def : isTrue(v)));
const int = (def: number, min: number, max: number) => z.coerce.number().int().min(min).max(max).default(def);
const list = (def: string[]) =>
  z
    .string()
    .optional()
    .transform((v) => (v === undefined || v.trim() === "" ? def : v.split(",").map((s) => s.trim()).filter(Boolean)));

/**
 * DEVELOPMENT ONLY. Encrypts webhook secrets when WEBHOOK_SECRET_KEY is unset, so `npm start`
 * works out of the box. It is public (it is in this file), so it protects nothing; config refuses
 * it with NODE_ENV=production.
 */
export const DEV_WEBHOOK_SECRET_KEY = "dev-only-webhook-secret-key--public--never-use-in-production";

const EnvSchema = z.object({
  NODE_ENV: z.enum(["development", "production", "test"]).default("development"),
  HOST: z.string().default("127.0.0.1"),
  PORT: int(4000, 0, 65535),
  /**
   * HTTP worker processes (node:cluster) sharing the port; 1 = this process serves alone. Above 1
   * needs DATABASE_URL and REDIS_URL (or REDIS_CLUSTER_NODES): the embedded stores are one process's.
   */
  WEB_CONCURRENCY: int(1, 1, 64),
  MAX_HEAP_MB: int(256, 64, 65_536),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),

  /** Absent: an embedded PGlite database under DATA_DIR. */
  DATABASE_URL: z.string().url().optional(),
  DATABASE_POOL_SIZE: int(10, 1, 200),
  /** Absent: a local redis-server from PATH is started with its files under DATA_DIR. */
  REDIS_URL: z.string().url().optional(),
  /** Comma-separated host:port seeds; when set, Redis Cluster is used instead of REDIS_URL. */
  REDIS_CLUSTER_NODES: list([]),
  /** Prepended to every Redis key (tests use it for isolation); hash tags stay inside. */
  REDIS_KEY_PREFIX: z.string().max(64).default(""),
  /** The hot path's Redis command timeout: an outage fails a reserve within about this long. */
  REDIS_COMMAND_TIMEOUT_MS: int(100, 10, 10_000),
  DATA_DIR: z.string().default("./.data"),

  /** Accepted as an ADMIN credential so a first operator can create real credentials. */
  BOOTSTRAP_ADMIN_TOKEN: z.string().min(16).optional(),
  /** Public prefix of tenant API keys: `<prefix>_<keyId>_<secret>`. */
  API_KEY_PREFIX: z.string().regex(/^[a-z]{2,8}$/).default("llm"),

  OIDC_JWKS_URL: z.string().url().optional(),
  OIDC_ISSUER: z.string().optional(),
  OIDC_AUDIENCE: z.string().optional(),
  OIDC_ALGORITHMS: list(["RS256", "ES256"]),
  OIDC_ROLE_CLAIM: z.string().default("role"),
  OIDC_TENANT_CLAIM: z.string().default("tenant_id"),
  OIDC_CLOCK_TOLERANCE_SECONDS: int(30, 0, 600),
  OIDC_JWKS_COOLDOWN_MS: int(30_000, 0, 3_600_000),
  OIDC_JWKS_TIMEOUT_MS: int(3_000, 100, 30_000),

  /** Unset: on, except with NODE_ENV=production (where the schema is not advertised). */
  GRAPHQL_INTROSPECTION: flag.optional(),
  MAX_BODY_BYTES: int(1_000_000, 1_000, 50_000_000),
  MAX_QUERY_DEPTH: int(12, 2, 100),
  MAX_QUERY_COMPLEXITY: int(2_000, 10, 1_000_000),
  /** Compiled execution (graphql-jit) for checkAndReserve, commit and release; off = graphql-js. */
  GRAPHQL_JIT: bool(true),

  /** Abuse controls: one spend/statistics bucket; breaker and anomaly windows are whole buckets. */
  ABUSE_BUCKET_SECONDS: int(60, 1, 3_600),
  /** How often the abuse job evaluates breakers and anomalies (on the workers). */
  ABUSE_EVALUATE_INTERVAL_MS: int(10_000, 100, 600_000),
  /** How often each replica flushes buffered usage (Redis) and denial aggregates (Postgres). */
  ABUSE_FLUSH_INTERVAL_MS: int(1_000, 50, 60_000),
  /** How often each replica re-reads breaker and degradation state (pub/sub makes changes immediate). */
  ABUSE_STATE_REFRESH_MS: int(1_000, 50, 60_000),
  /** The global spend breaker: all tenants' spend against its own baseline, like a tier's breaker. */
  GLOBAL_BREAKER_ENABLED: bool(true),
  GLOBAL_BREAKER_MULTIPLIER: z.coerce.number().min(1).max(10_000).default(3),
  GLOBAL_BREAKER_WINDOW_SECONDS: int(600, 1, 86_400),
  GLOBAL_BREAKER_MIN_SPEND_USD: z.string().regex(/^\d{1,12}(\.\d{1,9})?$/, "must be a USD amount such as 1000 or 12.5").default("1000"),
  GLOBAL_BREAKER_COOLDOWN_SECONDS: int(600, 1, 86_400),
  GLOBAL_BREAKER_HALF_OPEN_ONE_IN: int(10, 1, 1_000_000),
  GLOBAL_BREAKER_BASELINE_SECONDS: int(604_800, 1, 31_536_000),
  /** Failed-auth throttling: this many failures in the window block a client address / key prefix. */
  AUTH_THROTTLE_WINDOW_SECONDS: int(60, 1, 86_400),
  AUTH_THROTTLE_MAX_FAILURES_PER_SOURCE: int(20, 1, 1_000_000),
  AUTH_THROTTLE_MAX_FAILURES_PER_PREFIX: int(10, 1, 1_000_000),
  AUTH_THROTTLE_BLOCK_SECONDS: int(300, 1, 86_400),

  /** Group commit: how long the ledger writer waits for company, and the largest batch. */
  LEDGER_LINGER_MS: int(2, 0, 100),
  LEDGER_MAX_BATCH: int(1_000, 1, 10_000),
  /** Revocations and operator changes reach every replica through pub/sub; this is the safety net. */
  CACHE_TTL_MS: int(60_000, 100, 3_600_000),
  /** Run the BullMQ workers and schedulers in this process. */
  WORKERS_ENABLED: bool(true),
  /** Webhook targets on loopback/private/link-local addresses are refused unless allowed. */
  WEBHOOK_ALLOW_PRIVATE_TARGETS: bool(false),
  /**
   * Key material for encrypting webhook signing secrets at rest (AES-256-GCM under an HKDF-derived
   * key). The signer needs the plain secret, so it cannot be hashed; this key keeps a database
   * dump from yielding it. Unset: a development key, refused with NODE_ENV=production.
   */
  WEBHOOK_SECRET_KEY: z.string().min(32, "must be at least 32 characters").optional(),
  /** One webhook attempt's time limit (connect to last byte); a worker's claim lasts 5 s longer. */
  WEBHOOK_TIMEOUT_MS: int(10_000, 500, 120_000),
})
  // Cross-field rules run in the same pass as the per-variable ones (`when` keeps them running
  // even after a variable failed to parse), so an operator sees every problem in one go
  // instead of fixing them one restart at a time.
  .superRefine(
    (e, ctx) => {
      const oidc = ["OIDC_JWKS_URL", "OIDC_ISSUER", "OIDC_AUDIENCE"] as const;
      const set = oidc.filter((k) => e[k] !== undefined);
      if (set.length > 0 && set.length < oidc.length) {
        for (const k of oidc.filter((k) => e[k] === undefined)) {
          ctx.addIssue({
            code: "custom",
            path: [k],
            message: `required because ${set.join(", ")} ${set.length === 1 ? "is" : "are"} set (OIDC needs OIDC_JWKS_URL, OIDC_ISSUER and OIDC_AUDIENCE together, or none)`,
          });
        }
      }
      if (e.NODE_ENV === "production" && (e.WEBHOOK_SECRET_KEY === undefined || e.WEBHOOK_SECRET_KEY === DEV_WEBHOOK_SECRET_KEY)) {
        ctx.addIssue({
          code: "custom",
          path: ["WEBHOOK_SECRET_KEY"],
          message: "required with NODE_ENV=production (at least 32 random characters, e.g. `openssl rand -base64 48`): the development default would let anyone decrypt stored webhook secrets",
        });
      }
      if (typeof e.WEB_CONCURRENCY === "number" && e.WEB_CONCURRENCY > 1) {
        const noRedis = e.REDIS_URL === undefined && (!Array.isArray(e.REDIS_CLUSTER_NODES) || e.REDIS_CLUSTER_NODES.length === 0);
        if (e.DATABASE_URL === undefined || noRedis) {
          ctx.addIssue({
            code: "custom",
            path: ["WEB_CONCURRENCY"],
            message: "above 1 needs DATABASE_URL and REDIS_URL (or REDIS_CLUSTER_NODES): the embedded database and redis-server belong to one process",
          });
        }
      }
      const algorithms = Array.isArray(e.OIDC_ALGORITHMS) ? e.OIDC_ALGORITHMS : [];
      const symmetric = algorithms.filter((a) => a.toLowerCase() === "none" || a.toUpperCase().startsWith("HS"));
      if (symmetric.length > 0) {
        ctx.addIssue({
          code: "custom",
          path: ["OIDC_ALGORITHMS"],
          message: `${symmetric.join(", ")} not allowed: only asymmetric algorithms (RS*, PS*, ES*, EdDSA) may verify JWTs from a JWKS`,
        });
      }
    },
    { when: () => true },
  );

export type Env = z.input<typeof EnvSchema>;

/** "12.5" → 12_500_000_000n (the schema has checked the shape). Money never passes through a float. */
function usdToNano(usd: string): bigint {
  const [whole, frac = ""] = usd.split(".");
  return BigInt(whole!) * 1_000_000_000n + BigInt(frac.padEnd(9, "0"));
}

export interface Config {
  env: "development" | "production" | "test";
  /** `workers`: WEB_CONCURRENCY (main.ts forks that many when above 1). */
  http: { host: string; port: number; maxBodyBytes: number; workers: number };
  /** `maxHeapMb`: MAX_HEAP_MB, given to node as --max-old-space-size by `npm start` and the image. */
  runtime: { maxHeapMb: number };
  log: { level: string };
  postgres: { url: string | null; poolSize: number; dataDir: string };
  redis: { url: string | null; clusterNodes: string[]; keyPrefix: string; commandTimeoutMs: number; dataDir: string };
  auth: {
    bootstrapAdminToken: string | null;
    apiKeyPrefix: string;
    oidc: {
      jwksUrl: string;
      issuer: string;
      audience: string;
      algorithms: string[];
      roleClaim: string;
      tenantClaim: string;
      clockToleranceSeconds: number;
      jwksCooldownMs: number;
      jwksTimeoutMs: number;
    } | null;
  };
  graphql: { introspection: boolean; maxDepth: number; maxComplexity: number; jit: boolean };
  abuse: {
    bucketSeconds: number;
    evaluateIntervalMs: number;
    flushIntervalMs: number;
    stateRefreshMs: number;
    /** The global breaker takes the same settings as a tier's. */
    globalBreaker: BreakerSettings;
    authThrottle: { windowSeconds: number; maxFailuresPerSource: number; maxFailuresPerPrefix: number; blockSeconds: number };
  };
  ledger: { lingerMs: number; maxBatch: number };
  cacheTtlMs: number;
  workersEnabled: boolean;
  webhooks: {
    allowPrivateTargets: boolean;
    /** Encrypts signing secrets at rest; DEV_WEBHOOK_SECRET_KEY outside production when unset. */
    secretKey: string;
    timeoutMs: number;
  };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
  }
}

/**
 * Validates the whole environment and returns the typed settings, or throws one ConfigError
 * naming every bad variable. An empty variable counts as unset (`FOO=` in a .env file or
 * `${FOO:-}` in compose), so it takes the default instead of failing as e.g. an invalid URL.
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = EnvSchema.safeParse(present);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((issue) => `${issue.path.join(".") || "environment"}: ${issue.message}`));
  }
  const e = parsed.data;
  const oidcEnabled = e.OIDC_JWKS_URL !== undefined && e.OIDC_ISSUER !== undefined && e.OIDC_AUDIENCE !== undefined;

  return {
    env: e.NODE_ENV,
    http: { host: e.HOST, port: e.PORT, maxBodyBytes: e.MAX_BODY_BYTES, workers: e.WEB_CONCURRENCY },
    runtime: { maxHeapMb: e.MAX_HEAP_MB },
    log: { level: e.LOG_LEVEL },
    postgres: { url: e.DATABASE_URL ?? null, poolSize: e.DATABASE_POOL_SIZE, dataDir: e.DATA_DIR },
    redis: {
      url: e.REDIS_URL ?? null,
      clusterNodes: e.REDIS_CLUSTER_NODES,
      keyPrefix: e.REDIS_KEY_PREFIX,
      commandTimeoutMs: e.REDIS_COMMAND_TIMEOUT_MS,
      dataDir: e.DATA_DIR,
    },
    auth: {
      bootstrapAdminToken: e.BOOTSTRAP_ADMIN_TOKEN ?? null,
      apiKeyPrefix: e.API_KEY_PREFIX,
      oidc:
        oidcEnabled
          ? {
              jwksUrl: e.OIDC_JWKS_URL!,
              issuer: e.OIDC_ISSUER!,
              audience: e.OIDC_AUDIENCE!,
              algorithms: e.OIDC_ALGORITHMS,
              roleClaim: e.OIDC_ROLE_CLAIM,
              tenantClaim: e.OIDC_TENANT_CLAIM,
              clockToleranceSeconds: e.OIDC_CLOCK_TOLERANCE_SECONDS,
              jwksCooldownMs: e.OIDC_JWKS_COOLDOWN_MS,
              jwksTimeoutMs: e.OIDC_JWKS_TIMEOUT_MS,
            }
          : null,
    },
    graphql: {
      introspection:
        e.GRAPHQL_INTROSPECTION === undefined
          ? e.NODE_ENV !== "production"
          : isTrue(e.GRAPHQL_INTROSPECTION),
      maxDepth: e.MAX_QUERY_DEPTH,
      maxComplexity: e.MAX_QUERY_COMPLEXITY,
      jit: e.GRAPHQL_JIT,
    },
    abuse: {
      bucketSeconds: e.ABUSE_BUCKET_SECONDS,
      evaluateIntervalMs: e.ABUSE_EVALUATE_INTERVAL_MS,
      flushIntervalMs: e.ABUSE_FLUSH_INTERVAL_MS,
      stateRefreshMs: e.ABUSE_STATE_REFRESH_MS,
      globalBreaker: {
        enabled: e.GLOBAL_BREAKER_ENABLED,
        multiplier: e.GLOBAL_BREAKER_MULTIPLIER,
        windowSeconds: e.GLOBAL_BREAKER_WINDOW_SECONDS,
        minSpendNano: usdToNano(e.GLOBAL_BREAKER_MIN_SPEND_USD),
        cooldownSeconds: e.GLOBAL_BREAKER_COOLDOWN_SECONDS,
        halfOpenOneIn: e.GLOBAL_BREAKER_HALF_OPEN_ONE_IN,
        baselineSeconds: e.GLOBAL_BREAKER_BASELINE_SECONDS,
      },
      authThrottle: {
        windowSeconds: e.AUTH_THROTTLE_WINDOW_SECONDS,
        maxFailuresPerSource: e.AUTH_THROTTLE_MAX_FAILURES_PER_SOURCE,
        maxFailuresPerPrefix: e.AUTH_THROTTLE_MAX_FAILURES_PER_PREFIX,
        blockSeconds: e.AUTH_THROTTLE_BLOCK_SECONDS,
      },
    },
    ledger: { lingerMs: e.LEDGER_LINGER_MS, maxBatch: e.LEDGER_MAX_BATCH },
    cacheTtlMs: e.CACHE_TTL_MS,
    workersEnabled: e.WORKERS_ENABLED,
    webhooks: {
      allowPrivateTargets: e.WEBHOOK_ALLOW_PRIVATE_TARGETS,
      secretKey: e.WEBHOOK_SECRET_KEY ?? DEV_WEBHOOK_SECRET_KEY,
      timeoutMs: e.WEBHOOK_TIMEOUT_MS,
    },
  };
}
