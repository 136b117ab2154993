import type { Actor } from "../tenancy/types.js";
import type { AuditLog } from "../abuse/audit.js";
import type { Clock } from "../../lib/clock.js";
import { badInput, forbidden, notFound } from "../../lib/errors.js";
import { isIdOf, newId } from "../../lib/ids.js";
import { assertTenantVisible } from "../tenancy/access.js";
import { isQuotaEventType, QUOTA_EVENT_TYPES } from "./outbox.js";
import type { QuotaEventType } from "./types.js";
import { generateWebhookSecret, type WebhookSecretBox } from "./webhook-secrets.js";
import type { WebhookTargetPolicy } from "./webhook-targets.js";
import type { WebhookDelivery, WebhookEndpoint } from "./webhooks.types.js";

/**
 * Webhook endpoints: registered by an operator (or a tenant admin for its own tenant), sent
 * every matching published event, signed per Standard Webhooks. The signing secret is shown
 * once (create, rotate) and stored sealed. Delivery itself is webhook-delivery.ts.
 */

export const MAX_ROTATION_OVERLAP_SECONDS = 30 * 24 * 3600;
export const DEFAULT_ROTATION_OVERLAP_SECONDS = 24 * 3600;

/** Storage port. Implemented by src/storage/postgres/webhooks.repository.ts. */
export interface WebhookRepository {
  tenantExists(tenantId: string): Promise<boolean>;
  insert(endpoint: WebhookEndpoint, sealedSecret: string): Promise<WebhookEndpoint>;
  /** Any status, DELETED included. */
  findById(id: string): Promise<WebhookEndpoint | null>;
  /**
   * Makes `sealedSecret` current; the old current secret signs too until `previousExpiresAt`
   * (null: dropped at once). Null when the endpoint is unknown or DELETED.
   */
  rotateSecret(id: string, sealedSecret: string, previousExpiresAt: Date | null, at: Date): Promise<WebhookEndpoint | null>;
  /** DELETED, secrets wiped, pending deliveries CANCELLED. Null when unknown or already DELETED. */
  markDeleted(id: string, at: Date): Promise<WebhookEndpoint | null>;
  /** Endpoints that are not DELETED, ordered by id; `tenantId` null lists every one. */
  list(q: { tenantId: string | null; afterId: string | null; limit: number }): Promise<WebhookEndpoint[]>;
  /** An endpoint's deliveries, newest first (seq descending), strictly before `beforeSeq`. */
  deliveries(endpointId: string, beforeSeq: bigint | null, limit: number): Promise<WebhookDelivery[]>;
}

export interface WebhookServiceOptions {
  repository: WebhookRepository;
  secrets: WebhookSecretBox;
  targets: WebhookTargetPolicy;
  audit: AuditLog;
  clock: Clock;
}

export interface NewWebhookEndpointInput {
  url: string;
  tenantId: string | null;
  eventTypes: string[] | null;
}

export interface WebhookEndpointWithSecret {
  endpoint: WebhookEndpoint;
  /** `whsec_…`: shown only in this response. */
  secret: string;
}

function requireManager(actor: Actor): void {
  if (actor.role !== "ADMIN" && actor.role !== "TENANT_ADMIN") throw forbidden(`role ${actor.role} may not manage webhook endpoints`);
}

function validateEventTypes(v: string[] | null): QuotaEventType[] | null {
  if (v === null) return null;
  if (v.length === 0) throw badInput("input.eventTypes", "must name at least one event type, or be null for all");
  const out: QuotaEventType[] = [];
  for (const [i, t] of v.entries()) {
    if (!isQuotaEventType(t)) throw badInput("input.eventTypes", `entry ${i} ("${t.slice(0, 50)}") is not one of ${QUOTA_EVENT_TYPES.join(", ")}`);
    if (!out.includes(t)) out.push(t);
  }
  return out;
}

export class WebhookService {
  constructor(private readonly opts: WebhookServiceOptions) {}

