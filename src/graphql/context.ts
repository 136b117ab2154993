import type { Logger } from "../lib/logger.js";
import type { Actor } from "../domain/tenancy/types.js";
import type { Services } from "../compose.js";

/** Per-request context: who is calling, the long-lived services, and a request-scoped logger. */
export interface GraphQLContext {
  requestId: string;
  actor: Actor | null;
  services: Services;
  log: Logger;
  /** Client address as seen by this service (for failed-auth throttling and audit). */
  sourceIp: string | null;
}
