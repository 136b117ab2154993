import http from "node:http";
import type { AddressInfo } from "node:net";
import pg from "pg";
import WebSocket from "ws";
import { createClient, type Client } from "graphql-ws";
import type { TestApp } from "../support/app.js";
import type { GraphQLClient } from "../support/client.js";
import { createTenant, createTier } from "../operator/support.js";

/** Shared pieces of the event-delivery tests: a webhook receiver, a subscriber, seeding. */

export interface ReceivedWebhook {
  headers: Record<string, string>;
  body: string;
  at: number;
}

/**
 * A local webhook receiver. `respond` decides each answer (default 200) and may do things
 * before answering (the crash test stops the sender there).
 */
export interface Receiver {
  url: string;
  received: ReceivedWebhook[];
  respond: (req: ReceivedWebhook, res: http.ServerResponse) => void | Promise<void>;
  waitFor(pred: (all: ReceivedWebhook[]) => boolean, timeoutMs?: number): Promise<ReceivedWebhook[]>;
  close(): Promise<void>;
}

export async function startReceiver(path = "/hook"): Promise<Receiver> {
  const received: ReceivedWebhook[] = [];
  const r: Receiver = {
    url: "",
    received,
    respond: (_req, res) => {
      res.writeHead(200);
      res.end("ok");
    },
    waitFor: (pred, timeoutMs = 20_000) => waitUntil(() => (pred(received) ? received : null), timeoutMs, "webhook receiver"),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers[k] = v;
      const hook = { headers, body: Buffer.concat(chunks).toString("utf8"), at: Date.now() };
      received.push(hook);
      void Promise.resolve(r.respond(hook, res)).catch(() => res.destroy());
    });
  });
  server.keepAliveTimeout = 1;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
  return r;
}

export async function waitUntil<T>(check: () => T | null | undefined | false | Promise<T | null | undefined | false>, timeoutMs = 20_000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function sql<T = any>(databaseUrl: string, text: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    return (await c.query(text, params)).rows as T[];
  } finally {
    await c.end();
  }
}

/** A tier and `n` tenants on it, through the operator API. */
export async function seedTenants(admin: GraphQLClient, n: number): Promise<string[]> {
  const tier = await createTier(admin, { name: `events-${Math.random().toString(36).slice(2)}`, maxOutputTokens: 100 });
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push((await createTenant(admin, { name: `events tenant ${i}`, tierId: tier.id })).id);
  return ids;
}

export async function createCredential(admin: GraphQLClient, role: string, tenantId: string | null): Promise<{ id: string; secret: string }> {
  const d = await admin.ok(`mutation($input: CreateCredentialInput!) { createCredential(input: $input) { secret credential { id } } }`, {
    input: { role, tenantId, name: `${role.toLowerCase()} (events tests)` },
  });
  return { id: d.createCredential.credential.id, secret: d.createCredential.secret };
}

export const QUOTA_EVENTS_PAGE = `query($tenantId: ID, $after: String, $first: Int) {
  quotaEvents(tenantId: $tenantId, after: $after, first: $first) {
    nodes { id cursor type tenantId scope period payload occurredAt publishedAt }
    pageInfo { hasNextPage endCursor }
  }
}`;

/** Every page of quotaEvents from `after`, as the caller sees them. */
export async function pageAll(c: GraphQLClient, vars: { tenantId?: string; after?: string | null; first?: number } = {}) {
  const nodes: any[] = [];
  let after = vars.after ?? null;
  for (;;) {
    const d = await c.ok(QUOTA_EVENTS_PAGE, { tenantId: vars.tenantId, after, first: vars.first ?? 50 });
    nodes.push(...d.quotaEvents.nodes);
    if (d.quotaEvents.pageInfo.endCursor) after = d.quotaEvents.pageInfo.endCursor;
    if (!d.quotaEvents.pageInfo.hasNextPage) return { nodes, endCursor: after };
  }
}

export const SUBSCRIBE = `subscription($tenantId: ID!, $after: String) {
  quotaEvents(tenantId: $tenantId, after: $after) { id cursor type tenantId scope payload }
}`;

/**
 * A graphql-ws subscriber: collects `next` payloads, errors, completion and the socket's close
 * code, so tests can assert on each.
 */
export interface Subscriber {
  client: Client;
  events: any[];
  errors: any[];
  completed: boolean;
  closed: { code: number; reason: string } | null;
  /** Resolves once the server acknowledged connection_init. */
  connected: Promise<void>;
  dispose(): Promise<void>;
}

export function subscribe(httpUrl: string, token: string | null, variables: Record<string, unknown>, query = SUBSCRIBE): Subscriber {
  let onConnected: () => void = () => {};
  const s: Subscriber = {
    client: null as unknown as Client,
    events: [],
    errors: [],
    completed: false,
    closed: null,
    connected: new Promise<void>((resolve) => (onConnected = resolve)),
    dispose: async () => {
      await s.client.dispose();
    },
  };
  s.client = createClient({
    url: httpUrl.replace(/^http/, "ws"),
    webSocketImpl: WebSocket,
    connectionParams: token === null ? {} : { authorization: `Bearer ${token}` },
    retryAttempts: 0,
    lazy: false,
    // The close is asserted through `closed`; the default handler would print it.
    onNonLazyError: () => {},
    on: {
      connected: () => onConnected(),
      closed: (e) => {
        const ev = e as { code: number; reason: string };
        s.closed = { code: ev.code, reason: String(ev.reason) };
      },
    },
  });
  s.client.subscribe(
    { query, variables },
    {
      next: (v) => {
        if (v.errors) s.errors.push(...v.errors);
        if (v.data) s.events.push((v.data as any).quotaEvents);
      },
      error: (e) => (Array.isArray(e) ? s.errors.push(...e) : s.errors.push(e)),
      complete: () => (s.completed = true),
    },
  );
  return s;
}

export type { TestApp };
