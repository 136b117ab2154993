import { z } from "zod";
import { badInput, type DomainError } from "../../lib/errors.js";
import { formatUsd, MAX_COUNTER_NANO, parseUsd, type NanoUsd } from "../billing/money.js";
import type { LadderRung, LimitDimension, ModelMapping, Priority, RateLimit, RouteModelLimit, ScopeLimits, Tier } from "./types.js";
import {
  anomalySettingsSchema,
  breakerSettingsSchema,
  DEFAULT_ANOMALY_SETTINGS,
  DEFAULT_BREAKER_SETTINGS,
  type AnomalySettingsInput,
  type BreakerSettingsInput,
} from "../abuse/settings.js";

/**
 * Validation of operator input for tiers, tenants and models. The transport hands over plain
 * values (money and big token counts as decimal strings); these functions return domain
 * values or throw BAD_USER_INPUT naming the input path of the first problem
 * ("input.tenantLimits.dailyTokens"). They run before anything is written, so a refused
 * request changes nothing.
 */

export const MAX_STRING_LENGTH = 200;
export const MAX_LIST_ENTRIES = 100;
/** Token limits and every other count limit. Far above any real quota, far below 2^53. */
export const MAX_LIMIT = 1_000_000_000_000;
/** Prompt/output caps and context windows live in int4 columns. */
export const MAX_INT32 = 2_147_483_647;
export const MAX_PERCENT = 1000;
/** A reservation outliving a day is a leak, not a long request. */
export const MAX_RESERVATION_TTL_SECONDS = 86_400;
export const DEFAULT_NOTIFY_AT_PERCENT: readonly number[] = [50, 80, 100];
export const DEFAULT_RESERVATION_TTL_SECONDS = 600;
export const DEFAULT_TIMEZONE = "UTC";

export const LIMIT_DIMENSIONS = [
  "REQUESTS_PER_MINUTE",
  "INPUT_TOKENS_PER_MINUTE",
  "OUTPUT_TOKENS_PER_MINUTE",
  "CONCURRENT_REQUESTS",
  "DAILY_TOKENS",
  "MONTHLY_TOKENS",
  "DAILY_BUDGET",
  "MONTHLY_BUDGET",
] as const satisfies readonly LimitDimension[];
/** The dimensions with a period total, so "percent used" means something: ladder rungs climb these. */
export const QUOTA_DIMENSIONS: readonly LimitDimension[] = ["DAILY_TOKENS", "MONTHLY_TOKENS", "DAILY_BUDGET", "MONTHLY_BUDGET"];
export const PRIORITIES = ["CRITICAL", "NORMAL", "BACKGROUND"] as const satisfies readonly Priority[];

// ── raw input shapes: what the transport passes in (GraphQL input classes satisfy these) ──

export interface RateLimitInput {
  perMinute: number;
  burst?: number | null;
}
export interface SubjectLimitsInput {
  requestsPerMinute?: RateLimitInput | null;
  inputTokensPerMinute?: RateLimitInput | null;
  outputTokensPerMinute?: RateLimitInput | null;
  concurrentRequests?: number | null;
}
export interface ScopeLimitsInput extends SubjectLimitsInput {
  /** Decimal integer strings: quotas can exceed 2^31. */
  dailyTokens?: string | null;
  monthlyTokens?: string | null;
  /** USD decimal strings. */
  dailyBudgetUsd?: string | null;
  monthlyBudgetUsd?: string | null;
}
export interface RouteModelLimitInput extends SubjectLimitsInput {
  route: string;
  model: string;
}
export interface ModelMappingInput {
  from: string;
  to: string;
}
export interface LadderRungInput {
  atPercent: number;
  of: string;
  maxOutputTokens?: number | null;
  maxInputTokens?: number | null;
  priority?: string | null;
  modelMap?: ModelMappingInput[] | null;
  block?: boolean | null;
}
export interface RouteReservationTtlInput {
  route: string;
  seconds: number;
}
/** Create and update share this shape; on update an absent field keeps its value. */
export interface TierInput {
  name?: string | null;
  description?: string | null;
  tenantLimits?: ScopeLimitsInput | null;
  keyLimits?: ScopeLimitsInput | null;
  subjectLimits?: SubjectLimitsInput | null;
  routeModelLimits?: RouteModelLimitInput[] | null;
  maxInputTokens?: number | null;
  defaultMaxOutputTokens?: number | null;
  maxOutputTokens?: number | null;
  allowedRoutes?: string[] | null;
  allowedModels?: string[] | null;
  allowedTools?: string[] | null;
  notifyAtPercent?: number[] | null;
  degradationLadder?: LadderRungInput[] | null;
  reservationTtlSeconds?: number | null;
  routeReservationTtlSeconds?: RouteReservationTtlInput[] | null;
  failOpenRateLimits?: boolean | null;
  /** Spend circuit breaker; a given object replaces the old one, its omitted fields take defaults. */
  breaker?: BreakerSettingsInput | null;
  /** Anomaly thresholds and action; same replacement rule as `breaker`. */
  anomaly?: AnomalySettingsInput | null;
}
export interface TenantInput {
  name?: string | null;
  tierId?: string | null;
  timezone?: string | null;
  /** Per dimension: absent = inherit the tier's, a value = replace it, null = unlimited. */
  limitOverrides?: ScopeLimitsInput | null;
}
export interface ModelInput {
  name: string;
  inputPriceUsdPerMTok?: string | null;
  outputPriceUsdPerMTok?: string | null;
  contextWindow?: number | null;
  downgradeTo?: string | null;
  effectiveFrom?: Date | null;
}

