import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: {
    // graphql 16 ships CJS (`main`) and ESM (`module`) copies. Node, and so production, loads the
    // CJS one for everybody; Vite would hand our source the ESM one while Apollo and type-graphql
    // (external) keep the CJS one. Two copies break `instanceof GraphQLError` and reject schemas
    // "from another realm", so tests would see behaviour production never has. One copy, as in Node.
    alias: [{ find: /^graphql$/, replacement: "graphql/index.js" }],
  },
  test: {
    include: ["test/**/*.test.ts"],
    // Drops the Redis keys under this run's key prefixes once every file is done.
    globalSetup: ["test/support/global-cleanup.ts"],
    // Integration tests talk to the real Postgres and Redis; each file has its own database
    // and key prefix, so files may run side by side. Two cores: two workers.
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ["default"],
  },
});
