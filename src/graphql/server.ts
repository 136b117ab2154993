import http from "node:http";
import net from "node:net";
import { randomUUID } from "node:crypto";
import { ApolloServer, HeaderMap, type ApolloServerPlugin } from "@apollo/server";
import { ApolloServerPluginCacheControlDisabled, ApolloServerPluginLandingPageDisabled } from "@apollo/server/plugin/disabled";
import { GraphQLError, type GraphQLSchema } from "graphql";
import type { Logger } from "../lib/logger.js";
import { isDomainError } from "../lib/errors.js";
import { HttpRequestContext, type GraphQLContext } from "./context.js";
import type { Services } from "../compose.js";
import { makeFormatError } from "./errors.js";
import { depthLimitRule } from "./guards.js";
import { ComplexityCache, measureComplexity } from "./complexity-cache.js";
import { jitExecution, type JitExecution, type KnownOperation } from "./jit-executor.js";
import { attachSubscriptionServer } from "./subscriptions.js";

export interface ApiServerOptions {
  schema: GraphQLSchema;
  services: Services;
  logger: Logger;
  introspection: boolean;
  maxDepth: number;
  maxComplexity: number;
  maxBodyBytes: number;
  /** Compiled execution for the hot operations (graphql-jit); see jit-executor.ts. */
  jit?: boolean;
  /** Extra Apollo plugins (e.g. operation metrics), run after the built-in ones. */
  plugins?: ApolloServerPlugin<GraphQLContext>[];
  /** Told of each hot operation answered before Apollo (which its plugins never see): metrics. */
  observeOperation?: (operation: string, type: string, status: "ok", seconds: number) => void;
  /** Extra plain-HTTP routes (e.g. /metrics), answered before GraphQL. */
  routes?: Record<string, (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>>;
}

export interface ApiServer {
  apollo: ApolloServer<GraphQLContext>;
  /** Compiled execution, when on: its counters say how hot operations were answered. */
  jit: JitExecution | null;
  http: http.Server;
  listen(port: number, host: string): Promise<number>;
  /** Stop accepting, let in-flight requests finish, then stop Apollo. */
  close(): Promise<void>;
}

class BodyTooLarge extends Error {}

/** How long close() lets in-flight requests finish (below the usual 30 s kill deadline). */
const DRAIN_GRACE_MS = 20_000;
/** How long close() leaves idle keep-alive sockets open, for requests already on their way. */
const IDLE_SOCKET_GRACE_MS = 250;

/**
 * Reads the body, refusing it as soon as it is known to exceed `limit` (declared length, or
 * bytes seen so far for chunked bodies), so an oversized body is never buffered whole.
 * On refusal the stream is left to the HTTP server, which discards the rest while the 413 goes
 * out: destroying the socket here would reset the connection before the caller saw why.
 */
function readBody(req: http.IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > limit) return reject(new BodyTooLarge());
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.off("data", onData);
        chunks.length = 0;
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(c);
    };
    req.on("data", onData);
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

/**
 * A gateway's own request id is kept so one id follows a request across systems, but only in
 * a plain token shape: it is echoed in a header and written to logs, where quotes, spaces or
 * markup from a caller would be an injection vector. Anything else gets a fresh UUID.
 */
function callerRequestId(header: string | string[] | undefined): string | null {
  return typeof header === "string" && /^[A-Za-z0-9._:-]{1,128}$/.test(header) ? header : null;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const s = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(s), ...headers });
  res.end(s);
}

/** The content type Apollo answers a single result with when the caller accepts JSON. */
const JSON_UTF8 = "application/json; charset=utf-8";

/**
 * A hot operation Apollo has answered before, if this request names one and Apollo would treat
 * it exactly as then: a POST of `application/json` (so Apollo's CSRF check passes), an Accept
 * that Apollo answers with JSON_UTF8, no extensions (persisted queries), and an operation name
 * and variables of the types Apollo accepts. Anything else, however close, goes to Apollo.
 */