  async create(actor: Actor, input: NewWebhookEndpointInput): Promise<WebhookEndpointWithSecret> {
    requireManager(actor);
    let tenantId = input.tenantId === "" ? null : input.tenantId;
    if (actor.tenantId !== null) {
      // A tenant admin's endpoints are its own tenant's; it cannot ask for everyone's events.
      tenantId ??= actor.tenantId;
      assertTenantVisible(actor, tenantId, "tenant", tenantId);
    }
    if (tenantId !== null && (!isIdOf("tenant", tenantId) || !(await this.opts.repository.tenantExists(tenantId)))) {
      throw notFound("tenant", tenantId);
    }
    const eventTypes = validateEventTypes(input.eventTypes);
    const url = this.opts.targets.parseUrl(input.url, "input.url");
    const target = await this.opts.targets.resolve(url);
    if (!target.ok) throw badInput("input.url", target.reason);

    const now = this.opts.clock.now();
    const id = newId("webhook");
    const secret = generateWebhookSecret();
    const endpoint = await this.opts.repository.insert(
      {
        id,
        tenantId,
        url: url.toString(),
        eventTypes,
        status: "ACTIVE",
        disabledReason: null,
        secretRotatedAt: null,
        previousSecretExpiresAt: null,
        createdAt: now,
        updatedAt: now,
      },
      this.opts.secrets.seal(secret, id),
    );
    await this.opts.audit.record({
      actor,
      action: "webhook.create",
      tenantId,
      targetType: "webhookEndpoint",
      targetId: id,
      details: { url: endpoint.url, eventTypes },
    });
    return { endpoint, secret };
  }

  /**
   * A new secret, shown once. For `overlapSeconds` (default a day) every message carries two
   * signatures, new and old, so the receiver can switch secrets whenever it likes in that time.
   */
  async rotateSecret(actor: Actor, id: string, overlapSeconds: number = DEFAULT_ROTATION_OVERLAP_SECONDS): Promise<WebhookEndpointWithSecret> {
    requireManager(actor);
    if (!Number.isInteger(overlapSeconds) || overlapSeconds < 0 || overlapSeconds > MAX_ROTATION_OVERLAP_SECONDS) {
      throw badInput("overlapSeconds", `must be a whole number of seconds between 0 and ${MAX_ROTATION_OVERLAP_SECONDS} (30 days)`);
    }
    await this.visible(actor, id);
    const now = this.opts.clock.now();
    const secret = generateWebhookSecret();
    const previousExpiresAt = overlapSeconds === 0 ? null : new Date(now.getTime() + overlapSeconds * 1000);
    const endpoint = await this.opts.repository.rotateSecret(id, this.opts.secrets.seal(secret, id), previousExpiresAt, now);
    if (!endpoint) throw notFound("webhook endpoint", id);
    await this.opts.audit.record({
      actor,
      action: "webhook.rotateSecret",
      tenantId: endpoint.tenantId,
      targetType: "webhookEndpoint",
      targetId: id,
      details: { overlapSeconds },
    });
    return { endpoint, secret };
  }

  async delete(actor: Actor, id: string): Promise<WebhookEndpoint> {
    requireManager(actor);
    await this.visible(actor, id);
    const endpoint = await this.opts.repository.markDeleted(id, this.opts.clock.now());
    if (!endpoint) throw notFound("webhook endpoint", id);
    await this.opts.audit.record({ actor, action: "webhook.delete", tenantId: endpoint.tenantId, targetType: "webhookEndpoint", targetId: id, details: { url: endpoint.url } });
    return endpoint;
  }

  /** Up to `first + 1` endpoints ordered by id (the extra one signals a next page). */
  async list(actor: Actor, q: { tenantId: string | null; after: string | null; first: number }): Promise<WebhookEndpoint[]> {
    requireManager(actor);
    let tenantId = q.tenantId === "" ? null : q.tenantId;
    if (tenantId !== null) assertTenantVisible(actor, tenantId, "tenant", tenantId);
    tenantId ??= actor.tenantId;
    return this.opts.repository.list({ tenantId, afterId: q.after, limit: q.first + 1 });
  }

  /** Up to `first + 1` deliveries, newest first; `after` is the seq of the last one seen. */
  async deliveries(actor: Actor, endpointId: string, q: { after: string | null; first: number }): Promise<WebhookDelivery[]> {
    requireManager(actor);
    await this.visible(actor, endpointId, { includeDeleted: true });
    let before: bigint | null = null;
    if (q.after !== null) {
      if (!/^\d{1,19}$/.test(q.after)) throw badInput("after", "is not a cursor this API issued");
      before = BigInt(q.after);
    }
    return this.opts.repository.deliveries(endpointId, before, q.first + 1);
  }

  /** The endpoint, if the actor may see it; NOT_FOUND otherwise (unknown and foreign read alike). */
  private async visible(actor: Actor, id: string, o: { includeDeleted?: boolean } = {}): Promise<WebhookEndpoint> {
    const e = isIdOf("webhook", id) ? await this.opts.repository.findById(id) : null;
    if (!e || (e.status === "DELETED" && !o.includeDeleted)) throw notFound("webhook endpoint", id);
    // An every-tenant endpoint belongs to no tenant: only unbound actors (ADMIN) see it.
    if (e.tenantId === null ? actor.tenantId !== null : actor.tenantId !== null && actor.tenantId !== e.tenantId) {
      throw notFound("webhook endpoint", id);
    }
    return e;
  }
}
