import { loadConfig, ConfigError } from "./config/config.js";
import { compose } from "./compose.js";

// Entry point: loadConfig → compose → listen; drains on SIGTERM/SIGINT.
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
const app = await compose(config);
const port = await app.listen();
app.logger.info({ port, host: config.http.host, database: app.database.kind }, `listening on http://${config.http.host}:${port}/graphql`);

let stopping = false;
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    app.logger.info({ signal: sig }, "draining");
    app
      .stop()
      .then(() => process.exit(0))
      .catch((err) => {
        app.logger.error({ err }, "shutdown failed");
        process.exit(1);
      });
  });
}
