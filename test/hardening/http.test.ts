import http from "node:http";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  GraphQLEnumType,
  GraphQLInt,
  GraphQLNonNull,
  GraphQLObjectType,
  GraphQLSchema,
  GraphQLString,
  type GraphQLFieldConfigMap,
} from "graphql";
import { sql } from "drizzle-orm";
import pg from "pg";
import { pino } from "pino";
import { startTestApp, type TestApp } from "../support/app.js";
import { BOOTSTRAP_TOKEN } from "../support/env.js";
import { GraphQLClient, errorCode } from "../support/client.js";
import { createApiServer, type ApiServer } from "../../src/graphql/server.js";
import { DecimalScalar } from "../../src/graphql/scalars.js";
import type { GraphQLContext } from "../../src/graphql/context.js";

/**
 * The HTTP edge's defences, over real HTTP. Most checks run against the service exactly as
 * `compose` builds it (production schema, configured limits). A few need an operation that
 * writes, reads a table, or counts resolver calls, which the production schema must not grow
 * for tests; those run on a second server built by the same `createApiServer` with the same
 * services and limits, over a tiny schema defined only here.
 */

const AUTH = { authorization: `Bearer ${BOOTSTRAP_TOKEN}` };
const JSON_AUTH = { "content-type": "application/json", ...AUTH };

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any;
}

/**
 * A POST through node:http, so the test controls framing: with `chunked` the body is streamed
 * without a Content-Length, so the server can only find out its size by reading it.
 */
function rawPost(url: string, body: Buffer, opts: { chunked?: boolean; headers?: Record<string, string> } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method: "POST",
        headers: { ...JSON_AUTH, ...(opts.chunked ? {} : { "content-length": String(body.length) }), ...opts.headers },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (text += d));
        res.on("end", () => {
          let json: any = null;
          try {
            json = JSON.parse(text);
          } catch {
            /* asserted by the caller */
          }
          resolve({ status: res.statusCode!, headers: res.headers, text, json });
        });
      },
    );
    req.on("error", reject);
    if (opts.chunked) {
      for (let i = 0; i < body.length; i += 64 * 1024) req.write(body.subarray(i, i + 64 * 1024));
      req.end();
    } else {
      req.end(body);
    }
  });
}

async function get(url: string, params: Record<string, string>, headers: Record<string, string>) {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  const res = await fetch(u, { headers });
  const text = await res.text();
  return { status: res.status, text, json: JSON.parse(text) as any };
}

/** `{ __type(name: "Query") { ofType { … { name } } } }`, exactly `depth` field levels deep. */
function introspectionOfDepth(depth: number): string {
  let q = "name";
  for (let i = 0; i < depth - 2; i++) q = `ofType { ${q} }`;
  return `{ __type(name: "Query") { ${q} } }`;
}

/** `{ a0: viewer { role } a1: … }`: each alias costs 2 (the field and its one leaf). */
function viewerAliases(n: number): string {
  return `{ ${Array.from({ length: n }, (_, i) => `a${i}: viewer { role }`).join(" ")} }`;
}

