import { compose, type App } from "../../src/compose.js";
import { createTestDatabase, testEnv, BOOTSTRAP_TOKEN } from "./env.js";
import { loadConfig } from "../../src/config/config.js";
import { GraphQLClient } from "./client.js";
import { unlinkKeys } from "./redis-keys.js";

/**
 * Removes the keys a test app left under its own prefix, so the machine's shared Redis does not
 * grow with every run. Single-node Redis only (the cluster run's nodes are recreated by CI).
 */
async function dropPrefixedKeys(env: Record<string, string>): Promise<void> {
  const prefix = env.REDIS_KEY_PREFIX;
  if (!prefix || !env.REDIS_URL || env.REDIS_CLUSTER_NODES) return;
  await unlinkKeys(env.REDIS_URL, `${prefix}*`);
}

export interface TestApp {
  app: App;
  url: string;
  databaseUrl: string;
  env: Record<string, string>;
  /** A client holding the bootstrap ADMIN token. */
  admin: GraphQLClient;
  client(token?: string): GraphQLClient;
  close(): Promise<void>;
}

/** An in-process service on a random port, over its own database and Redis key prefix. */
export async function startTestApp(extraEnv: Record<string, string> = {}): Promise<TestApp> {
  const db = await createTestDatabase();
  const env = testEnv(db.url, extraEnv);
  const app = await compose(loadConfig(env));
  const port = await app.listen();
  const url = `http://127.0.0.1:${port}/graphql`;
  return {
    app,
    url,
    databaseUrl: db.url,
    env,
    admin: new GraphQLClient(url, BOOTSTRAP_TOKEN),
    client: (token?: string) => new GraphQLClient(url, token),
    async close() {
      await app.stop();
      await db.drop();
      await dropPrefixedKeys(env);
    },
  };
}