function knownRequest(jit: JitExecution, req: http.IncomingMessage, parsed: unknown): { operation: KnownOperation; variables: Record<string, unknown> } | undefined {
  if (req.method !== "POST" || parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return undefined;
  const ct = req.headers["content-type"];
  if (ct !== "application/json" && ct !== "application/json; charset=utf-8") return undefined;
  const accept = req.headers.accept;
  if (accept !== undefined && accept !== "*/*" && accept !== "application/json") return undefined;
  const body = parsed as Record<string, unknown>;
  if (typeof body.query !== "string" || body.extensions !== undefined) return undefined;
  const name = body.operationName ?? null;
  if (name !== null && typeof name !== "string") return undefined;
  const v = body.variables ?? null;
  if (v !== null && (typeof v !== "object" || Array.isArray(v))) return undefined;
  const operation = jit.known(body.query, name);
  return operation ? { operation, variables: (v ?? {}) as Record<string, unknown> } : undefined;
}

/**
 * Apollo Server behind a lean node:http integration (no Express): body-size limit enforced
 * while streaming, request ids, authentication before execution, and masked errors.
 */
export async function createApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const { logger } = opts;

  const tooComplex = (message: string) =>
    new GraphQLError(message, { extensions: { code: "QUERY_TOO_COMPLEX", http: { status: 400 } } });

  const measured = new ComplexityCache(opts.schema);
  const complexityPlugin: ApolloServerPlugin<GraphQLContext> = {
    async requestDidStart() {
      return {
        async didResolveOperation({ request, document, operation, schema }) {
          const known = measured.get(document, request.operationName ?? null);
          if (known !== undefined) {
            if (known > opts.maxComplexity) throw tooComplex(`query complexity ${known} exceeds the maximum of ${opts.maxComplexity}`);
            return;
          }
          const verdict = measureComplexity({
            schema,
            document,
            operation,
            operationName: request.operationName,
            variables: request.variables,
            maxComplexity: opts.maxComplexity,
          });
          // Variables that do not coerce are the caller's error and stop execution anyway;
          // leave them to graphql-js (BAD_USER_INPUT, 400) instead of failing them here.
          if (verdict.kind === "badVariables") return;
          if (verdict.kind === "tooComplex") throw tooComplex(verdict.message);
          measured.set(document, request.operationName ?? null, verdict.complexity);
        },
      };
    },
  };

  // Internal errors are logged with the request id, and the id is added to the masked error.
  const requestIdPlugin: ApolloServerPlugin<GraphQLContext> = {
    async requestDidStart({ contextValue }) {
      return {
        async didEncounterErrors({ errors }) {
          for (const e of errors) {
            const original = e.originalError;
            if (original && !(original instanceof GraphQLError) && !isDomainError(original)) {
              contextValue.log.error({ err: original, requestId: contextValue.requestId }, "internal error");
            }
          }
        },
        async willSendResponse({ response }) {
          if (response.body.kind !== "single") return;
          for (const err of response.body.singleResult.errors ?? []) {
            if (err.extensions?.code === "INTERNAL_SERVER_ERROR") {
              (err.extensions as Record<string, unknown>).requestId = contextValue.requestId;
            }
          }
        },
      };
    },
  };

  const jit = opts.jit ? jitExecution(opts.schema) : null;
  const apollo = new ApolloServer<GraphQLContext>({
    ...(jit ? { gateway: jit.gateway } : { schema: opts.schema }),
    introspection: opts.introspection,
    // main.ts owns SIGTERM/SIGINT and the drain order. Apollo's own handler (on outside
    // NODE_ENV=test) would stop Apollo mid-drain and then re-send the signal to the process.
    stopOnTerminationSignals: false,
    csrfPrevention: true,
    allowBatchedHttpRequests: false,
    includeStacktraceInErrorResponses: false,
    validationRules: [depthLimitRule(opts.maxDepth)],
    formatError: makeFormatError({ onInternal: () => {} }),
    // Cache control would wrap every resolver to collect hints for HTTP caching, which nothing
    // here uses (mutations and private data): disabled, it costs nothing per field.
    plugins: [
      complexityPlugin,
      requestIdPlugin,
      ApolloServerPluginLandingPageDisabled(),
      ApolloServerPluginCacheControlDisabled(),
      ...(opts.plugins ?? []),
      // Apollo asks for responseForOperation after every plugin's didResolveOperation (the
      // complexity limit above, operation metrics): the compiled answer comes after those.
      ...(jit ? [jit.plugin as ApolloServerPlugin<GraphQLContext>] : []),
    ],
    logger: {
      debug: (m) => logger.debug(m),
      info: (m) => logger.info(m),
      warn: (m) => logger.warn(m),
      error: (m) => logger.error(m),
    },
  });
  await apollo.start();

  const handler = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const requestId = callerRequestId(req.headers["x-request-id"]) ?? randomUUID();
    res.setHeader("x-request-id", requestId);
    // The hot path's own URL is split by hand; anything else (encoded or dot segments, an
    // absolute-form target) still goes through the URL parser.
    const rawUrl = req.url ?? "/";
    const url = rawUrl === "/graphql" || rawUrl.startsWith("/graphql?") ? { pathname: "/graphql", search: rawUrl.slice(8) } : new URL(rawUrl, "http://localhost");
    const route = opts.routes?.[url.pathname];
    if (route) return route(req, res);
    if (url.pathname === "/healthz") return sendJson(res, 200, { ok: true });
    if (url.pathname !== "/graphql") return sendJson(res, 404, { error: "not found" });

    let body: string;
    try {
      body = req.method === "POST" ? await readBody(req, opts.maxBodyBytes) : "";
    } catch (e) {
      if (e instanceof BodyTooLarge) {
        return sendJson(res, 413, {
          errors: [{ message: `request body exceeds the limit of ${opts.maxBodyBytes} bytes (MAX_BODY_BYTES)`, extensions: { code: "BAD_REQUEST" } }],
        }, { connection: "close" });
      }
      return sendJson(res, 400, { errors: [{ message: "could not read request body", extensions: { code: "BAD_REQUEST" } }] });
    }

    const sourceIp = req.socket.remoteAddress ?? null;
    let actor: GraphQLContext["actor"];
    try {
      actor = await opts.services.auth.authenticate(req.headers.authorization, sourceIp);
    } catch (e) {
      if (isDomainError(e)) {
        const status = e.code === "UNAUTHENTICATED" ? 401 : e.code === "BACKEND_UNAVAILABLE" ? 503 : 403;
        return sendJson(res, status, { errors: [{ message: e.message, extensions: { code: e.code, retryable: e.retryable } }] });
      }
      logger.error({ err: e, requestId }, "authentication failed unexpectedly");
      return sendJson(res, 500, { errors: [{ message: "Internal server error", extensions: { code: "INTERNAL_SERVER_ERROR", requestId } }] });
    }

    let parsed: unknown = undefined;
    if (body.length > 0) {
      const ct = req.headers["content-type"] ?? "";
      if (ct.includes("json")) {
        try {
          parsed = JSON.parse(body);
        } catch {
          return sendJson(res, 400, { errors: [{ message: "request body is not valid JSON", extensions: { code: "BAD_REQUEST" } }] });
        }
      } else {
        parsed = body;
      }
    }

    // A hot operation whose exact text Apollo has already answered runs before Apollo's request
    // pipeline (jit-executor.ts): only a POST whose answer Apollo would write the same way.
    let context: HttpRequestContext | undefined;
    const known = jit ? knownRequest(jit, req, parsed) : undefined;
    if (known) {
      const started = performance.now();
      context = new HttpRequestContext(requestId, actor, opts.services, sourceIp, logger);
      const result = await jit!.runKnown(known.operation, context, known.variables);
      if (result) {
        // What Apollo writes for an answer without errors: its default stringifyResult.
        const s = `${JSON.stringify({ data: result.data })}\n`;
        res.writeHead(200, { "content-type": JSON_UTF8, "content-length": String(Buffer.byteLength(s)) });
        res.end(s);
        opts.observeOperation?.(known.operation.label, known.operation.type, "ok", (performance.now() - started) / 1000);
        return;
      }
      // Errors: kept for this context; Apollo words them without running the operation again.
    }

    const headers = new HeaderMap();
    for (const [k, v] of Object.entries(req.headers)) {
      if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(", ") : v);
    }
    const result = await apollo.executeHTTPGraphQLRequest({
      httpGraphQLRequest: { method: (req.method ?? "GET").toUpperCase(), headers, search: url.search, body: parsed },
      context: async () => context ?? new HttpRequestContext(requestId, actor, opts.services, sourceIp, logger),
    });
    const outHeaders: Record<string, string> = {};
    for (const [k, v] of result.headers) outHeaders[k] = v;
    if (result.body.kind === "complete") {
      // Added in place: `{ ...outHeaders, "content-length": … }` would give every response's
      // headers object a V8 map of its own (see archiveEntry in the enforcement service).
      outHeaders["content-length"] = String(Buffer.byteLength(result.body.string));
      res.writeHead(result.status ?? 200, outHeaders);
      res.end(result.body.string);
    } else {
      res.writeHead(result.status ?? 200, outHeaders);
      for await (const chunk of result.body.asyncIterator) res.write(chunk);
      res.end();
    }
  };

  // Set by close(). A keep-alive client (every gateway's connection pool) would otherwise keep
  // its sockets busy forever and server.close() would never finish: while draining, each
  // response says "Connection: close", so every socket ends after the request it is serving.
  let draining = false;
  const server = http.createServer((req, res) => {
    if (draining) res.setHeader("connection", "close");
    handler(req, res).catch((err) => {
      // The handler set x-request-id first thing: the masked answer and the log line carry it,
      // so a caller's report leads to the cause here too.
      const requestId = res.getHeader("x-request-id");
      logger.error({ err, requestId }, "unhandled http error");
      if (!res.headersSent) sendJson(res, 500, { errors: [{ message: "Internal server error", extensions: { code: "INTERNAL_SERVER_ERROR", requestId } }] });
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 65_000;
  // graphql-ws on the same port and path: upgrades of /graphql become subscription sockets.
  const subscriptions = attachSubscriptionServer({
    httpServer: server,
    schema: opts.schema,
    services: opts.services,
    logger,
    path: "/graphql",
    maxDepth: opts.maxDepth,
    maxComplexity: opts.maxComplexity,
    maxPayloadBytes: opts.maxBodyBytes,
    recheckMs: opts.services.config.cacheTtlMs,
  });

  return {
    apollo,
    jit,
    http: server,
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          const addr = server.address();
          resolve(typeof addr === "object" && addr ? addr.port : port);
        });
      });
    },
    async close() {
      // Sockets first: server.close() waits for every connection, upgraded ones included.
      await subscriptions.close();
      draining = true;
      await new Promise<void>((resolve) => {
        // A request still running after the grace period loses its socket rather than holding
        // the process past the orchestrator's kill deadline (a commit cut here was never acked).
        const force = setTimeout(() => server.closeAllConnections(), DRAIN_GRACE_MS);
        // A socket with no request in progress may still hold one the gateway already sent,
        // unread in the kernel: closing it at once (as http.Server#close does) resets that
        // request, which under load was every commit in flight at the signal. So the listener
        // stops now (net.Server#close: no new connections), and idle sockets are closed only
        // after a short grace, in which such requests are read and answered with
        // "Connection: close", ending their sockets; then every 50 ms, for sockets whose last
        // response went out before the drain (without the header).
        let sweep: NodeJS.Timeout | undefined;
        const startSweeping = setTimeout(() => {
          server.closeIdleConnections();
          sweep = setInterval(() => server.closeIdleConnections(), 50);
        }, IDLE_SOCKET_GRACE_MS);
        net.Server.prototype.close.call(server, () => {
          clearTimeout(force);
          clearTimeout(startSweeping);
          clearInterval(sweep);
          resolve();
        });
      });
      await apollo.stop();
    },
  };
}
