import type { AuditLog } from "../abuse/audit.js";
import type { Clock } from "../../lib/clock.js";
import { badInput, forbidden, notFound } from "../../lib/errors.js";
import { isIdOf, newId } from "../../lib/ids.js";
import type { Actor, Tenant, Tier } from "./types.js";
import { applyTierUpdate, parseTierCreate, type TierDraft, type TierInput } from "./validation.js";

/** Keyset page of a list: at most `limit` items whose sort key is after `after`. */
export interface ListPage {
  limit: number;
  after: string | null;
}

export type TierWriteResult = { ok: true; tier: Tier } | { ok: false; reason: "NOT_FOUND" | "NAME_TAKEN" };

export interface TierRepository {
  get(id: string): Promise<Tier | null>;
  /** Ordered by name (names are unique), names strictly after `page.after`. */
  list(page: ListPage): Promise<Tier[]>;
  insert(tier: Tier): Promise<TierWriteResult>;
  /**
   * Reads the tier under a row lock, stores what `change` returns and returns the stored tier.
   * If `change` throws, nothing is written. Concurrent partial updates therefore compose
   * instead of the later one silently undoing the earlier.
   */
  update(id: string, change: (current: Tier) => Tier): Promise<TierWriteResult>;
}

export interface TiersServiceOptions {
  repo: TierRepository;
  /** To scope tenant-bound actors to their own tenant's tier. */
  tenants: { get(id: string): Promise<Tenant | null> };
  audit: AuditLog;
  /** Every replica's hot-path cache drops the tier on this message. */
  invalidation: { publish(kind: "tier", id: string): Promise<void> };
  clock: Clock;
}

/** Only ADMIN changes tiers; the resolvers gate by role too, this keeps the domain safe on its own. */
export function assertAdmin(actor: Actor): void {
  if (actor.role !== "ADMIN") throw forbidden(`role ${actor.role} may not change tenancy configuration`);
}

function draftOf(t: Tier): TierDraft {
  const { id: _id, createdAt: _c, updatedAt: _u, ...draft } = t;
  return draft;
}

/**
 * Tiers: the policy templates tenants are placed on. Operators (ADMIN) write them; everyone
 * who may see a tenant may see its tier. A tenant-bound actor (TENANT_ADMIN, or a GATEWAY or
 * BILLING credential bound to one tenant) sees only its own tenant's tier: other tiers are
 * often named after other customers and carry their commercial terms, so they read as unknown.
 */
export class TiersService {
  constructor(private readonly opts: TiersServiceOptions) {}

  /** Plain read for the hot-path cache and other services: no actor, no scoping. */
  async getTier(id: string): Promise<Tier | null> {
    if (!isIdOf("tier", id)) return null;
    return this.opts.repo.get(id);
  }

  async tier(actor: Actor, id: string): Promise<Tier> {
    const tier = await this.getTier(id);
    if (!tier || !(await this.visible(actor, tier))) throw notFound("tier", id);
    return tier;
  }

  /** `page.limit` rows at most; the transport asks for one more than it shows to learn hasNextPage. */
  async tiers(actor: Actor, page: ListPage): Promise<Tier[]> {
    if (actor.tenantId === null) return this.opts.repo.list(page);
    const own = await this.ownTier(actor.tenantId);
    if (!own || (page.after !== null && own.name <= page.after) || page.limit < 1) return [];
    return [own];
  }

  async createTier(actor: Actor, input: TierInput): Promise<Tier> {
    assertAdmin(actor);
    const draft = parseTierCreate(input);
    const now = this.opts.clock.now();
    const result = await this.opts.repo.insert({ ...draft, id: newId("tier"), createdAt: now, updatedAt: now });
    if (!result.ok) throw badInput("input.name", `a tier named ${JSON.stringify(draft.name)} already exists`);
    await this.changed(actor, "tier.create", result.tier, { tier: draft });
    return result.tier;
  }

  /** Partial update: absent fields keep their value; a given object or list replaces the old one whole. */
  async updateTier(actor: Actor, id: string, input: TierInput): Promise<Tier> {
    assertAdmin(actor);
    if (!isIdOf("tier", id)) throw notFound("tier", id);
    const now = this.opts.clock.now();
    const result = await this.opts.repo.update(id, (current) => ({
      ...applyTierUpdate(draftOf(current), input),
      id: current.id,
      createdAt: current.createdAt,
      updatedAt: now,
    }));
    if (!result.ok) {
      if (result.reason === "NOT_FOUND") throw notFound("tier", id);
      throw badInput("input.name", `a tier named ${JSON.stringify(input.name)} already exists`);
    }
    const changes = Object.fromEntries(
      Object.keys(input)
        .filter((k) => (input as Record<string, unknown>)[k] !== undefined)
        .map((k) => [k, (result.tier as unknown as Record<string, unknown>)[k]]),
    );
    await this.changed(actor, "tier.update", result.tier, { changes });
    return result.tier;
  }

  private async ownTier(tenantId: string): Promise<Tier | null> {
    const tenant = await this.opts.tenants.get(tenantId);
    return tenant ? this.opts.repo.get(tenant.tierId) : null;
  }

  private async visible(actor: Actor, tier: Tier): Promise<boolean> {
    if (actor.tenantId === null) return true;
    const tenant = await this.opts.tenants.get(actor.tenantId);
    return tenant !== null && tenant.tierId === tier.id;
  }

  /**
   * After the write commits: invalidate first (a limit change must reach every replica within
   * seconds), then audit. An audit failure surfaces as an error even though the change stands,
   * so a missing audit entry is never silent.
   */
  private async changed(actor: Actor, action: string, tier: Tier, details: Record<string, unknown>): Promise<void> {
    await this.opts.invalidation.publish("tier", tier.id);
    await this.opts.audit.record({
      actor: { kind: actor.kind, id: actor.id },
      action,
      tenantId: null,
      targetType: "tier",
      targetId: tier.id,
      details,
    });
  }
}
