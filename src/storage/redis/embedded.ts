import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";

/**
 * With no REDIS_URL the service starts its own redis-server (from PATH) on a free loopback
 * port, persisting under DATA_DIR/redis with AOF and noeviction, like production should.
 * It lives exactly as long as the service: stopped after the drain, and killed if the
 * process exits any other way, so a crashed start leaves no orphan holding the data dir.
 */
export interface EmbeddedRedis {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Whether `pid` is a live process that may be a redis-server (Linux can tell; elsewhere assume so). */
function mayBeRedis(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").startsWith("redis");
  } catch {
    return true;
  }
}

function logTail(file: string, lines = 8): string {
  if (!existsSync(file)) return "(no log written)";
  return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
}

/** Resolves once the port accepts connections; rejects if the child exits first or time runs out. */
function waitForPort(child: ChildProcess, port: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const tryConnect = () => {
      const sock = net.connect(port, "127.0.0.1");
      sock.once("connect", () => {
        sock.end();
        resolve();
      });
      sock.once("error", () => {
        sock.destroy();
        if (child.exitCode !== null || child.signalCode !== null) return reject(new Error(`exited with code ${child.exitCode ?? child.signalCode}`));
        if (Date.now() > deadline) return reject(new Error(`did not accept connections within ${timeoutMs} ms`));
        setTimeout(tryConnect, 50);
      });
    };
    tryConnect();
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}

export async function startEmbeddedRedis(dataDir: string): Promise<EmbeddedRedis> {
  const probe = spawnSync("redis-server", ["--version"], { encoding: "utf8" });
  if (probe.error || probe.status !== 0) {
    throw new Error(
      "REDIS_URL is not set and no redis-server was found on PATH. Either set REDIS_URL=redis://host:6379, " +
        "install Redis (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), " +
        "or run `docker compose up redis`.",
    );
  }
  const dir = path.resolve(dataDir, "redis");
  mkdirSync(dir, { recursive: true });
  const pidFile = path.join(dir, "redis-server.pid");
  const logFile = path.join(dir, "redis-server.log");

  // Two servers appending to one AOF directory corrupt it. A live redis pid here means a
  // redis-server from an earlier run outlived its service (killed with SIGKILL, say). That it is
  // ours cannot be proven, so it is reported rather than killed. (Redis removes the file when
  // it stops cleanly; a leftover file naming a dead or non-redis pid is ignored.)
  if (existsSync(pidFile)) {
    const stale = Number(readFileSync(pidFile, "utf8").trim());
    if (Number.isInteger(stale) && stale > 0 && mayBeRedis(stale)) {
      throw new Error(
        `a redis-server from an earlier run (pid ${stale}, per ${pidFile}) may still be using ${dir}. ` +
          `Stop it (kill ${stale}) or, if that pid is not redis-server, delete the pid file; then start again.`,
      );
    }
  }

  // The free port can be taken between probing and redis binding it: try a few ports.
  let lastError = "";
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const child: ChildProcess = spawn(
      "redis-server",
      [
        "--port", String(port),
        "--bind", "127.0.0.1",
        "--dir", dir,
        "--appendonly", "yes",
        "--save", "",
        "--maxmemory-policy", "noeviction",
        "--pidfile", pidFile,
        "--logfile", logFile,
      ],
      // Its own process group: Ctrl-C in a terminal reaches the service, which drains while
      // Redis is still up and stops Redis last, instead of both dying at once.
      { stdio: "ignore", detached: true },
    );
    const killOnExit = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    };
    process.once("exit", killOnExit);
    try {
      await waitForPort(child, port, 10_000);
    } catch (e) {
      process.off("exit", killOnExit);
      await stopChild(child);
      lastError = `${(e as Error).message}; last lines of ${logFile}:\n${logTail(logFile)}`;
      continue;
    }
    return {
      url: `redis://127.0.0.1:${port}`,
      pid: child.pid!,
      async stop() {
        await stopChild(child);
        process.off("exit", killOnExit);
      },
    };
  }
  throw new Error(`embedded redis-server did not start: ${lastError}`);
}
