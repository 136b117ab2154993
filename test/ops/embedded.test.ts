import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { spawnServer, type ServerProcess } from "../support/process.js";
import { GraphQLClient } from "../support/client.js";
import { BOOTSTRAP_TOKEN } from "../support/env.js";

/**
 * `npm start` with no configuration: an embedded PGlite database and a redis-server the
 * service launches from PATH, both under DATA_DIR. The service must come up, answer, and on
 * SIGTERM exit cleanly taking its redis-server with it.
 */

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The parent pid of a live process, from /proc (the field after the parenthesised name). */
function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

const pidFileOf = (dataDir: string) => path.join(dataDir, "redis", "redis-server.pid");

describe("embedded start (no DATABASE_URL, no REDIS_URL)", () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "llm-usage-embedded-"));
  // Unset explicitly: the shell running the tests may well have these.
  const env = {
    DATABASE_URL: undefined,
    REDIS_URL: undefined,
    REDIS_CLUSTER_NODES: undefined,
    DATA_DIR: dataDir,
    BOOTSTRAP_ADMIN_TOKEN: BOOTSTRAP_TOKEN,
    NODE_ENV: "development",
    HOST: "127.0.0.1",
    PORT: "0",
    WORKERS_ENABLED: "false",
  };
  const started: ServerProcess[] = [];
  const orphans: number[] = [];

  afterAll(async () => {
    await Promise.all(started.map((s) => s.kill("SIGKILL")));
    for (const pid of orphans) if (alive(pid)) process.kill(pid, "SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function startAndQuery(): Promise<{ server: ServerProcess; redisPid: number }> {
    const server = await spawnServer(env);
    started.push(server);
    const me = await new GraphQLClient(server.url, BOOTSTRAP_TOKEN).ok(`{ viewer { role } }`);
    expect(me.viewer.role).toBe("ADMIN");
    expect(server.output()).toContain('"database":"pglite"');
    expect(server.output()).toContain("started embedded redis-server");
    const redisPid = Number(readFileSync(pidFileOf(dataDir), "utf8").trim());
    expect(alive(redisPid)).toBe(true);
    expect(parentOf(redisPid), "the redis-server is the service's own child").toBe(server.child.pid);
    return { server, redisPid };
  }

  it("starts, answers { viewer { role } }, and on SIGTERM exits 0 with its redis-server gone", async () => {
    const { server, redisPid } = await startAndQuery();
    expect(existsSync(path.join(dataDir, "pglite"))).toBe(true);

    const code = await server.kill("SIGTERM");
    expect(code, server.output()).toBe(0);
    // stop() waits for redis-server's exit, so it is gone by the time the service has exited.
    expect(alive(redisPid), `redis-server ${redisPid} outlived the service`).toBe(false);
    expect(existsSync(pidFileOf(dataDir)), "redis-server stopped cleanly (it removes its pid file)").toBe(false);
  });

  it("on the embedded database, a key reserves and commits and the usage shows the ledger row", async () => {
    // The hot path's inserts (ledger group commit, reservation archive) send their column
    // arrays straight to the driver: this runs them on PGlite as well as on node-postgres.
    const { server } = await startAndQuery();
    const admin = new GraphQLClient(server.url, BOOTSTRAP_TOKEN);
    await admin.ok(`mutation { upsertModel(input: { name: "m-embedded", inputPriceUsdPerMTok: "1", outputPriceUsdPerMTok: "2", contextWindow: 8000 }) { name } }`);
    const tier = await admin.ok(`mutation($in: CreateTierInput!) { createTier(input: $in) { id } }`, {
      in: { name: "embedded", maxOutputTokens: 1000, defaultMaxOutputTokens: 100, maxInputTokens: 4000, tenantLimits: { dailyTokens: "100000" }, keyLimits: {} },
    });
    const tenant = await admin.ok(`mutation($t: ID!) { createTenant(input: { name: "E", tierId: $t }) { id } }`, { t: tier.createTier.id });
    const tenantId = tenant.createTenant.id as string;
    const key = await admin.ok(`mutation($t: ID!) { createApiKey(input: { tenantId: $t, name: "k" }) { secret } }`, { t: tenantId });
    const cred = await admin.ok(`mutation { createCredential(input: { role: GATEWAY, name: "gw" }) { secret } }`);
    const gw = new GraphQLClient(server.url, cred.createCredential.secret);
    const r = await gw.ok(`mutation($i: CheckAndReserveInput!) { checkAndReserve(input: $i) { allowed reservation { id } } }`, {
      i: { apiKey: key.createApiKey.secret, route: "chat.completions", model: "m-embedded", inputTokens: 120, maxOutputTokens: 50 },
    });
    expect(r.checkAndReserve.allowed).toBe(true);
    const c = await gw.ok(`mutation($i: CommitInput!) { commit(input: $i) { costUsd replayed } }`, {
      i: { reservationId: r.checkAndReserve.reservation.id, inputTokens: 120, outputTokens: 30 },
    });
    expect(c.commit).toEqual({ costUsd: "0.000180000", replayed: false });
    const now = Date.now();
    const u = await admin.ok(`query($t: ID!, $from: DateTimeISO!, $to: DateTimeISO!) { usage(tenantId: $t, from: $from, to: $to) { totals { inputTokens outputTokens requests } } }`, {
      t: tenantId,
      from: new Date(now - 2 * 86_400_000).toISOString(),
      to: new Date(now + 2 * 86_400_000).toISOString(),
    });
    expect(u.usage.totals).toEqual({ inputTokens: "120", outputTokens: "30", requests: "1" });
    expect(await server.kill("SIGTERM")).toBe(0);
  });

  it("starts again on the same DATA_DIR, and drains once on a doubled SIGINT (Ctrl-C via group and tsx)", async () => {
    const { server, redisPid } = await startAndQuery();
    // Ctrl-C under `npm start` reaches node from the terminal and again from the tsx CLI,
    // milliseconds apart: that is one request to stop, not "stop now, skip the drain".
    const exited = server.kill("SIGINT");
    server.child.kill("SIGINT");
    expect(await exited, server.output()).toBe(0);
    expect(server.output()).not.toContain("second signal");
    expect(alive(redisPid)).toBe(false);
  });

  it("refuses to start a second redis-server on a data dir whose previous one outlived a killed service", async () => {
    const { server, redisPid } = await startAndQuery();
    // SIGKILL runs no exit hooks: the detached redis-server survives, still owning the AOF dir.
    await server.kill("SIGKILL");
    orphans.push(redisPid);
    expect(alive(redisPid)).toBe(true);

    const refused = await spawnServer(env).then(
      (s) => (started.push(s), "started"),
      (e: Error) => e.message,
    );
    expect(refused).toContain("exited with 1");
    expect(refused).toContain(`a redis-server from an earlier run (pid ${redisPid}`);

    // Once the operator stops it, as the message says, the service starts again.
    process.kill(redisPid, "SIGTERM");
    for (let i = 0; i < 100 && alive(redisPid); i++) await new Promise((r) => setTimeout(r, 50));
    const again = await startAndQuery();
    expect(await again.server.kill("SIGTERM")).toBe(0);
  });

  it("says how to get Redis when there is no redis-server on PATH", async () => {
    const err = await spawnServer({ ...env, DATA_DIR: path.join(dataDir, "no-redis"), PATH: "/nonexistent" }).then(
      (s) => (started.push(s), "started"),
      (e: Error) => e.message,
    );
    expect(err).toContain("exited with 1");
    expect(err).toContain("no redis-server was found on PATH");
    expect(err).toContain("REDIS_URL");
  });
});