/** Everything of a Tier the operator sets. */
export type TierDraft = Omit<Tier, "id" | "createdAt" | "updatedAt">;

// ── building blocks ──

/** "input.degradationLadder[1].atPercent" */
export function formatPath(base: string, path: readonly PropertyKey[]): string {
  let out = base;
  for (const seg of path) out += typeof seg === "number" ? `[${seg}]` : `${out === "" ? "" : "."}${String(seg)}`;
  return out;
}

function firstIssue(error: z.ZodError, base: string): DomainError {
  const issue = error.issues[0]!;
  return badInput(formatPath(base, issue.path), issue.message);
}

function parseWith<S extends z.ZodType>(schema: S, value: unknown, base: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw firstIssue(r.error, base);
  return r.data;
}

/** Type errors GraphQL already rules out, except null for a field that may be omitted but not cleared. */
const typeError = (expected: string) => (iss: { input?: unknown }) =>
  iss.input === null ? "cannot be null" : iss.input === undefined ? "is required" : `must be ${expected}`;

const wholeNumber = (min: number, max: number) => {
  const msg = `must be a whole number from ${min} to ${max}`;
  return z.number({ error: typeError("a whole number") }).int(msg).min(min, msg).max(max, msg);
};
const limitCount = wholeNumber(1, MAX_LIMIT);
const int32Count = wholeNumber(1, MAX_INT32);

/** Names shown to people: trimmed, 1..200 characters, no control characters. */
const displayName = z
  .string({ error: typeError("a string") })
  .transform((s) => s.trim())
  .pipe(
    z
      .string()
      .min(1, "must not be empty")
      .max(MAX_STRING_LENGTH, `must be at most ${MAX_STRING_LENGTH} characters`)
      .regex(/^[^\p{Cc}]*$/u, "must not contain control characters"),
  );

/** Route, model and tool names as gateways send them: no whitespace, control or format characters. */
const identifier = z
  .string({ error: typeError("a string") })
  .min(1, "must not be empty")
  .max(MAX_STRING_LENGTH, `must be at most ${MAX_STRING_LENGTH} characters`)
  .regex(/^[^\s\p{C}]+$/u, "must not contain spaces or control characters");
/** "*" is the wildcard of per-route/model limits, so it can never be a real name. */
export const modelName = identifier.refine((s) => s !== "*", '"*" is reserved as the wildcard');
const allowListEntry = identifier.refine((s) => s !== "*", '"*" is not an entry; a null list allows everything');

function uniqueList<T extends z.ZodType>(item: T, keyOf: (v: z.output<T>) => string, what: string) {
  return z
    .array(item, { error: typeError("a list") })
    .max(MAX_LIST_ENTRIES, `must have at most ${MAX_LIST_ENTRIES} entries`)
    .superRefine((list, ctx) => {
      const seen = new Set<string>();
      list.forEach((v, i) => {
        const k = keyOf(v);
        if (seen.has(k)) ctx.addIssue({ code: "custom", path: [i], message: `duplicate ${what} ${JSON.stringify(k)}` });
        seen.add(k);
      });
    });
}

