import { ROLES, type Actor, type Role, type ServiceCredential } from "./types.js";
import type { AuditLog } from "../abuse/audit.js";
import type { Clock } from "../../lib/clock.js";
import { badInput, notFound } from "../../lib/errors.js";
import { isIdOf, newId } from "../../lib/ids.js";
import { credentialFormat, hashToken, mintToken, publicPrefix, type TokenFormat } from "../../auth/api-key-format.js";
import { requireAdmin, validateName, type CacheInvalidator } from "./api-keys.service.js";

/**
 * Service credentials: the bearer tokens gateways, billing systems, tenant admins and
 * operators call the GraphQL API with. Shown once, stored as a hash, revocable; the
 * authenticator (src/auth) caches them per replica and drops an entry when this service
 * publishes its invalidation.
 */

export interface CredentialRecord {
  credential: ServiceCredential;
  secretHash: string;
}

/** Storage port for credentials. Implemented in src/storage/postgres/credentials.repository.ts. */
export interface CredentialRepository {
  tenantExists(tenantId: string): Promise<boolean>;
  insert(credential: ServiceCredential, prefix: string, secretHash: string): Promise<ServiceCredential>;
  findById(id: string): Promise<ServiceCredential | null>;
  findForAuth(id: string): Promise<CredentialRecord | null>;
  /** Credentials ordered by id, strictly after `afterId`, at most `limit`. */
  list(afterId: string | null, limit: number): Promise<ServiceCredential[]>;
  /** Marks an ACTIVE credential REVOKED at `at`; null when unknown or not ACTIVE. */
  revoke(id: string, at: Date): Promise<ServiceCredential | null>;
  hasActiveAdmin(): Promise<boolean>;
}

export interface NewCredentialInput {
  role: Role;
  /** Required for TENANT_ADMIN; optional for GATEWAY and BILLING; refused for ADMIN. */
  tenantId: string | null;
  name: string;
}

export interface CredentialWithSecret {
  credential: ServiceCredential;
  secret: string;
}

export interface CredentialServiceOptions {
  repository: CredentialRepository;
  audit: AuditLog;
  invalidation: CacheInvalidator;
  clock: Clock;
  apiKeyPrefix: string;
}

export class CredentialService {
  private readonly format: TokenFormat;

  constructor(private readonly opts: CredentialServiceOptions) {
    this.format = credentialFormat(opts.apiKeyPrefix);
  }

  async create(actor: Actor, input: NewCredentialInput): Promise<CredentialWithSecret> {
    requireAdmin(actor);
    if (!ROLES.includes(input.role)) throw badInput("input.role", `must be one of ${ROLES.join(", ")}`);
    const name = validateName(input.name, "input.name");
    const tenantId = input.tenantId === null || input.tenantId === "" ? null : input.tenantId;
    if (input.role === "TENANT_ADMIN" && tenantId === null) {
      throw badInput("input.tenantId", "is required for a TENANT_ADMIN credential");
    }
    if (input.role === "ADMIN" && tenantId !== null) {
      throw badInput("input.tenantId", "must be empty for an ADMIN credential (ADMIN sees every tenant)");
    }
    if (tenantId !== null && (!isIdOf("tenant", tenantId) || !(await this.opts.repository.tenantExists(tenantId)))) {
      throw notFound("tenant", tenantId);
    }

    const id = newId("credential");
    const secret = mintToken(this.format, id);
    const prefix = publicPrefix(this.format, id);
    const credential = await this.opts.repository.insert(
      { id, role: input.role, tenantId, name, status: "ACTIVE", createdAt: this.opts.clock.now(), revokedAt: null },
      prefix,
      hashToken(secret),
    );
    // Drops negative cache entries and ends a generated bootstrap token's life on every replica.
    await this.opts.invalidation.publish("credential", id);
    await this.opts.audit.record({
      actor,
      action: "credential.create",
      tenantId,
      targetType: "credential",
      targetId: id,
      details: { role: credential.role, name: credential.name, prefix },
    });
    return { credential, secret };
  }

  /** Idempotent: revoking a revoked credential returns it unchanged. */
  async revoke(actor: Actor, id: string): Promise<ServiceCredential> {
    requireAdmin(actor);
    if (!isIdOf("credential", id)) throw notFound("credential", id);
    const revoked = await this.opts.repository.revoke(id, this.opts.clock.now());
    const credential = revoked ?? (await this.opts.repository.findById(id));
    if (!credential) throw notFound("credential", id);
    await this.opts.invalidation.publish("credential", id);
    await this.opts.audit.record({
      actor,
      action: "credential.revoke",
      tenantId: credential.tenantId,
      targetType: "credential",
      targetId: id,
      details: { role: credential.role, alreadyRevoked: revoked === null },
    });
    return credential;
  }

  async get(actor: Actor, id: string): Promise<ServiceCredential> {
    requireAdmin(actor);
    const c = isIdOf("credential", id) ? await this.opts.repository.findById(id) : null;
    if (!c) throw notFound("credential", id);
    return c;
  }

  /** Up to `page.first + 1` credentials ordered by id; the extra one only signals a next page. */
  async list(actor: Actor, page: { first: number; after: string | null }): Promise<ServiceCredential[]> {
    requireAdmin(actor);
    return this.opts.repository.list(page.after, page.first + 1);
  }

  hasActiveAdmin(): Promise<boolean> {
    return this.opts.repository.hasActiveAdmin();
  }
}
