import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, readdirSync } from "node:fs";
import { startTestApp, type TestApp } from "../support/app.js";
import { spawnServer, type ServerProcess } from "../support/process.js";
import { createGateway, createKey, insertModel, insertTenant, insertTier, reserve } from "../support/enforcement.js";
import { GraphQLClient } from "../support/client.js";
import { loadConfig, ConfigError } from "../../src/config/config.js";

/** Worker pids of the service: children running the same entry point (tsx may add its own helper). */
function workersOf(pid: number): number[] {
  const out: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const kids = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim();
    if (kids) out.push(...kids.split(/\s+/).map(Number));
  }
  return out.filter((k) => readFileSync(`/proc/${k}/cmdline`, "utf8").includes("src/main.ts"));
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** WEB_CONCURRENCY=2: two workers behind one port, one /metrics for both, one drain. */
describe("WEB_CONCURRENCY", () => {
  let t: TestApp;
  let server: ServerProcess;

  beforeAll(async () => {
    t = await startTestApp();
    server = await spawnServer({ ...t.env, WEB_CONCURRENCY: "2", REDIS_COMMAND_TIMEOUT_MS: "2000" });
  }, 120_000);
  afterAll(async () => {
    await server?.kill("SIGKILL");
    await t?.close();
  });

  it("serves from two workers, reports their metrics together, and drains both on SIGTERM", async () => {
    // Both workers listen (the primary logs nothing on the port itself).
    const deadline = Date.now() + 30_000;
    while ((server.output().match(/listening on/g) ?? []).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect((server.output().match(/listening on/g) ?? []).length).toBe(2);
    const workers = workersOf(server.child.pid!);
    expect(workers).toHaveLength(2);

    await insertModel(t, "m-small", 1_000n, 2_000n);
    const key = await createKey(t, await insertTenant(t, await insertTier(t)));
    const token = (await createGateway(t)).token!;
    const gw = new GraphQLClient(server.url, token);
    const N = 40;
    // Separate connections, so the primary hands them to both workers in turn.
    const decisions = await Promise.all(
      Array.from({ length: N }, () => reserve(new GraphQLClient(server.url, token), { apiKey: key.secret })),
    );
    expect(decisions.map((d) => d.reason ?? "ALLOW")).toEqual(Array(N).fill("ALLOW"));
    expect((await reserve(gw, { apiKey: key.secret })).allowed).toBe(true);

    // Whichever worker answers the scrape, it reports the whole group: every reserve counted once.
    const base = server.url.replace(/\/graphql$/, "");
    for (let i = 0; i < 4; i++) {
      const text = await (await fetch(`${base}/metrics`, { headers: { connection: "close" } })).text();
      const line = text.split("\n").find((l) => l.startsWith('llm_enforcement_decisions_total{outcome="ALLOW",reason="NONE"}'));
      expect(line, text.slice(0, 2_000) + server.output().split("\n").filter((l) => l.includes("metrics")).join("\n")).toBeDefined();
      expect(Number(line!.split(" ").at(-1))).toBe(N + 1);
    }

    const code = await server.kill("SIGTERM");
    expect(code).toBe(0);
    for (const pid of workers) expect(alive(pid)).toBe(false);
  }, 90_000);

  it("is refused above 1 with the embedded database or Redis", () => {
    const problems = (env: Record<string, string>) => {
      try {
        loadConfig(env);
        return [];
      } catch (e) {
        if (e instanceof ConfigError) return e.problems;
        throw e;
      }
    };
    expect(problems({ WEB_CONCURRENCY: "2" })).toEqual([expect.stringMatching(/^WEB_CONCURRENCY: above 1 needs DATABASE_URL and REDIS_URL/)]);
    expect(problems({ WEB_CONCURRENCY: "2", DATABASE_URL: "postgres://x@127.0.0.1/db" })).toHaveLength(1);
    expect(problems({ WEB_CONCURRENCY: "2", DATABASE_URL: "postgres://x@127.0.0.1/db", REDIS_URL: "redis://127.0.0.1:6379" })).toEqual([]);
    expect(problems({ WEB_CONCURRENCY: "2", DATABASE_URL: "postgres://x@127.0.0.1/db", REDIS_CLUSTER_NODES: "127.0.0.1:7001" })).toEqual([]);
    expect(loadConfig({}).http.workers).toBe(1);
  });
});