/** Token quotas travel as decimal strings because they exceed GraphQL's 32-bit Int. */
const tokenQuota = z.string({ error: typeError("a decimal integer string") }).transform((s, ctx) => {
  const t = s.trim();
  if (!/^\d{1,16}$/.test(t)) {
    ctx.addIssue({ code: "custom", message: `must be a whole number of tokens written as a decimal string, e.g. "1000000"` });
    return z.NEVER;
  }
  const n = Number(t);
  if (n < 1 || n > MAX_LIMIT) {
    ctx.addIssue({ code: "custom", message: `must be a whole number from 1 to ${MAX_LIMIT}` });
    return z.NEVER;
  }
  return n;
});

/**
 * Budgets are hard limits held in Redis counters, which are exact only up to MAX_COUNTER_NANO.
 * A zero budget would deny everything: suspending the tenant says that honestly.
 */
const usdBudget = z.string({ error: typeError("a USD decimal string") }).transform((s, ctx): NanoUsd => {
  let nano: NanoUsd;
  try {
    nano = parseUsd(s, "budget");
  } catch {
    ctx.addIssue({ code: "custom", message: `"${s}" is not a USD amount (digits with at most 9 decimals, not negative)` });
    return z.NEVER;
  }
  if (nano <= 0n) {
    ctx.addIssue({ code: "custom", message: "must be more than 0 USD" });
    return z.NEVER;
  }
  if (nano > MAX_COUNTER_NANO) {
    ctx.addIssue({ code: "custom", message: `must be at most ${formatUsd(MAX_COUNTER_NANO)} USD` });
    return z.NEVER;
  }
  return nano;
});

const rateLimit = z
  .object({ perMinute: limitCount, burst: limitCount.nullable().optional() }, { error: typeError("an object") })
  .transform((r): RateLimit => ({ perMinute: r.perMinute, burst: r.burst ?? null }));

const subjectFields = {
  requestsPerMinute: rateLimit.nullable().optional(),
  inputTokensPerMinute: rateLimit.nullable().optional(),
  outputTokensPerMinute: rateLimit.nullable().optional(),
  concurrentRequests: limitCount.nullable().optional(),
};
const scopeFields = {
  ...subjectFields,
  dailyTokens: tokenQuota.nullable().optional(),
  monthlyTokens: tokenQuota.nullable().optional(),
  dailyBudgetUsd: usdBudget.nullable().optional(),
  monthlyBudgetUsd: usdBudget.nullable().optional(),
};

type ScopeParsed = {
  [K in keyof typeof scopeFields]?: z.output<(typeof scopeFields)[K]>;
};

/**
 * `keepNull` distinguishes "unlimited" (null) from "not set" (absent). A tier's limits need no
 * such distinction (not set = unlimited) and drop both; a tenant's overrides keep null as
 * "override to unlimited" and drop absent as "inherit from the tier".
 */
function toScopeLimits(p: ScopeParsed, keepNull: boolean): ScopeLimits {
  const renamed: Record<keyof ScopeLimits, unknown> = {
    requestsPerMinute: p.requestsPerMinute,
    inputTokensPerMinute: p.inputTokensPerMinute,
    outputTokensPerMinute: p.outputTokensPerMinute,
    concurrentRequests: p.concurrentRequests,
    dailyTokens: p.dailyTokens,
    monthlyTokens: p.monthlyTokens,
    dailyBudgetNano: p.dailyBudgetUsd,
    monthlyBudgetNano: p.monthlyBudgetUsd,
  };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(renamed)) {
    if (v === undefined || (v === null && !keepNull)) continue;
    out[k] = v;
  }
  return out as ScopeLimits;
}

const tierScopeLimits = z.object(scopeFields, { error: typeError("an object") }).transform((p) => toScopeLimits(p, false));
const overrideScopeLimits = z.object(scopeFields, { error: typeError("an object") }).transform((p) => toScopeLimits(p, true));
const subjectLimits = z
  .object(subjectFields, { error: typeError("an object") })
  .transform((p): Tier["subjectLimits"] => toScopeLimits(p, false));

const routeModelLimit = z
  .object({ route: identifier, model: identifier, ...subjectFields })
  .superRefine((o, ctx) => {
    if (o.requestsPerMinute == null && o.inputTokensPerMinute == null && o.outputTokensPerMinute == null && o.concurrentRequests == null) {
      ctx.addIssue({ code: "custom", message: "sets no limit; give at least one of requestsPerMinute, inputTokensPerMinute, outputTokensPerMinute, concurrentRequests" });
    }
  })
  .transform(
    (o): RouteModelLimit => ({
      route: o.route,
      model: o.model,
      requestsPerMinute: o.requestsPerMinute ?? null,
      inputTokensPerMinute: o.inputTokensPerMinute ?? null,
      outputTokensPerMinute: o.outputTokensPerMinute ?? null,
      concurrentRequests: o.concurrentRequests ?? null,
    }),
  );

