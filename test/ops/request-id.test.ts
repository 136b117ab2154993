import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import { startTestApp, type TestApp } from "../support/app.js";
import { BOOTSTRAP_TOKEN } from "../support/env.js";
import { buildApiSchema } from "../../src/graphql/schema.js";
import { createApiServer, type ApiServer } from "../../src/graphql/server.js";

/**
 * The request id reaches every masked error, including a fault outside GraphQL: a plain route
 * (like /metrics) that throws. The resolver-level cases are covered in test/hardening.
 */
describe("request id on a fault outside GraphQL", () => {
  let t: TestApp;
  let server: ApiServer;
  let base: string;
  const lines: Array<Record<string, unknown>> = [];
  let childLoggers = 0;

  beforeAll(async () => {
    t = await startTestApp();
    const logger = pino({ level: "info" }, { write: (s: string) => void lines.push(JSON.parse(s)) });
    const child = logger.child.bind(logger);
    logger.child = ((...args: Parameters<typeof child>) => (childLoggers++, child(...args))) as typeof logger.child;
    server = await createApiServer({
      schema: await buildApiSchema(),
      services: t.app.services,
      logger,
      introspection: false,
      maxDepth: 12,
      maxComplexity: 2_000,
      maxBodyBytes: 100_000,
      routes: {
        "/boom": () => {
          throw new Error("relation secret_table does not exist");
        },
      },
    });
    base = `http://127.0.0.1:${await server.listen(0, "127.0.0.1")}`;
  });
  afterAll(async () => {
    await server?.close();
    await t?.close();
  });

  it("answers 500 with the x-request-id in the body, and logs the cause under the same id", async () => {
    const res = await fetch(`${base}/boom`, { headers: { "x-request-id": "gw-req:77" } });
    expect(res.status).toBe(500);
    expect(res.headers.get("x-request-id")).toBe("gw-req:77");
    const text = await res.text();
    expect(JSON.parse(text)).toEqual({ errors: [{ message: "Internal server error", extensions: { code: "INTERNAL_SERVER_ERROR", requestId: "gw-req:77" } }] });
    expect(text).not.toContain("secret_table");
    const logged = lines.find((l) => l.msg === "unhandled http error");
    expect(logged).toMatchObject({ requestId: "gw-req:77", err: { message: "relation secret_table does not exist" } });
  });

  it("builds no request logger for a request that logs nothing (Apollo copies the context per operation)", async () => {
    const before = childLoggers;
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${base}/graphql`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${BOOTSTRAP_TOKEN}` },
        body: JSON.stringify({ query: "{ viewer { role } }" }),
      });
      expect(await res.json()).toEqual({ data: { viewer: { role: "ADMIN" } } });
    }
    expect(childLoggers - before).toBe(0);
  });
});
