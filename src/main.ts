import cluster from "node:cluster";
import v8 from "node:v8";
import { loadConfig, ConfigError, type Config } from "./config/config.js";
import { compose, type App } from "./compose.js";
import { createLogger } from "./lib/logger.js";
import { clusterRenderer, serveClusterMetrics } from "./metrics/cluster-metrics.js";

// Entry point: loadConfig → compose → listen; drains on SIGTERM/SIGINT.
// Exit codes: 0 after a drain, 1 when starting or draining failed (or a second signal cut the
// drain short), 2 for an invalid configuration.
let config: Config;
try {
  config = loadConfig(process.env);
} catch (e) {
  if (e instanceof ConfigError) {
    console.error(e.message);
    process.exit(2);
  }
  throw e;
}
const logger = createLogger({ level: config.log.level });
checkHeapLimit();

/**
 * WEB_CONCURRENCY > 1: this process only supervises; that many workers (node:cluster) each
 * compose the whole app and share the listening port. The primary forwards stop signals and
 * exits once every worker has drained, 0 if all did cleanly. A worker that dies while serving is
 * replaced; one that dies before it ever listened means start-up is broken, and the primary
 * stops the rest and exits 1 rather than restart it forever.
 */
if (config.http.workers > 1 && cluster.isPrimary) {
  serveClusterMetrics();
  let stoppingAt: number | null = null;
  let failed = false;
  const listened = new Set<number>();
  const live = () => Object.values(cluster.workers ?? {}).filter((w) => w !== undefined);
  const stopAll = (signal: NodeJS.Signals) => {
    for (const w of live()) w.process.kill(signal);
  };
  cluster.on("listening", (worker) => listened.add(worker.id));
  cluster.on("exit", (worker, code, signal) => {
    const clean = code === 0;
    if (stoppingAt === null && !listened.has(worker.id)) {
      logger.fatal({ pid: worker.process.pid, code, signal }, "a worker failed to start; stopping");
      failed = true;
      stoppingAt = Date.now();
      stopAll("SIGTERM");
    } else if (stoppingAt === null) {
      logger.error({ pid: worker.process.pid, code, signal }, "worker died; starting a replacement");
      cluster.fork();
    } else if (!clean) failed = true;
    if (stoppingAt !== null && live().length === 0) process.exit(failed ? 1 : 0);
  });
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    process.on(sig, () => {
      if (stoppingAt !== null) {
        if (Date.now() - stoppingAt < 1_000) return;
        logger.warn({ signal: sig }, "second signal: killing the workers without finishing the drain");
        stopAll("SIGKILL");
        process.exit(1);
      }
      stoppingAt = Date.now();
      logger.info({ signal: sig, workers: live().length }, "draining the workers");
      stopAll("SIGTERM");
    });
  }
  for (let i = 0; i < config.http.workers; i++) cluster.fork();
  logger.info({ workers: config.http.workers }, "started HTTP workers (WEB_CONCURRENCY)");
} else {
  await serve();
}

async function serve(): Promise<void> {
  let app: App | null = null;
  let stoppingSince: number | null = null;
  // Installed before anything starts: a signal during start-up must still end in process.exit,
  // whose exit hooks stop an embedded redis-server, rather than in the default signal death.
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    process.on(sig, () => {
      if (stoppingSince !== null) {
        // One stop request often arrives twice within milliseconds: Ctrl-C reaches the whole
        // process group and the tsx CLI may relay it as well. A signal a second or more later is
        // an operator asking again (Ctrl-C twice): skip the rest of the drain.
        if (Date.now() - stoppingSince < 1_000) return;
        logger.warn({ signal: sig }, "second signal: exiting without finishing the drain");
        process.exit(1);
      }
      stoppingSince = Date.now();
      if (!app) {
        logger.info({ signal: sig }, "signal during start-up: exiting");
        process.exit(1);
      }
      logger.info({ signal: sig }, "draining");
      app
        .stop()
        .then(() => process.exit(0))
        .catch((err) => {
          logger.error({ err }, "shutdown failed");
          process.exit(1);
        });
    });
  }

  try {
    app = await compose(config, { logger });
    if (cluster.isWorker) app.services.metrics.renderWith(clusterRenderer(app.services.metrics.registry));
    const port = await app.listen();
    logger.info({ port, host: config.http.host, database: app.database.kind }, `listening on http://${config.http.host}:${port}/graphql`);
  } catch (err) {
    // One readable line for the operator (e.g. "no redis-server on PATH …"), not a bare stack.
    logger.fatal({ err }, `startup failed: ${(err as Error).message}`);
    process.exit(1);
  }
}

/**
 * MAX_HEAP_MB only takes effect as node's --max-old-space-size (`npm start` and the Docker image
 * pass it): V8 sizes its heap before any of this code runs. Say so when node was started
 * without it, rather than let the setting silently do nothing.
 */
function checkHeapLimit(): void {
  const limitMb = Math.round(v8.getHeapStatistics().heap_size_limit / 1_048_576);
  const flagged = process.execArgv.some((a) => a.startsWith("--max-old-space-size")) || /--max-old-space-size/.test(process.env.NODE_OPTIONS ?? "");
  if (!flagged) {
    logger.warn(
      { heapLimitMb: limitMb, maxHeapMb: config.runtime.maxHeapMb },
      `node was started without --max-old-space-size: MAX_HEAP_MB=${config.runtime.maxHeapMb} is not applied (use npm start, or pass the flag)`,
    );
  } else if (cluster.isPrimary) {
    logger.info({ heapLimitMb: limitMb }, "V8 heap limit");
  }
}
