import { Queue } from "bullmq";
import { loadConfig } from "../config/config.js";
import { createQueueRedis } from "../storage/redis/client.js";
import { JOBS, QUEUES, queuePrefix, type RebuildJobData } from "./queues.js";

/**
 * `npx tsx src/jobs/rebuild-rollups.cli.ts [tenantId]`: queue a full rebuild of the usage
 * rollups from the ledger (all tenants, or one) and wait for a worker to finish it. For repairs:
 * the incremental job never needs it. Reads the same environment as the service.
 */
const tenantId = process.argv[2] ?? null;
const config = loadConfig(process.env);
if (!config.redis.url && config.redis.clusterNodes.length === 0) {
  console.error("REDIS_URL (or REDIS_CLUSTER_NODES) must point at the service's Redis: the rebuild is queued there for its workers.");
  process.exit(2);
}
const connection = createQueueRedis({ ...config.redis, url: config.redis.url ?? "" });
const queue = new Queue(QUEUES.rollup, { connection, prefix: queuePrefix(config.redis.keyPrefix) });
try {
  const job = await queue.add(JOBS.rollupRebuild, { tenantId } satisfies RebuildJobData, {
    jobId: `rebuild-${tenantId ?? "all"}-cli${Date.now()}`,
    attempts: 3,
    backoff: { type: "exponential", delay: 5_000 },
  });
  console.log(`queued ${job.id}; waiting for a worker (WORKERS_ENABLED=true somewhere)…`);
  for (;;) {
    await new Promise((r) => setTimeout(r, 1_000));
    const current = await queue.getJob(job.id!);
    const state = current ? await current.getState() : "missing";
    if (state === "completed") {
      console.log(`rebuilt: ${JSON.stringify(current!.returnvalue)}`);
      break;
    }
    if (state === "failed" && current!.attemptsMade >= (current!.opts.attempts ?? 1)) {
      console.error(`rebuild failed: ${current!.failedReason}`);
      process.exitCode = 1;
      break;
    }
    if (state === "missing") {
      console.error("the job disappeared from the queue (removed, or Redis lost it)");
      process.exitCode = 1;
      break;
    }
  }
} finally {
  await queue.close();
  await connection.quit();
}
