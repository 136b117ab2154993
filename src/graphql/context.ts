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

/**
 * The context of one HTTP request. Its logger is built on first use (most requests never log),
 * by a getter on the prototype: Apollo copies the context for each operation with
 * Object.assign, which reads every own property, so an own `get log()` built a pino child
 * logger for every request after all. Own fields are plain values.
 */
export class HttpRequestContext implements GraphQLContext {
  private child: Logger | undefined;

  constructor(
    readonly requestId: string,
    readonly actor: Actor | null,
    readonly services: Services,
    readonly sourceIp: string | null,
    private readonly logger: Logger,
  ) {}

  get log(): Logger {
    return (this.child ??= this.logger.child({ requestId: this.requestId }));
  }
}
