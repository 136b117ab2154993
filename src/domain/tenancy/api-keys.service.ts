import type { Actor, ApiKey } from "./types.js";
import type { AuditLog } from "../abuse/audit.js";
import type { Clock } from "../../lib/clock.js";
import { badInput, conflict, forbidden, notFound } from "../../lib/errors.js";
import { isIdOf, newId } from "../../lib/ids.js";
import { MAX_COUNTER_NANO, formatUsd } from "../billing/money.js";
import { apiKeyFormat, hashToken, mintToken, publicPrefix, type TokenFormat } from "../../auth/api-key-format.js";
import { assertTenantVisible } from "./access.js";
import { keyRevokedEvent } from "../events/catalog.js";
import type { NewQuotaEvent } from "../events/types.js";

/**
 * Tenant API keys: created for a tenant, shown once, stored as a hash, rotated with an overlap
 * and revoked. Enforcement reads them through `ApiKeyVerifier` (src/auth), which caches them
 * per replica; every change here publishes an invalidation so replicas drop their copy at once.
 */

export const MAX_NAME_LENGTH = 200;
export const MAX_LIST_ENTRIES = 100;
export const MAX_LIST_ENTRY_LENGTH = 200;
export const MAX_OVERLAP_SECONDS = 30 * 24 * 3600;

/** A key and the hash it is verified against; only the verifier and storage ever see the hash. */
export interface ApiKeyRecord {
  key: ApiKey;
  secretHash: string;
}

/** Storage port for keys. Implemented in src/storage/postgres/api-keys.repository.ts. */
export interface ApiKeyRepository {
  tenantExists(tenantId: string): Promise<boolean>;
  insert(key: ApiKey, secretHash: string): Promise<ApiKey>;
  findById(id: string): Promise<ApiKey | null>;
  findForVerification(id: string): Promise<ApiKeyRecord | null>;
  /** Keys of a tenant ordered by id, strictly after `afterId`, at most `limit`. */
  listByTenant(tenantId: string, afterId: string | null, limit: number): Promise<ApiKey[]>;
  /**
   * Marks an ACTIVE key REVOKED at `at`; null when the key is unknown or not ACTIVE. When it
   * revokes, `event` of the revoked key is appended to the outbox in the same transaction.
   */
  revoke(id: string, at: Date, event?: (revoked: ApiKey) => NewQuotaEvent): Promise<ApiKey | null>;
  /** Runs `fn` in one database transaction: everything it wrote is undone when it throws. */
  transaction<T>(fn: (tx: ApiKeyTransaction) => Promise<T>): Promise<T>;
}

export interface ApiKeyTransaction {
  /** Reads the key and holds its row lock until the transaction ends. */
  lockById(id: string): Promise<ApiKey | null>;
  /** Whether some key was already rotated from `id`. */
  hasSuccessor(id: string): Promise<boolean>;
  setExpiresAt(id: string, expiresAt: Date): Promise<void>;
  insert(key: ApiKey, secretHash: string): Promise<ApiKey>;
}

/** The slice of the invalidation bus a service needs: tell every replica an entry changed. */
export interface CacheInvalidator {
  publish(kind: "apiKey" | "credential", id: string): Promise<void>;
}

export interface NewApiKeyInput {
  tenantId: string;
  name: string;
  monthlyBudgetNano: bigint | null;
  dailyBudgetNano: bigint | null;
  expiresAt: Date | null;
  /** null: the tier's allow-list applies unchanged; a list narrows it (an empty list allows nothing). */
  allowedRoutes: string[] | null;
  allowedModels: string[] | null;
}

/** The secret is the whole presentable key; it exists only in this return value. */
export interface ApiKeyWithSecret {
  apiKey: ApiKey;
  secret: string;
}

export interface ApiKeyServiceOptions {
  repository: ApiKeyRepository;
  audit: AuditLog;
  invalidation: CacheInvalidator;
  clock: Clock;
  apiKeyPrefix: string;
}

export function requireAdmin(actor: Actor): void {
  // Resolvers gate roles too; this keeps a future caller (a job, another transport) honest.
  if (actor.role !== "ADMIN") throw forbidden(`role ${actor.role} may not change keys or credentials`);
}

export function validateName(value: string, field: string): string {
  const name = value.trim();
  if (name.length < 1 || name.length > MAX_NAME_LENGTH) throw badInput(field, `must be 1 to ${MAX_NAME_LENGTH} characters`);
  return name;
}

