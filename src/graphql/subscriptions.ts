import type http from "node:http";
import { randomUUID } from "node:crypto";
import { WebSocketServer, type WebSocket } from "ws";
import { useServer } from "graphql-ws/use/ws";
import { CloseCode } from "graphql-ws";
import { GraphQLError, getOperationAST, parse, specifiedRules, validate, type DocumentNode, type GraphQLSchema } from "graphql";
import { measureComplexity } from "./complexity-cache.js";
import type { Logger } from "../lib/logger.js";
import type { Services } from "../compose.js";
import type { Actor } from "../domain/tenancy/types.js";
import { ErrorCode, isDomainError } from "../lib/errors.js";
import type { GraphQLContext } from "./context.js";
import { makeFormatError } from "./errors.js";
import { depthLimitRule } from "./guards.js";

/**
 * GraphQL subscriptions over graphql-ws, on the HTTP server's own port and path (/graphql).
 *
 * Authentication happens once, at `connection_init` (payload `{ authorization: "Bearer …" }`),
 * with the same Authenticator as HTTP; the resulting Actor is every operation's context, so role
 * (`@Authorized`) and tenant checks run exactly as for queries. A connection lives on only while
 * its credential does: a credential invalidation (revocation, on any replica, arrives through
 * the invalidation bus) makes us re-authenticate that connection's token, and a token that no
 * longer authenticates closes the socket with 4403. Every connection is also re-checked every
 * CACHE_TTL_MS, the bound the HTTP path has too, which covers a lost message and JWT expiry.
 *
 * Only subscriptions are served here: queries and mutations go over HTTP, where the body limit,
 * CSRF prevention and the request-id plumbing live.
 */

export interface SubscriptionServerOptions {
  httpServer: http.Server;
  schema: GraphQLSchema;
  services: Services;
  logger: Logger;
  path: string;
  maxDepth: number;
  maxComplexity: number;
  maxPayloadBytes: number;
  /** How often every connection's credential is re-checked (CACHE_TTL_MS). */
  recheckMs: number;
}

export interface SubscriptionServer {
  readonly connectionCount: number;
  /** Closes every socket (1001 Going away) and stops accepting upgrades. */
  close(): Promise<void>;
}

interface Connection {
  id: string;
  socket: WebSocket;
  authorization: string;
  actor: Actor;
  sourceIp: string | null;
}

/** Close reasons are at most 123 bytes on the wire. */
function closeReason(s: string): string {
  const b = Buffer.from(s, "utf8");
  return b.length <= 120 ? s : `${b.subarray(0, 117).toString("utf8").replace(/\uFFFD$/, "")}...`;
}

const sameActor = (a: Actor, b: Actor) => a.id === b.id && a.role === b.role && a.tenantId === b.tenantId;

