import type { NonEmptyArray } from "type-graphql";
import { HealthResolver } from "./health.resolver.js";
import { ApiKeyResolver } from "./api-key.resolver.js";
import { CredentialResolver } from "./credential.resolver.js";
import { EnforcementResolver } from "./enforcement.resolver.js";
import { TierResolver } from "./tier.resolver.js";
import { TenantResolver } from "./tenant.resolver.js";
import { ModelResolver } from "./model.resolver.js";
import { AbuseResolver } from "./abuse.resolver.js";
import { EventResolver } from "./event.resolver.js";
import { WebhookResolver } from "./webhook.resolver.js";
import { UsageResolver } from "./usage.resolver.js";

/**
 * Every resolver class of the API. A class missing here is missing from the schema (and the
 * emitted SDL test would show it), so add new ones in this one list.
 */
export const resolvers: NonEmptyArray<Function> = [
  HealthResolver,
  ApiKeyResolver,
  CredentialResolver,
  EnforcementResolver,
  TierResolver,
  TenantResolver,
  ModelResolver,
  AbuseResolver,
  EventResolver,
  WebhookResolver,
  UsageResolver,
];
