import { loadConfig, ConfigError } from "./config/config.js";
import { compose, type App } from "./compose.js";
import { createLogger } from "./lib/logger.js";

// Entry point: loadConfig → compose → listen; drains on SIGTERM/SIGINT.
// Exit codes: 0 after a drain, 1 when starting or draining failed (or a second signal cut the
// drain short), 2 for an invalid configuration.
let config;
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
  const port = await app.listen();
  logger.info({ port, host: config.http.host, database: app.database.kind }, `listening on http://${config.http.host}:${port}/graphql`);
} catch (err) {
  // One readable line for the operator (e.g. "no redis-server on PATH …"), not a bare stack.
  logger.fatal({ err }, `startup failed: ${(err as Error).message}`);
  process.exit(1);
}