describe("HTTP hardening of the composed service", () => {
  let t: TestApp;
  let admin: GraphQLClient;
  beforeAll(async () => {
    t = await startTestApp();
    admin = t.admin;
  });
  afterAll(async () => t?.close());

  describe("body size", () => {
    // The configured limit, not a constant, so the test follows MAX_BODY_BYTES.
    const twoMegabytes = () => Buffer.from(JSON.stringify({ query: "{ viewer { role } }", variables: { pad: "x".repeat(2_000_000) } }));

    it("refuses a 2 MB body with a declared length: 413 naming the limit, nothing executed", async () => {
      const limit = t.app.config.http.maxBodyBytes;
      expect(limit).toBeLessThan(2_000_000);
      const r = await rawPost(t.url, twoMegabytes());
      expect(r.status).toBe(413);
      expect(r.json.errors[0].message).toContain(`exceeds the limit of ${limit} bytes`);
      expect(r.json.errors[0].extensions.code).toBe("BAD_REQUEST");
      expect(r.json.data).toBeUndefined();
    });

    it("refuses a 2 MB chunked body (no length declared) the same way, with a response rather than a reset", async () => {
      const r = await rawPost(t.url, twoMegabytes(), { chunked: true });
      expect(r.status).toBe(413);
      expect(r.json.errors[0].message).toContain("exceeds the limit");
      expect(r.json.data).toBeUndefined();
    });

    it("still serves a body just under the limit (the limit is the limit, not a smaller one)", async () => {
      const limit = t.app.config.http.maxBodyBytes;
      const base = JSON.stringify({ query: "{ viewer { role } }", variables: { pad: "" } });
      const body = Buffer.from(JSON.stringify({ query: "{ viewer { role } }", variables: { pad: "x".repeat(limit - base.length) } }));
      expect(body.length).toBe(limit);
      const r = await rawPost(t.url, body);
      expect(r.status).toBe(200);
      expect(r.json.data.viewer.role).toBe("ADMIN");
      const over = await rawPost(t.url, Buffer.concat([body, Buffer.from(" ")]));
      expect(over.status).toBe(413);
    });
  });

  describe("query depth", () => {
    it("refuses a depth-20 query at validation (GRAPHQL_VALIDATION_FAILED, no data)", async () => {
      const r = await admin.request(introspectionOfDepth(20));
      expect(r.status).toBe(400);
      expect(errorCode(r)).toBe("GRAPHQL_VALIDATION_FAILED");
      expect(r.errors![0]!.message).toMatch(/depth 20 exceeds the maximum of 12/);
      expect(r.data).toBeNull();
    });

    it("allows the configured maximum and refuses one more", async () => {
      const max = t.app.config.graphql.maxDepth;
      const atMax = await admin.request(introspectionOfDepth(max));
      expect(atMax.errors).toBeUndefined();
      expect(atMax.data.__type).not.toBeNull();
      const over = await admin.request(introspectionOfDepth(max + 1));
      expect(errorCode(over)).toBe("GRAPHQL_VALIDATION_FAILED");
    });

    it("follows fragments when measuring depth", async () => {
      const max = t.app.config.graphql.maxDepth;
      let inner = "name";
      for (let i = 0; i < max; i++) inner = `ofType { ${inner} }`;
      const r = await admin.request(`{ __type(name: "Query") { ...Deep } } fragment Deep on __Type { ${inner} }`);
      expect(errorCode(r)).toBe("GRAPHQL_VALIDATION_FAILED");
      expect(r.errors![0]!.message).toMatch(/depth/);
    });
  });

  describe("query complexity", () => {
    it("refuses a very complex query with QUERY_TOO_COMPLEX (400) and runs nothing", async () => {
      const r = await admin.request(viewerAliases(3_000));
      expect(r.status).toBe(400);
      expect(errorCode(r)).toBe("QUERY_TOO_COMPLEX");
      expect(r.errors![0]!.message).toMatch(/complexity 6000 exceeds the maximum of 2000/);
      expect(r.data).toBeNull();
    });

    it("refuses a query too large to measure the same way, not as a fault or a user-input error", async () => {
      const r = await admin.request(viewerAliases(20_000));
      expect(r.status).toBe(400);
      expect(errorCode(r)).toBe("QUERY_TOO_COMPLEX");
      expect(r.data).toBeNull();
    });

    it("allows exactly the configured maximum and refuses one field more", async () => {
      const max = t.app.config.graphql.maxComplexity;
      expect(max % 2).toBe(0);
      const atMax = await admin.request(viewerAliases(max / 2));
      expect(atMax.errors).toBeUndefined();
      expect(Object.keys(atMax.data)).toHaveLength(max / 2);
      const over = await admin.request(`${viewerAliases(max / 2).slice(0, -1)} extra: __typename }`);
      expect(errorCode(over)).toBe("QUERY_TOO_COMPLEX");
    });
  });

  it("refuses a batched (array) body with 400", async () => {
    const r = await rawPost(t.url, Buffer.from(JSON.stringify([{ query: "{ viewer { role } }" }, { query: "{ viewer { role } }" }])));
    expect(r.status).toBe(400);
    expect(r.text).toContain("batching disabled");
    expect(r.text).not.toContain("ADMIN");
  });

  describe("CSRF prevention", () => {
    it("refuses a GET with no content-type and no preflight header, even with a valid credential", async () => {
      const r = await get(t.url, { query: "{ viewer { role } }" }, AUTH);
      expect(r.status).toBe(400);
      expect(r.text).toContain("Cross-Site Request Forgery");
      expect(r.text).not.toContain("ADMIN");
    });

    it("serves the same GET once it carries a header a browser would preflight", async () => {
      const preflighted: Record<string, string>[] = [
        { "apollo-require-preflight": "true" },
        { "x-apollo-operation-name": "Me" },
        { "content-type": "application/json" },
      ];
      for (const h of preflighted) {
        const r = await get(t.url, { query: "query Me { viewer { role } }" }, { ...AUTH, ...h });
        expect(r.status, JSON.stringify(h)).toBe(200);
        expect(r.json.data.viewer.role).toBe("ADMIN");
      }
    });

    it("refuses a POST with a form-like content type (what a cross-site form can send)", async () => {
      const r = await rawPost(t.url, Buffer.from(JSON.stringify({ query: "{ viewer { role } }" })), { headers: { "content-type": "text/plain" } });
      expect(r.status).toBe(400);
      expect(r.text).toContain("Cross-Site Request Forgery");
    });
  });

  describe("request ids", () => {
    it("echoes a well-formed caller request id and replaces a malformed one", async () => {
      const good = await admin.request("{ viewer { role } }", undefined, { "x-request-id": "gw-7f3a:42" });
      expect(good.headers.get("x-request-id")).toBe("gw-7f3a:42");
      const bad = await admin.request("{ viewer { role } }", undefined, { "x-request-id": 'x" onload="alert(1)' });
      expect(bad.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
      const none = await admin.request("{ viewer { role } }");
      expect(none.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    });
  });
});

describe("an internal fault in a production operation", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => t?.close());

  it("answers `tenants` with a masked INTERNAL_SERVER_ERROR carrying x-request-id once its table is gone", async () => {
    expect((await t.admin.ok(`{ tenants { nodes { id } } }`)).tenants.nodes).toEqual([]);
    // The test's own database: the repository's SELECT now fails inside the driver.
    const c = new pg.Client({ connectionString: t.databaseUrl });
    await c.connect();
    try {
      await c.query("ALTER TABLE tenants RENAME TO tenants_moved_by_test");
      const res = await fetch(t.url, { method: "POST", headers: JSON_AUTH, body: JSON.stringify({ query: "{ tenants { nodes { id } } }" }) });
      const text = await res.text();
      const body = JSON.parse(text);
      const requestId = res.headers.get("x-request-id");
      expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
      expect(body.data).toBeNull();
      expect(body.errors).toEqual([
        { message: "Internal server error", path: ["tenants"], extensions: { code: "INTERNAL_SERVER_ERROR", requestId } },
      ]);
      for (const leak of ["relation", "does not exist", "select", "Failed query", "stack", "node_modules", "tenants_moved"]) {
        expect(text.toLowerCase(), `response leaks "${leak}"`).not.toContain(leak.toLowerCase());
      }
    } finally {
      await c.query("ALTER TABLE IF EXISTS tenants_moved_by_test RENAME TO tenants");
      await c.end();
    }
    // And the service recovers with the table back.
    expect((await t.admin.ok(`{ tenants { nodes { id } } }`)).tenants.nodes).toEqual([]);
  });
});

