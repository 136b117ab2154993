/**
 * Run by lean-pipeline.test.ts as
 *   node --trace-gc-nvp --max-semi-space-size=4 --import tsx <this file> lean|ioredis
 * Sends 4,000 commands one after another through the hot-path client (auto-pipelined, as a
 * request does), with the client's own pipelines (lean) or ioredis's; node's GC trace on stdout
 * tells how much each scavenge kept.
 */
import { createHotPathRedis, whenReady } from "../../src/storage/redis/client.js";

const nodes = process.env.TEST_REDIS_CLUSTER_NODES ?? "";
const client = createHotPathRedis({
  url: process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379",
  clusterNodes: nodes ? nodes.split(",") : [],
  keyPrefix: `pipeline-gc-${process.pid}:`,
  commandTimeoutMs: 5_000,
});
if (process.argv[2] === "ioredis") {
  (client as unknown as { pipeline: unknown }).pipeline = (Object.getPrototypeOf(client) as { pipeline: unknown }).pipeline;
}
if (!(await whenReady(client, 10_000))) throw new Error("redis not ready");
for (let i = 0; i < 4_000; i++) {
  // A request's worth of short-lived strings riding on the command.
  await client.set("{gc}k", Array.from({ length: 20 }, (_, j) => `${i}:${j}`.padEnd(50, "x")).join(""), "PX", 10_000);
}
await client.del("{gc}k");
client.disconnect();