export function attachSubscriptionServer(o: SubscriptionServerOptions): SubscriptionServer {
  const { services, logger, schema } = o;
  const connections = new Map<WebSocket, Connection>();
  const formatError = makeFormatError({ onInternal: (err) => logger.error({ err }, "internal error in a subscription") });
  const wss = new WebSocketServer({ server: o.httpServer, path: o.path, maxPayload: o.maxPayloadBytes });

  const revoke = (c: Connection, why: string) => {
    connections.delete(c.socket);
    logger.info({ connection: c.id, actor: c.actor.id }, `closing subscription socket: ${why}`);
    c.socket.close(CloseCode.Forbidden, closeReason(`Forbidden: ${why}`));
  };

  const recheck = async (c: Connection): Promise<void> => {
    try {
      const actor = await services.auth.authenticate(c.authorization, c.sourceIp);
      if (!actor || !sameActor(actor, c.actor)) revoke(c, "the credential changed");
    } catch (err) {
      if (isDomainError(err) && err.code === ErrorCode.UNAUTHENTICATED) revoke(c, err.message);
      // Otherwise we could not check (store or IdP down): keep the socket, check again later.
      else logger.warn({ err: (err as Error).message, connection: c.id }, "could not re-check a subscription credential");
    }
  };

  const stopListening = services.invalidation.onInvalidate((m) => {
    if (m.kind !== "credential" && m.kind !== "all") return;
    // Deferred: the authenticator drops its cached entry in its own listener of this message.
    setImmediate(() => {
      for (const c of connections.values()) if (m.kind === "all" || c.actor.id === m.id) void recheck(c);
    });
  });
  const timer = setInterval(() => {
    for (const c of connections.values()) void recheck(c);
  }, o.recheckMs);
  timer.unref();

  const tooComplex = (message: string) => new GraphQLError(message, { extensions: { code: "QUERY_TOO_COMPLEX" } });

  const server = useServer<Record<string, unknown>, { connection: Connection }>(
    {
      schema,
      isProd: true,
      connectionInitWaitTimeout: 5_000,
      async onConnect(ctx) {
        const socket = ctx.extra.socket;
        const sourceIp = ctx.extra.request.socket.remoteAddress ?? null;
        const raw = ctx.connectionParams?.authorization;
        if (typeof raw !== "string" || raw === "") {
          socket.close(CloseCode.Forbidden, 'Forbidden: connection_init must carry { authorization: "Bearer <token>" }');
          return false;
        }
        let actor: Actor | null;
        try {
          actor = await services.auth.authenticate(raw, sourceIp);
        } catch (err) {
          if (isDomainError(err) && err.code === ErrorCode.BACKEND_UNAVAILABLE) {
            socket.close(1013, closeReason(`Try again later: ${err.message}`));
          } else {
            socket.close(CloseCode.Forbidden, closeReason(`Forbidden: ${isDomainError(err) ? err.message : "authentication failed"}`));
            if (!isDomainError(err)) logger.error({ err }, "subscription authentication failed unexpectedly");
          }
          return false;
        }
        if (!actor) return false;
        const connection: Connection = { id: randomUUID(), socket, authorization: raw, actor, sourceIp };
        ctx.extra.connection = connection;
        connections.set(socket, connection);
        return true;
      },
      onClose(ctx) {
        connections.delete(ctx.extra.socket);
      },
      onSubscribe(ctx, id, payload) {
        const connection = ctx.extra.connection;
        // graphql-ws only calls this after a successful onConnect; kept as a hard guard.
        if (!connection || !connections.has(ctx.extra.socket)) return [new GraphQLError("not authenticated", { extensions: { code: "UNAUTHENTICATED" } })];
        let document: DocumentNode;
        try {
          document = parse(payload.query);
        } catch (err) {
          return [err instanceof GraphQLError ? err : new GraphQLError("could not parse the query")];
        }
        const errors = validate(schema, document, [...specifiedRules, depthLimitRule(o.maxDepth)]);
        if (errors.length > 0) return errors;
        const operation = getOperationAST(document, payload.operationName);
        if (!operation) return [new GraphQLError("Unable to identify operation")];
        if (operation.operation !== "subscription") {
          return [
            new GraphQLError("only subscriptions are served over WebSocket; send queries and mutations as HTTP POST to /graphql", {
              extensions: { code: "BAD_REQUEST" },
            }),
          ];
        }
        const verdict = measureComplexity({
          schema,
          document,
          operation,
          operationName: payload.operationName,
          variables: payload.variables,
          maxComplexity: o.maxComplexity,
        });
        if (verdict.kind === "badVariables") return [...verdict.errors];
        if (verdict.kind === "tooComplex") return [tooComplex(verdict.message)];
        const requestId = `${connection.id}:${id}`;
        const contextValue: GraphQLContext = {
          requestId,
          actor: connection.actor,
          services,
          log: logger.child({ requestId }),
          sourceIp: connection.sourceIp,
        };
        return { schema, document, operationName: payload.operationName, variableValues: payload.variables, contextValue };
      },
      // Errors go through the same formatError as HTTP: domain codes kept, faults masked.
      onNext(_ctx, _id, _payload, _args, result) {
        if (!result.errors?.length) return undefined;
        return { ...result, errors: result.errors.map((e) => formatError(e.toJSON(), e)) } as unknown as typeof result;
      },
      onError(_ctx, _id, _payload, errors) {
        return errors.map((e) => formatError(e.toJSON(), e));
      },
    },
    wss,
  );

  return {
    get connectionCount() {
      return connections.size;
    },
    async close() {
      clearInterval(timer);
      stopListening();
      // dispose() asks every client to close and waits for them; one that never answers would
      // hold the drain for ws's 30 s close timeout, so after a second it is cut off.
      const cutOff = setTimeout(() => {
        for (const c of wss.clients) c.terminate();
      }, 1_000);
      try {
        await server.dispose();
      } finally {
        clearTimeout(cutOff);
      }
    },
  };
}