function validateList(value: string[] | null, field: string): string[] | null {
  if (value === null) return null;
  if (value.length > MAX_LIST_ENTRIES) throw badInput(field, `may hold at most ${MAX_LIST_ENTRIES} entries`);
  const out: string[] = [];
  for (const [i, raw] of value.entries()) {
    const v = raw.trim();
    if (v.length < 1 || v.length > MAX_LIST_ENTRY_LENGTH) {
      throw badInput(field, `entry ${i} must be 1 to ${MAX_LIST_ENTRY_LENGTH} characters`);
    }
    if (!out.includes(v)) out.push(v);
  }
  return out;
}

function validateBudget(value: bigint | null, field: string): bigint | null {
  if (value === null) return null;
  // Budgets are compared against Redis counters, which are exact only up to 2^53 nano-USD.
  if (value < 0n || value > MAX_COUNTER_NANO) throw badInput(field, `must be between 0 and ${formatUsd(MAX_COUNTER_NANO)} USD`);
  return value;
}

/** Checks and normalises a new key's settings; throws BAD_USER_INPUT naming the first bad field. */
export function validateNewApiKey(input: NewApiKeyInput, now: Date): NewApiKeyInput {
  const name = validateName(input.name, "input.name");
  const monthlyBudgetNano = validateBudget(input.monthlyBudgetNano, "input.monthlyBudgetUsd");
  const dailyBudgetNano = validateBudget(input.dailyBudgetNano, "input.dailyBudgetUsd");
  if (input.expiresAt !== null) {
    if (Number.isNaN(input.expiresAt.getTime())) throw badInput("input.expiresAt", "is not a valid instant");
    if (input.expiresAt.getTime() <= now.getTime()) throw badInput("input.expiresAt", "must be in the future");
  }
  const allowedRoutes = validateList(input.allowedRoutes, "input.allowedRoutes");
  const allowedModels = validateList(input.allowedModels, "input.allowedModels");
  return { tenantId: input.tenantId, name, monthlyBudgetNano, dailyBudgetNano, expiresAt: input.expiresAt, allowedRoutes, allowedModels };
}

export function isExpired(key: Pick<ApiKey, "expiresAt">, now: Date): boolean {
  return key.expiresAt !== null && key.expiresAt.getTime() <= now.getTime();
}

export class ApiKeyService {
  private readonly format: TokenFormat;

  constructor(private readonly opts: ApiKeyServiceOptions) {
    this.format = apiKeyFormat(opts.apiKeyPrefix);
  }

  async create(actor: Actor, input: NewApiKeyInput): Promise<ApiKeyWithSecret> {
    requireAdmin(actor);
    const now = this.opts.clock.now();
    const v = validateNewApiKey(input, now);
    if (!isIdOf("tenant", v.tenantId) || !(await this.opts.repository.tenantExists(v.tenantId))) {
      throw notFound("tenant", v.tenantId);
    }
    const { key, secret, secretHash } = this.mint({ ...v, rotatedFromId: null }, now);
    const apiKey = await this.opts.repository.insert(key, secretHash);
    // A replica may hold a negative cache entry for this id (someone presented it before it
    // existed); drop it so the new key works everywhere at once.
    await this.opts.invalidation.publish("apiKey", apiKey.id);
    await this.opts.audit.record({
      actor,
      action: "apiKey.create",
      tenantId: apiKey.tenantId,
      targetType: "apiKey",
      targetId: apiKey.id,
      details: describe(apiKey),
    });
    return { apiKey, secret };
  }

  /**
   * Issues a successor with the same tenant and settings and lets the old key live on for
   * `overlapSeconds` (never longer than it would have anyway), so clients can switch without
   * downtime. A key can be rotated once; rotate its successor next time.
   */
  async rotate(actor: Actor, id: string, overlapSeconds: number): Promise<ApiKeyWithSecret> {
    requireAdmin(actor);
    if (!Number.isInteger(overlapSeconds) || overlapSeconds < 0 || overlapSeconds > MAX_OVERLAP_SECONDS) {
      throw badInput("overlapSeconds", `must be a whole number of seconds between 0 and ${MAX_OVERLAP_SECONDS} (30 days)`);
    }
    if (!isIdOf("apiKey", id)) throw notFound("api key", id);
    const now = this.opts.clock.now();
    const result = await this.opts.repository.transaction(async (tx) => {
      const old = await tx.lockById(id);
      if (!old) throw notFound("api key", id);
      if (old.status === "REVOKED") throw conflict(`api key ${id} is revoked and cannot be rotated`, { id });
      if (isExpired(old, now)) throw conflict(`api key ${id} has expired and cannot be rotated`, { id });
      if (await tx.hasSuccessor(id)) throw conflict(`api key ${id} was already rotated; rotate its successor instead`, { id });
      const overlapEnd = new Date(now.getTime() + overlapSeconds * 1000);
      const oldExpiresAt = old.expiresAt !== null && old.expiresAt.getTime() < overlapEnd.getTime() ? old.expiresAt : overlapEnd;
      await tx.setExpiresAt(id, oldExpiresAt);
      const { key, secret, secretHash } = this.mint(
        {
          tenantId: old.tenantId,
          name: old.name,
          monthlyBudgetNano: old.monthlyBudgetNano,
          dailyBudgetNano: old.dailyBudgetNano,
          // The successor keeps the lifetime the old key was created with.
          expiresAt: old.expiresAt,
          allowedRoutes: old.allowedRoutes,
          allowedModels: old.allowedModels,
          rotatedFromId: old.id,
        },
        now,
      );
      const apiKey = await tx.insert(key, secretHash);
      return { apiKey, secret, oldExpiresAt };
    });
    await this.opts.invalidation.publish("apiKey", id);
    await this.opts.invalidation.publish("apiKey", result.apiKey.id);
    await this.opts.audit.record({
      actor,
      action: "apiKey.rotate",
      tenantId: result.apiKey.tenantId,
      targetType: "apiKey",
      targetId: id,
      details: { successorId: result.apiKey.id, overlapSeconds, oldExpiresAt: result.oldExpiresAt.toISOString() },
    });
    return { apiKey: result.apiKey, secret: result.secret };
  }