describe("introspection follows the environment", () => {
  const introspect = `{ __schema { queryType { name } } }`;
  // Production refuses development defaults for secrets, so it gets real-looking ones.
  const production = { NODE_ENV: "production", WEBHOOK_SECRET_KEY: "hardening-test-webhook-key-0123456789abcdef" };

  it("is refused with NODE_ENV=production, while ordinary queries work", async () => {
    const t = await startTestApp(production);
    try {
      const r = await t.admin.request(introspect);
      expect(r.status).toBe(400);
      expect(errorCode(r)).toBe("GRAPHQL_VALIDATION_FAILED");
      expect(r.errors![0]!.message).toMatch(/introspection/i);
      expect((await t.admin.ok(`{ viewer { role } }`)).viewer.role).toBe("ADMIN");
    } finally {
      await t.close();
    }
  });

  it("is served in production when GRAPHQL_INTROSPECTION=true", async () => {
    const t = await startTestApp({ ...production, GRAPHQL_INTROSPECTION: "true" });
    try {
      expect((await t.admin.ok(introspect)).__schema.queryType.name).toBe("Query");
    } finally {
      await t.close();
    }
  });
});

describe("HTTP hardening around execution (test-only schema on the same server code)", () => {
  let t: TestApp;
  let server: ApiServer;
  let url: string;
  let client: GraphQLClient;
  let dbAdmin: pg.Client;
  const logLines: any[] = [];
  let resolverCalls = 0;

  const rows = async () => Number((await dbAdmin.query("SELECT count(*)::int AS n FROM hardening_probe")).rows[0].n);

  beforeAll(async () => {
    t = await startTestApp();
    dbAdmin = new pg.Client({ connectionString: t.databaseUrl });
    await dbAdmin.connect();
    await dbAdmin.query("CREATE TABLE hardening_probe (id serial PRIMARY KEY, note text NOT NULL)");

    // A recursive type so depth and complexity can be reached, counting every resolver call.
    const Node: GraphQLObjectType = new GraphQLObjectType({
      name: "Node",
      fields: (): GraphQLFieldConfigMap<unknown, GraphQLContext> => ({
        n: { type: GraphQLInt, resolve: () => ++resolverCalls },
        child: { type: Node, resolve: () => (resolverCalls++, {}) },
      }),
    });
    // An enum the resolver below answers wrongly: a server bug, never the caller's fault.
    const Colour = new GraphQLEnumType({ name: "Colour", values: { RED: {}, GREEN: {} } });
    const schema = new GraphQLSchema({
      query: new GraphQLObjectType<unknown, GraphQLContext>({
        name: "Query",
        fields: {
          node: { type: Node, resolve: () => (resolverCalls++, {}) },
          // Reads the probe table through the service's own drizzle handle, as a repository would.
          probeCount: {
            type: new GraphQLNonNull(GraphQLInt),
            resolve: async (_s, _a, ctx) => {
              const r: any = await ctx.services.db.execute(sql`SELECT count(*)::int AS n FROM hardening_probe`);
              return r.rows[0].n;
            },
          },
          colour: { type: Colour, resolve: () => "PURPLE" },
        },
      }),
      mutation: new GraphQLObjectType<unknown, GraphQLContext>({
        name: "Mutation",
        fields: {
          writeProbe: {
            type: new GraphQLNonNull(GraphQLInt),
            args: { note: { type: new GraphQLNonNull(GraphQLString) }, amount: { type: DecimalScalar } },
            resolve: async (_s, args: { note: string }, ctx) => {
              await ctx.services.db.execute(sql`INSERT INTO hardening_probe (note) VALUES (${args.note})`);
              return 1;
            },
          },
        },
      }),
    });

    const sink = new Writable({
      write(chunk, _enc, cb) {
        for (const line of chunk.toString().split("\n").filter(Boolean)) logLines.push(JSON.parse(line));
        cb();
      },
    });
    const cfg = t.app.config;
    server = await createApiServer({
      schema,
      services: t.app.services,
      logger: pino({ level: "error" }, sink),
      introspection: cfg.graphql.introspection,
      maxDepth: cfg.graphql.maxDepth,
      maxComplexity: cfg.graphql.maxComplexity,
      maxBodyBytes: cfg.http.maxBodyBytes,
    });
    const port = await server.listen(0, "127.0.0.1");
    url = `http://127.0.0.1:${port}/graphql`;
    client = new GraphQLClient(url, BOOTSTRAP_TOKEN);
  });

  afterAll(async () => {
    await server?.close();
    await dbAdmin?.end();
    await t?.close();
  });

  it("writes nothing for a 2 MB mutation body (and the same mutation, small, does write)", async () => {
    const mutation = "mutation W($note: String!) { writeProbe(note: $note) }";
    const big = Buffer.from(JSON.stringify({ query: mutation, variables: { note: "x".repeat(2_000_000) } }));
    expect((await rawPost(url, big)).status).toBe(413);
    expect((await rawPost(url, big, { chunked: true })).status).toBe(413);
    expect(await rows()).toBe(0);

    expect(await client.ok(mutation, { note: "small" })).toEqual({ writeProbe: 1 });
    expect(await rows()).toBe(1);
  });

  it("refuses a mutation sent as GET (even preflighted) and writes nothing", async () => {
    const before = await rows();
    const r = await get(url, { query: `mutation { writeProbe(note: "via-get") }` }, { ...AUTH, "apollo-require-preflight": "true" });
    expect(r.status).toBe(405);
    expect(r.text).toMatch(/mutation/i);
    expect(await rows()).toBe(before);
  });

  it("refuses too-deep and too-complex queries before any resolver runs", async () => {
    const max = t.app.config.graphql.maxDepth;
    const nested = (levels: number) => {
      let q = "n";
      for (let i = 0; i < levels - 2; i++) q = `child { ${q} }`;
      return `{ node { ${q} } }`;
    };
    resolverCalls = 0;
    expect(errorCode(await client.request(nested(20)))).toBe("GRAPHQL_VALIDATION_FAILED");
    expect(errorCode(await client.request(`{ ${Array.from({ length: 3_000 }, (_, i) => `a${i}: node { n }`).join(" ")} }`))).toBe(
      "QUERY_TOO_COMPLEX",
    );
    expect(resolverCalls).toBe(0);
    // The control: at the maximum depth the resolvers do run.
    expect((await client.request(nested(max))).errors).toBeUndefined();
    expect(resolverCalls).toBe(max);
  });

  it("masks an internal fault as INTERNAL_SERVER_ERROR carrying the x-request-id, with no SQL, table or stack", async () => {
    expect(await client.ok("{ probeCount }")).toEqual({ probeCount: await rows() });
    await dbAdmin.query("DROP TABLE hardening_probe");
    try {
      const res = await fetch(url, { method: "POST", headers: JSON_AUTH, body: JSON.stringify({ query: "{ probeCount }" }) });
      const text = await res.text();
      const body = JSON.parse(text);
      const requestId = res.headers.get("x-request-id");
      expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
      expect(body.errors).toEqual([
        { message: "Internal server error", path: ["probeCount"], extensions: { code: "INTERNAL_SERVER_ERROR", requestId } },
      ]);
      for (const leak of ["hardening_probe", "select", "relation", "Failed query", "stack", "node_modules", ".ts:", "pg"]) {
        expect(text.toLowerCase(), `response leaks "${leak}"`).not.toContain(leak.toLowerCase());
      }
      // The operator can find the real cause in the logs by the id the caller reports.
      const logged = logLines.find((l) => l.requestId === requestId && l.msg === "internal error");
      expect(logged, JSON.stringify(logLines)).toBeDefined();
      expect(JSON.stringify(logged.err)).toContain("hardening_probe");
    } finally {
      await dbAdmin.query("CREATE TABLE IF NOT EXISTS hardening_probe (id serial PRIMARY KEY, note text NOT NULL)");
    }
  });

  it("carries a caller-supplied request id into the masked error", async () => {
    await dbAdmin.query("DROP TABLE hardening_probe");
    try {
      const r = await client.request("{ probeCount }", undefined, { "x-request-id": "gw-req-0042" });
      expect(r.headers.get("x-request-id")).toBe("gw-req-0042");
      expect(r.errors![0]!.extensions).toEqual({ code: "INTERNAL_SERVER_ERROR", requestId: "gw-req-0042" });
    } finally {
      await dbAdmin.query("CREATE TABLE IF NOT EXISTS hardening_probe (id serial PRIMARY KEY, note text NOT NULL)");
    }
  });

  it("reports a value the server cannot serialise as its own fault, not the caller's", async () => {
    const r = await client.request("{ colour }");
    expect(errorCode(r)).toBe("INTERNAL_SERVER_ERROR");
    expect(r.errors![0]!.message).toBe("Internal server error");
  });

  it("keeps input that does not coerce the caller's fault, and executes nothing", async () => {
    const before = await rows();
    const mutation = "mutation W($note: String!, $amount: Decimal) { writeProbe(note: $note, amount: $amount) }";
    const wrongType = await client.request(mutation, { note: 42 });
    expect(wrongType.status).toBe(400);
    expect(errorCode(wrongType)).toBe("BAD_USER_INPUT");
    // A custom scalar refusing a variable keeps its own explanation.
    const badDecimal = await client.request(mutation, { note: "n", amount: "1e3" });
    expect(badDecimal.status).toBe(400);
    expect(errorCode(badDecimal)).toBe("BAD_USER_INPUT");
    expect(badDecimal.errors![0]!.message).toContain('Decimal must be a string like "12.50"');
    // The same mistake written inline is caught by validation.
    const literal = await client.request(`mutation { writeProbe(note: "n", amount: 1.5) }`);
    expect(errorCode(literal)).toBe("GRAPHQL_VALIDATION_FAILED");
    expect(await rows()).toBe(before);
  });
});
