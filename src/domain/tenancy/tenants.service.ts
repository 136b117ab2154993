import type { AuditLog } from "../abuse/audit.js";
import type { Clock } from "../../lib/clock.js";
import { badInput, notFound } from "../../lib/errors.js";
import { isIdOf, newId } from "../../lib/ids.js";
import { assertTenantVisible } from "./access.js";
import { assertAdmin, type ListPage } from "./tiers.service.js";
import type { Actor, ScopeLimits, Tenant, TenantStatus, Tier } from "./types.js";
import { parseTenantCreate, parseTenantInput, type TenantInput } from "./validation.js";

export type TenantWriteResult = { ok: true; tenant: Tenant } | { ok: false; reason: "NOT_FOUND" };

export interface TenantRepository {
  get(id: string): Promise<Tenant | null>;
  /** Ordered by id, ids strictly after `page.after`; only `onlyId` when it is set. */
  list(page: ListPage & { onlyId: string | null }): Promise<Tenant[]>;
  insert(tenant: Tenant): Promise<Tenant>;
  /** Like TierRepository.update: under a row lock; a throwing `change` writes nothing. */
  update(id: string, change: (current: Tenant) => Tenant): Promise<TenantWriteResult>;
}

export interface TenantsServiceOptions {
  repo: TenantRepository;
  tiers: { get(id: string): Promise<Tier | null> };
  audit: AuditLog;
  invalidation: { publish(kind: "tenant", id: string): Promise<void> };
  clock: Clock;
}

/**
 * The limits that apply to a tenant as a whole: its tier's tenant limits with the tenant's
 * overrides laid over them dimension by dimension. An override of null lifts the limit; a
 * dimension the overrides do not mention keeps the tier's value.
 */
export function mergeLimitOverrides(tierLimits: ScopeLimits, overrides: ScopeLimits): ScopeLimits {
  const out: ScopeLimits = { ...tierLimits };
  for (const [k, v] of Object.entries(overrides) as Array<[keyof ScopeLimits, ScopeLimits[keyof ScopeLimits]]>) {
    if (v === undefined) continue;
    if (v === null) delete out[k];
    else (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

/**
 * Tenants: who is billed and limited. ADMIN writes them. Every read is scoped: a tenant-bound
 * actor sees only its own tenant, and another tenant reads exactly like an unknown id.
 */
export class TenantsService {
  constructor(private readonly opts: TenantsServiceOptions) {}

  /** Plain read for the hot-path cache and other services: no actor, no scoping. */
  async getTenant(id: string): Promise<Tenant | null> {
    if (!isIdOf("tenant", id)) return null;
    return this.opts.repo.get(id);
  }

  async tenant(actor: Actor, id: string): Promise<Tenant> {
    // Checked before the lookup, so another tenant's id costs the same as a made-up one.
    assertTenantVisible(actor, id, "tenant", id);
    const tenant = await this.getTenant(id);
    if (!tenant) throw notFound("tenant", id);
    return tenant;
  }

  async tenants(actor: Actor, page: ListPage): Promise<Tenant[]> {
    return this.opts.repo.list({ ...page, onlyId: actor.tenantId });
  }

  async createTenant(actor: Actor, input: TenantInput): Promise<Tenant> {
    assertAdmin(actor);
    const draft = parseTenantCreate(input);
    await this.requireTier(draft.tierId);
    const now = this.opts.clock.now();
    const tenant = await this.opts.repo.insert({ ...draft, id: newId("tenant"), status: "ACTIVE", createdAt: now, updatedAt: now });
    await this.changed(actor, "tenant.create", tenant, { tenant: draft });
    return tenant;
  }

  /** Partial update; `limitOverrides`, when given, replaces all of the tenant's overrides. */
  async updateTenant(actor: Actor, id: string, input: TenantInput): Promise<Tenant> {
    assertAdmin(actor);
    const patch = parseTenantInput(input);
    if (patch.tierId !== undefined) await this.requireTier(patch.tierId);
    const tenant = await this.write(id, (current) => ({ ...current, ...patch }));
    await this.changed(actor, "tenant.update", tenant, { changes: patch });
    return tenant;
  }

  /** Idempotent: suspending a suspended tenant changes nothing but is still audited. */
  suspendTenant(actor: Actor, id: string): Promise<Tenant> {
    return this.setStatus(actor, id, "SUSPENDED");
  }

  resumeTenant(actor: Actor, id: string): Promise<Tenant> {
    return this.setStatus(actor, id, "ACTIVE");
  }

  private async setStatus(actor: Actor, id: string, status: TenantStatus): Promise<Tenant> {
    assertAdmin(actor);
    let previous: TenantStatus | null = null;
    const tenant = await this.write(id, (current) => {
      previous = current.status;
      return { ...current, status };
    });
    await this.changed(actor, status === "SUSPENDED" ? "tenant.suspend" : "tenant.resume", tenant, { from: previous, to: status });
    return tenant;
  }

  private async write(id: string, change: (current: Tenant) => Tenant): Promise<Tenant> {
    if (!isIdOf("tenant", id)) throw notFound("tenant", id);
    const now = this.opts.clock.now();
    const result = await this.opts.repo.update(id, (current) => ({ ...change(current), id: current.id, createdAt: current.createdAt, updatedAt: now }));
    if (!result.ok) throw notFound("tenant", id);
    return result.tenant;
  }

  /** Tiers are never deleted, so a tier seen here still exists when the tenant row is written. */
  private async requireTier(tierId: string): Promise<void> {
    const tier = isIdOf("tier", tierId) ? await this.opts.tiers.get(tierId) : null;
    if (!tier) throw badInput("input.tierId", `no tier with id ${JSON.stringify(tierId)}`);
  }

  /** After the commit: invalidate, then audit (see TiersService.changed for why this order). */
  private async changed(actor: Actor, action: string, tenant: Tenant, details: Record<string, unknown>): Promise<void> {
    await this.opts.invalidation.publish("tenant", tenant.id);
    await this.opts.audit.record({
      actor: { kind: actor.kind, id: actor.id },
      action,
      tenantId: tenant.id,
      targetType: "tenant",
      targetId: tenant.id,
      details,
    });
  }
}