  /** Idempotent: revoking a revoked key returns it unchanged (its first revokedAt stays). */
  async revoke(actor: Actor, id: string): Promise<ApiKey> {
    requireAdmin(actor);
    if (!isIdOf("apiKey", id)) throw notFound("api key", id);
    const now = this.opts.clock.now();
    // key.revoked is written with the revocation itself, so billing hears of every revocation once.
    const revoked = await this.opts.repository.revoke(id, now, (k) => keyRevokedEvent(k, actor));
    const apiKey = revoked ?? (await this.opts.repository.findById(id));
    if (!apiKey) throw notFound("api key", id);
    // Published even when already revoked: a replica that missed the first message drops it now.
    await this.opts.invalidation.publish("apiKey", id);
    await this.opts.audit.record({
      actor,
      action: "apiKey.revoke",
      tenantId: apiKey.tenantId,
      targetType: "apiKey",
      targetId: id,
      details: { alreadyRevoked: revoked === null },
    });
    return apiKey;
  }

  async get(actor: Actor, id: string): Promise<ApiKey> {
    if (!isIdOf("apiKey", id)) throw notFound("api key", id);
    const key = await this.opts.repository.findById(id);
    if (!key) throw notFound("api key", id);
    assertTenantVisible(actor, key.tenantId, "api key", id);
    return key;
  }

  /**
   * One page of a tenant's keys ordered by id: up to `page.first + 1` keys, the extra one
   * only telling the caller that another page exists.
   */
  async list(actor: Actor, tenantId: string, page: { first: number; after: string | null }): Promise<ApiKey[]> {
    assertTenantVisible(actor, tenantId, "tenant", tenantId);
    if (!isIdOf("tenant", tenantId) || !(await this.opts.repository.tenantExists(tenantId))) throw notFound("tenant", tenantId);
    return this.opts.repository.listByTenant(tenantId, page.after, page.first + 1);
  }

  private mint(settings: NewApiKeyInput & { rotatedFromId: string | null }, now: Date) {
    const id = newId("apiKey");
    const secret = mintToken(this.format, id);
    const key: ApiKey = {
      id,
      tenantId: settings.tenantId,
      name: settings.name,
      prefix: publicPrefix(this.format, id),
      status: "ACTIVE",
      expiresAt: settings.expiresAt,
      monthlyBudgetNano: settings.monthlyBudgetNano,
      dailyBudgetNano: settings.dailyBudgetNano,
      allowedRoutes: settings.allowedRoutes,
      allowedModels: settings.allowedModels,
      rotatedFromId: settings.rotatedFromId,
      createdAt: now,
      revokedAt: null,
    };
    return { key, secret, secretHash: hashToken(secret) };
  }
}

/** Audit details of a key: its settings, never its secret or hash. */
function describe(k: ApiKey): Record<string, unknown> {
  return {
    name: k.name,
    prefix: k.prefix,
    expiresAt: k.expiresAt?.toISOString() ?? null,
    monthlyBudgetUsd: k.monthlyBudgetNano === null ? null : formatUsd(k.monthlyBudgetNano),
    dailyBudgetUsd: k.dailyBudgetNano === null ? null : formatUsd(k.dailyBudgetNano),
    allowedRoutes: k.allowedRoutes,
    allowedModels: k.allowedModels,
    rotatedFromId: k.rotatedFromId,
  };
}