/** `from: "*"` maps every model (the enforcement plan honours it); `to` must be a real model. */
const modelMapping = z.object({ from: identifier, to: modelName }).superRefine((m, ctx) => {
  if (m.from === m.to) ctx.addIssue({ code: "custom", path: ["to"], message: "maps a model to itself" });
});

const ladderRung = z
  .object({
    atPercent: wholeNumber(1, MAX_PERCENT),
    of: z.enum(LIMIT_DIMENSIONS, { error: typeError("a LimitDimension") }),
    maxOutputTokens: int32Count.nullable().optional(),
    maxInputTokens: int32Count.nullable().optional(),
    priority: z.enum(PRIORITIES, { error: typeError("a Priority") }).nullable().optional(),
    modelMap: uniqueList(modelMapping, (m) => m.from, "mapping from").nullable().optional(),
    block: z.boolean({ error: typeError("a boolean") }).nullable().optional(),
  })
  .superRefine((g, ctx) => {
    if (!QUOTA_DIMENSIONS.includes(g.of)) {
      ctx.addIssue({
        code: "custom",
        path: ["of"],
        message: `must be a quota or budget dimension (${QUOTA_DIMENSIONS.join(", ")}): only those have a percentage used to climb`,
      });
    }
    const shapes = g.maxOutputTokens != null || g.maxInputTokens != null || g.priority != null || (g.modelMap?.length ?? 0) > 0;
    if (!g.block && !shapes) {
      ctx.addIssue({ code: "custom", message: "changes nothing; set block, maxOutputTokens, maxInputTokens, priority or modelMap" });
    }
  })
  .transform(
    (g): LadderRung => ({
      atPercent: g.atPercent,
      of: g.of,
      maxOutputTokens: g.maxOutputTokens ?? null,
      maxInputTokens: g.maxInputTokens ?? null,
      priority: g.priority ?? null,
      modelMap: (g.modelMap ?? []).map((m): ModelMapping => ({ from: m.from, to: m.to })),
      block: g.block ?? false,
    }),
  );

/** Rungs of one dimension must climb: a later rung at a lower percentage would be unreachable or ambiguous. */
const degradationLadder = z
  .array(ladderRung, { error: typeError("a list") })
  .max(MAX_LIST_ENTRIES, `must have at most ${MAX_LIST_ENTRIES} entries`)
  .superRefine((rungs, ctx) => {
    const last = new Map<LimitDimension, number>();
    rungs.forEach((g, i) => {
      const prev = last.get(g.of);
      if (prev !== undefined && g.atPercent <= prev) {
        ctx.addIssue({
          code: "custom",
          path: [i, "atPercent"],
          message: `rungs of ${g.of} must be in strictly ascending atPercent order (the previous one is at ${prev})`,
        });
      }
      last.set(g.of, g.atPercent);
    });
  });

const routeTtl = z.object({ route: identifier, seconds: wholeNumber(1, MAX_RESERVATION_TTL_SECONDS) });

const allowList = uniqueList(allowListEntry, (s) => s, "entry").nullable().optional();

/** Every tier field, each optional: a create fills defaults afterwards, an update keeps what is absent. */
const tierFields = z.object({
  name: displayName.optional(),
  description: z
    .string({ error: typeError("a string") })
    .transform((s) => s.trim())
    .pipe(
      z
        .string()
        .max(MAX_STRING_LENGTH, `must be at most ${MAX_STRING_LENGTH} characters`)
        .regex(/^[^\p{Cc}]*$/u, "must not contain control characters"),
    )
    .nullable()
    .optional(),
  tenantLimits: tierScopeLimits.nullable().optional(),
  keyLimits: tierScopeLimits.nullable().optional(),
  subjectLimits: subjectLimits.nullable().optional(),
  routeModelLimits: uniqueList(routeModelLimit, (o) => `${o.route} ${o.model}`, "route/model pair").nullable().optional(),
  maxInputTokens: int32Count.nullable().optional(),
  defaultMaxOutputTokens: int32Count.optional(),
  maxOutputTokens: int32Count.optional(),
  allowedRoutes: allowList,
  allowedModels: allowList,
  allowedTools: allowList,
  notifyAtPercent: uniqueList(wholeNumber(1, MAX_PERCENT), (n) => String(n), "percentage").optional(),
  degradationLadder: degradationLadder.nullable().optional(),
  reservationTtlSeconds: wholeNumber(1, MAX_RESERVATION_TTL_SECONDS).optional(),
  routeReservationTtlSeconds: uniqueList(routeTtl, (r) => r.route, "route").nullable().optional(),
  failOpenRateLimits: z.boolean({ error: typeError("a boolean") }).optional(),
  breaker: breakerSettingsSchema.nullable().optional(),
  anomaly: anomalySettingsSchema.nullable().optional(),
});

