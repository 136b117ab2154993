import { sql } from "drizzle-orm";
import { bigint, boolean, index, integer, jsonb, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";
import type { AnomalySettingsJson, BreakerSettingsJson } from "../../../domain/abuse/settings.js";

/** JSON forms of the domain limit types: bigint money travels as decimal strings of nano-USD. */
export interface RateLimitJson {
  perMinute: number;
  burst: number | null;
}
export interface ScopeLimitsJson {
  requestsPerMinute?: RateLimitJson | null;
  inputTokensPerMinute?: RateLimitJson | null;
  outputTokensPerMinute?: RateLimitJson | null;
  concurrentRequests?: number | null;
  dailyTokens?: number | null;
  monthlyTokens?: number | null;
  dailyBudgetNano?: string | null;
  monthlyBudgetNano?: string | null;
}
export interface TierPolicyJson {
  tenantLimits: ScopeLimitsJson;
  keyLimits: ScopeLimitsJson;
  subjectLimits: ScopeLimitsJson;
  routeModelLimits: Array<{
    route: string;
    model: string;
    requestsPerMinute?: RateLimitJson | null;
    inputTokensPerMinute?: RateLimitJson | null;
    outputTokensPerMinute?: RateLimitJson | null;
    concurrentRequests?: number | null;
  }>;
  degradationLadder: Array<{
    atPercent: number;
    of: string;
    maxOutputTokens: number | null;
    maxInputTokens: number | null;
    priority: string | null;
    modelMap: Array<{ from: string; to: string }>;
    block: boolean;
  }>;
  routeReservationTtlSeconds: Array<{ route: string; seconds: number }>;
  /** Absent in tiers written before issue #5: read as the defaults (src/domain/abuse/settings.ts). */
  breaker?: BreakerSettingsJson;
  anomaly?: AnomalySettingsJson;
}

const timestamps = {
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
};

export const tiers = pgTable("tiers", {
  id: text("id").primaryKey(),
  name: text("name").notNull().unique(),
  description: text("description"),
  policy: jsonb("policy").$type<TierPolicyJson>().notNull(),
  maxInputTokens: integer("max_input_tokens"),
  defaultMaxOutputTokens: integer("default_max_output_tokens").notNull(),
  maxOutputTokens: integer("max_output_tokens").notNull(),
  allowedRoutes: text("allowed_routes").array(),
  allowedModels: text("allowed_models").array(),
  allowedTools: text("allowed_tools").array(),
  notifyAtPercent: integer("notify_at_percent").array().notNull().default(sql`'{50,80,100}'::integer[]`),
  reservationTtlSeconds: integer("reservation_ttl_seconds").notNull().default(600),
  failOpenRateLimits: boolean("fail_open_rate_limits").notNull().default(false),
  ...timestamps,
});

export const tenants = pgTable(
  "tenants",
  {
    id: text("id").primaryKey(),
    name: text("name").notNull(),
    tierId: text("tier_id")
      .notNull()
      .references(() => tiers.id),
    timezone: text("timezone").notNull().default("UTC"),
    status: text("status").$type<"ACTIVE" | "SUSPENDED">().notNull().default("ACTIVE"),
    limitOverrides: jsonb("limit_overrides").$type<ScopeLimitsJson>().notNull().default({}),
    ...timestamps,
  },
  (t) => [index("tenants_tier_idx").on(t.tierId)],
);

export const apiKeys = pgTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    name: text("name").notNull(),
    /** Public, displayable part of the key. */
    prefix: text("prefix").notNull(),
    /** Hex SHA-256 of the whole presented key; the secret itself is never stored. */
    secretHash: text("secret_hash").notNull(),
    status: text("status").$type<"ACTIVE" | "REVOKED">().notNull().default("ACTIVE"),
    expiresAt: timestamp("expires_at", { withTimezone: true }),
    monthlyBudgetNano: bigint("monthly_budget_nano", { mode: "bigint" }),
    dailyBudgetNano: bigint("daily_budget_nano", { mode: "bigint" }),
    allowedRoutes: text("allowed_routes").array(),
    allowedModels: text("allowed_models").array(),
    rotatedFromId: text("rotated_from_id"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
  },
  (t) => [index("api_keys_tenant_idx").on(t.tenantId, t.id)],
);

export const credentials = pgTable(
  "credentials",
  {
    id: text("id").primaryKey(),
    role: text("role").$type<"ADMIN" | "TENANT_ADMIN" | "GATEWAY" | "BILLING">().notNull(),
    tenantId: text("tenant_id").references(() => tenants.id),
    name: text("name").notNull(),
    prefix: text("prefix").notNull(),
    secretHash: text("secret_hash").notNull(),
    status: text("status").$type<"ACTIVE" | "REVOKED">().notNull().default("ACTIVE"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
  },
  (t) => [index("credentials_tenant_idx").on(t.tenantId)],
);

export const models = pgTable("models", {
  name: text("name").primaryKey(),
  contextWindow: integer("context_window").notNull(),
  downgradeTo: text("downgrade_to"),
  ...timestamps,
});

/** Price history: a new price is a new row, so past ledger rows keep the price they were charged. */
export const modelPrices = pgTable(
  "model_prices",
  {
    model: text("model")
      .notNull()
      .references(() => models.name),
    effectiveFrom: timestamp("effective_from", { withTimezone: true }).notNull(),
    inputNanoPerToken: bigint("input_nano_per_token", { mode: "bigint" }).notNull(),
    outputNanoPerToken: bigint("output_nano_per_token", { mode: "bigint" }).notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.model, t.effectiveFrom] })],
);

export const auditLog = pgTable(
  "audit_log",
  {
    id: bigint("id", { mode: "bigint" }).primaryKey().generatedAlwaysAsIdentity(),
    at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
    actorKind: text("actor_kind").notNull(),
    actorId: text("actor_id").notNull(),
    tenantId: text("tenant_id"),
    action: text("action").notNull(),
    targetType: text("target_type"),
    targetId: text("target_id"),
    details: jsonb("details").$type<Record<string, unknown>>().notNull().default({}),
  },
  (t) => [index("audit_tenant_at_idx").on(t.tenantId, t.at), index("audit_at_idx").on(t.at)],
);

