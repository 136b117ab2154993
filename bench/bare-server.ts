import http from "node:http";
import { loadConfig } from "../src/config/config.js";
import { formatUsd } from "../src/domain/billing/money.js";
import type { Decision, LimitStatus } from "../src/domain/enforcement/types.js";
import type { Actor } from "../src/domain/tenancy/types.js";

/**
 * The baselines, each a bare node:http server with no GraphQL (argv[2] picks one):
 *
 *   floor  the service's own enforcement path, called directly: the same bearer check, key
 *          verification, policy cache, plan, Lua scripts and group-committed ledger, with the
 *          same inputs and the same answer fields rendered as JSON. What the service would cost
 *          without its GraphQL layer; service ÷ floor is the price of GraphQL + Apollo.
 *   peer   rate-limiter-flexible's RateLimiterRedis: reserve = consume(key, tokens), commit =
 *          reward(key, unused tokens). One dimension, no key check, no ledger: what a popular
 *          general-purpose limiter costs per pair on the same machine and Redis.
 *   null   answers every reserve and commit at once with a fixed body: no Redis, no Postgres.
 *          Not a limiter; it measures the load generator, the loopback and node:http themselves,
 *          the part of every open-loop latency figure that no server can remove.
 *
 * Settings come from the same environment as the service. Prints {"port":N} once listening.
 */
const mode = process.argv[2];
if (mode !== "floor" && mode !== "peer" && mode !== "null") throw new Error("usage: bare-server.ts floor|peer|null");

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(chunks.length === 1 ? chunks[0]!.toString() : Buffer.concat(chunks).toString()));
    req.on("error", reject);
  });
}

function send(res: http.ServerResponse, status: number, body: string) {
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

const limits = (ls: LimitStatus[]) => ls.map((l) => ({ dimension: l.dimension, scope: l.scope, limit: l.limit, remaining: l.remaining, resetAt: l.resetAt?.toISOString() ?? null }));

/** The same fields the benchmark's GraphQL document selects. */
function renderDecision(d: Decision) {
  return {
    outcome: d.outcome,
    allowed: d.allowed,
    reason: d.reason,
    message: d.message,
    retryAfterMs: d.retryAfterMs,
    tenantId: d.tenantId,
    keyId: d.keyId,
    reservation: d.reservation
      ? { id: d.reservation.id, expiresAt: d.reservation.expiresAt.toISOString(), inputTokens: d.reservation.inputTokens, outputTokens: d.reservation.outputTokens, costUsd: formatUsd(d.reservation.costNano) }
      : null,
    directives: d.directives,
    limits: limits(d.limits),
  };
}

async function floorHandler(): Promise<(req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>> {
  const config = loadConfig(process.env);
  // Imported here, not at the top: the peer must not carry the whole app in its memory figure.
  const { compose } = await import("../src/compose.js");
  const app = await compose(config);
  const { auth, enforcement } = app.services;
  process.on("SIGTERM", () => void app.stop().then(() => process.exit(0)));
  return async (req, res) => {
    const body = JSON.parse(await readBody(req));
    const actor: Actor | null = await auth.authenticate(req.headers.authorization, req.socket.remoteAddress ?? null);
    if (!actor) return send(res, 401, `{"error":"unauthenticated"}`);
    if (req.url === "/reserve") {
      const d = await enforcement.checkAndReserve(
        {
          apiKey: body.apiKey,
          route: body.route,
          model: body.model,
          inputTokens: body.inputTokens,
          maxOutputTokens: body.maxOutputTokens ?? null,
          idempotencyKey: body.idempotencyKey ?? null,
          subject: body.subject ?? null,
          priority: body.priority ?? "NORMAL",
          tools: body.tools ?? [],
        },
        actor,
      );
      return send(res, 200, JSON.stringify(renderDecision(d)));
    }
    if (req.url === "/commit") {
      const r = await enforcement.commit({ reservationId: body.reservationId, inputTokens: body.inputTokens, outputTokens: body.outputTokens, status: body.status ?? "SUCCEEDED" }, actor);
      return send(
        res,
        200,
        JSON.stringify({ reservationId: r.reservationId, inputTokens: r.inputTokens, outputTokens: r.outputTokens, costUsd: formatUsd(r.costNano), overage: r.overage, replayed: r.replayed, limits: limits(r.limits) }),
      );
    }
    send(res, 404, `{"error":"not found"}`);
  };
}

async function peerHandler(): Promise<(req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>> {
  const config = loadConfig(process.env);
  const { RateLimiterRedis } = await import("rate-limiter-flexible");
  const { createHotPathRedis } = await import("../src/storage/redis/client.js");
  const redis = createHotPathRedis({ ...config.redis, url: config.redis.url ?? "" });
  const limiter = new RateLimiterRedis({ storeClient: redis, keyPrefix: "peer", points: 1e12, duration: 60 });
  process.on("SIGTERM", () => {
    redis.disconnect();
    process.exit(0);
  });
  return async (req, res) => {
    const body = JSON.parse(await readBody(req));
    if (req.url === "/reserve") {
      const points = body.inputTokens + (body.maxOutputTokens ?? 0);
      try {
        const r = await limiter.consume(body.apiKey, points);
        // The id carries what commit needs to give the unused part back.
        return send(res, 200, JSON.stringify({ allowed: true, remaining: r.remainingPoints, resetMs: r.msBeforeNext, reservation: { id: `${body.apiKey}|${points}` } }));
      } catch (rejected) {
        if (rejected instanceof Error) throw rejected;
        return send(res, 200, JSON.stringify({ allowed: false, retryAfterMs: (rejected as { msBeforeNext: number }).msBeforeNext }));
      }
    }
    if (req.url === "/commit") {
      const sep = String(body.reservationId).lastIndexOf("|");
      const key = body.reservationId.slice(0, sep);
      const unused = Number(body.reservationId.slice(sep + 1)) - body.inputTokens - body.outputTokens;
      const r = unused > 0 ? await limiter.reward(key, unused) : null;
      return send(res, 200, JSON.stringify({ reservationId: body.reservationId, remaining: r?.remainingPoints ?? null }));
    }
    send(res, 404, `{"error":"not found"}`);
  };
}

function nullHandler(): (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> {
  const reserved = JSON.stringify({ allowed: true, reservation: { id: "res_null" } });
  const committed = JSON.stringify({ reservationId: "res_null" });
  process.on("SIGTERM", () => process.exit(0));
  return async (req, res) => {
    await readBody(req);
    send(res, 200, req.url === "/reserve" ? reserved : committed);
  };
}

const handle = mode === "floor" ? await floorHandler() : mode === "peer" ? await peerHandler() : nullHandler();
const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    console.error(err);
    if (!res.headersSent) send(res, 500, JSON.stringify({ error: String(err) }));
  });
});
server.keepAliveTimeout = 65_000;
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: (server.address() as { port: number }).port }) + "\n");
});