type TierFields = z.output<typeof tierFields>;

/** The parsed fields as a partial TierDraft: null lists/limits mean "none" where the domain has no null. */
function toTierPatch(f: TierFields): Partial<TierDraft> {
  const p: Partial<TierDraft> = {};
  if (f.name !== undefined) p.name = f.name;
  if (f.description !== undefined) p.description = f.description === null || f.description === "" ? null : f.description;
  if (f.tenantLimits !== undefined) p.tenantLimits = f.tenantLimits ?? {};
  if (f.keyLimits !== undefined) p.keyLimits = f.keyLimits ?? {};
  if (f.subjectLimits !== undefined) p.subjectLimits = f.subjectLimits ?? {};
  if (f.routeModelLimits !== undefined) p.routeModelLimits = f.routeModelLimits ?? [];
  if (f.maxInputTokens !== undefined) p.maxInputTokens = f.maxInputTokens;
  if (f.defaultMaxOutputTokens !== undefined) p.defaultMaxOutputTokens = f.defaultMaxOutputTokens;
  if (f.maxOutputTokens !== undefined) p.maxOutputTokens = f.maxOutputTokens;
  if (f.allowedRoutes !== undefined) p.allowedRoutes = f.allowedRoutes;
  if (f.allowedModels !== undefined) p.allowedModels = f.allowedModels;
  if (f.allowedTools !== undefined) p.allowedTools = f.allowedTools;
  if (f.notifyAtPercent !== undefined) p.notifyAtPercent = [...f.notifyAtPercent].sort((a, b) => a - b);
  if (f.degradationLadder !== undefined) p.degradationLadder = f.degradationLadder ?? [];
  if (f.reservationTtlSeconds !== undefined) p.reservationTtlSeconds = f.reservationTtlSeconds;
  if (f.routeReservationTtlSeconds !== undefined) p.routeReservationTtlSeconds = f.routeReservationTtlSeconds ?? [];
  if (f.failOpenRateLimits !== undefined) p.failOpenRateLimits = f.failOpenRateLimits;
  // null resets to the defaults: a tier always has breaker and anomaly settings.
  if (f.breaker !== undefined) p.breaker = f.breaker ?? { ...DEFAULT_BREAKER_SETTINGS };
  if (f.anomaly !== undefined) p.anomaly = f.anomaly ?? { ...DEFAULT_ANOMALY_SETTINGS };
  return p;
}

/** Rules across fields, checked on the tier as it would be stored (after an update is merged). */
function checkTierDraft(t: TierDraft, input: TierInput, base: string): void {
  if (t.defaultMaxOutputTokens > t.maxOutputTokens) {
    const field = input.defaultMaxOutputTokens != null ? "defaultMaxOutputTokens" : "maxOutputTokens";
    throw badInput(
      `${base}.${field}`,
      `defaultMaxOutputTokens (${t.defaultMaxOutputTokens}) must not exceed maxOutputTokens (${t.maxOutputTokens})`,
    );
  }
}

/** A new tier from `input`, with defaults for what it leaves out. */
export function parseTierCreate(input: TierInput, base = "input"): TierDraft {
  const p = toTierPatch(parseWith(tierFields, input, base));
  if (p.name === undefined) throw badInput(`${base}.name`, "is required");
  if (p.maxOutputTokens === undefined) throw badInput(`${base}.maxOutputTokens`, "is required");
  const draft: TierDraft = {
    name: p.name,
    description: p.description ?? null,
    tenantLimits: p.tenantLimits ?? {},
    keyLimits: p.keyLimits ?? {},
    subjectLimits: p.subjectLimits ?? {},
    routeModelLimits: p.routeModelLimits ?? [],
    maxInputTokens: p.maxInputTokens ?? null,
    // Reserving the full cap when a request names none never under-reserves.
    defaultMaxOutputTokens: p.defaultMaxOutputTokens ?? p.maxOutputTokens,
    maxOutputTokens: p.maxOutputTokens,
    allowedRoutes: p.allowedRoutes ?? null,
    allowedModels: p.allowedModels ?? null,
    allowedTools: p.allowedTools ?? null,
    notifyAtPercent: p.notifyAtPercent ?? [...DEFAULT_NOTIFY_AT_PERCENT],
    degradationLadder: p.degradationLadder ?? [],
    reservationTtlSeconds: p.reservationTtlSeconds ?? DEFAULT_RESERVATION_TTL_SECONDS,
    routeReservationTtlSeconds: p.routeReservationTtlSeconds ?? [],
    failOpenRateLimits: p.failOpenRateLimits ?? false,
    breaker: p.breaker ?? { ...DEFAULT_BREAKER_SETTINGS },
    anomaly: p.anomaly ?? { ...DEFAULT_ANOMALY_SETTINGS },
  };
  checkTierDraft(draft, input, base);
  return draft;
}

/** `current` with the fields `input` names replaced (a named object or list is replaced whole). */
export function applyTierUpdate(current: TierDraft, input: TierInput, base = "input"): TierDraft {
  const patch = toTierPatch(parseWith(tierFields, input, base));
  const next: TierDraft = { ...current, ...patch };
  checkTierDraft(next, input, base);
  return next;
}

// ── tenants ──

const IANA_SHAPE = /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/;

/**
 * An IANA zone name the runtime knows. Offsets ("+01:00") are refused even where Intl accepts
 * them: a tenant's day and month must follow the zone's daylight-saving rules.
 */
export function isIanaTimeZone(tz: string): boolean {
  if (tz.length > 64 || !IANA_SHAPE.test(tz)) return false;
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

const timezone = z
  .string({ error: typeError("a string") })
  .transform((s) => s.trim())
  .refine(isIanaTimeZone, { message: 'is not an IANA time zone name (e.g. "UTC", "Europe/Berlin")' });

const tenantFields = z.object({
  name: displayName.optional(),
  tierId: z
    .string({ error: typeError("a tier id") })
    .max(MAX_STRING_LENGTH, `must be at most ${MAX_STRING_LENGTH} characters`)
    .optional(),
  timezone: timezone.optional(),
  limitOverrides: overrideScopeLimits.nullable().optional(),
});

export interface TenantDraft {
  name: string;
  tierId: string;
  timezone: string;
  limitOverrides: ScopeLimits;
}

/** The tenant fields `input` sets. The tier's existence is the service's to check. */
export function parseTenantInput(input: TenantInput, base = "input"): Partial<TenantDraft> {
  const f = parseWith(tenantFields, input, base);
  const p: Partial<TenantDraft> = {};
  if (f.name !== undefined) p.name = f.name;
  if (f.tierId !== undefined) p.tierId = f.tierId;
  if (f.timezone !== undefined) p.timezone = f.timezone;
  if (f.limitOverrides !== undefined) p.limitOverrides = f.limitOverrides ?? {};
  return p;
}

export function parseTenantCreate(input: TenantInput, base = "input"): TenantDraft {
  const p = parseTenantInput(input, base);
  if (p.name === undefined) throw badInput(`${base}.name`, "is required");
  if (p.tierId === undefined) throw badInput(`${base}.tierId`, "is required");
  return { name: p.name, tierId: p.tierId, timezone: p.timezone ?? DEFAULT_TIMEZONE, limitOverrides: p.limitOverrides ?? {} };
}

// ── models ──

const modelFields = z.object({
  name: modelName,
  contextWindow: int32Count.optional(),
  downgradeTo: modelName.nullable().optional(),
  effectiveFrom: z
    .date({ error: typeError("a date-time") })
    .refine((d) => !Number.isNaN(d.getTime()), "is not a valid date-time")
    .nullable()
    .optional(),
});

export interface ModelFieldsParsed {
  name: string;
  contextWindow?: number;
  downgradeTo?: string | null;
  effectiveFrom?: Date | null;
}

/** The non-price model fields; prices are parsed with parsePricePerMTok, which names its own field. */
export function parseModelFields(input: ModelInput, base = "input"): ModelFieldsParsed {
  return parseWith(modelFields, input, base);
}

/** A string field every domain entity may use as a name of a route, model or tool. */
export function parseModelName(value: string, field: string): string {
  return parseWith(modelName, value, field);
}
