import { afterAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { mainThreadScavenges } from "../support/gc-trace.js";
import { createHotPathRedis, whenReady, type RedisClient } from "../../src/storage/redis/client.js";
import { REDIS_CLUSTER_NODES, REDIS_URL, uniqueName } from "../support/env.js";

/**
 * The hot-path client's pipelines (src/storage/redis/lean-pipeline.ts): the same object ioredis
 * builds, minus the per-instance `length` accessor whose closure, referenced from the old
 * generation, kept every pipeline, with the request behind it, alive through every scavenge.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const prefix = `${uniqueName("lean")}:`;
const clients: RedisClient[] = [];

function hotPathClient(): RedisClient {
  const client = createHotPathRedis({
    url: REDIS_URL,
    clusterNodes: REDIS_CLUSTER_NODES ? REDIS_CLUSTER_NODES.split(",") : [],
    keyPrefix: prefix,
    commandTimeoutMs: 2_000,
  });
  client.defineCommand("leanEcho", { numberOfKeys: 1, lua: "return {KEYS[1], ARGV[1]}" });
  clients.push(client);
  return client;
}

type Pipeline = Record<string, unknown> & { length: number; constructor: new (...args: unknown[]) => unknown };
/** A pipeline from ioredis's own constructor, for comparison. */
function ioredisPipeline(client: RedisClient): Pipeline {
  return (Object.getPrototypeOf(client) as { pipeline(this: RedisClient): Pipeline }).pipeline.call(client);
}

afterAll(async () => {
  for (const c of clients) {
    const keys = c.isCluster ? [] : await c.keys(`${prefix}*`);
    if (keys.length) await c.unlink(...keys.map((k) => k.slice(prefix.length)));
    c.disconnect();
  }
});

describe("the hot-path client's pipelines", () => {
  it("are ioredis's pipeline, field for field, with length and the scripts on a shared prototype", () => {
    const client = hotPathClient();
    const own = ioredisPipeline(client);
    const lean = client.pipeline() as unknown as Pipeline;
    expect(lean).toBeInstanceOf(own.constructor);
    expect(Object.getPrototypeOf(Object.getPrototypeOf(lean))).toBe(Object.getPrototypeOf(own));
    // ioredis copies each script's two functions onto every pipeline; here they are inherited.
    const scriptFunctions = ["leanEcho", "leanEchoBuffer"];
    for (const f of scriptFunctions) {
      expect(typeof own[f], f).toBe("function");
      expect(Object.prototype.hasOwnProperty.call(lean, f), f).toBe(false);
      expect(lean[f], f).toBe(own[f]);
    }
    // The other fields in the same order: an ioredis upgrade that changes its constructor fails here.
    const ownFields = Object.getOwnPropertyNames(own).filter((k) => k !== "length" && !scriptFunctions.includes(k));
    expect(Object.getOwnPropertyNames(lean)).toEqual(ownFields);
    for (const k of ownFields) {
      expect(typeof lean[k], k).toBe(typeof own[k]);
      if (!["promise", "resolve", "reject"].includes(k)) expect(lean[k], k).toEqual(own[k]);
    }
    expect(lean.redis).toBe(client);
    expect(lean.options).toBe(own.options);
    expect(Object.prototype.hasOwnProperty.call(own, "length")).toBe(true);
    expect(Object.prototype.hasOwnProperty.call(lean, "length")).toBe(false);
    expect(lean.length).toBe(0);
    (lean as unknown as { incr(k: string): unknown }).incr("x");
    expect(lean.length).toBe(1);
    // A script defined after the client was made reaches the pipelines too.
    client.defineCommand("leanLater", { numberOfKeys: 0, lua: "return 1" });
    expect((client.pipeline() as unknown as Pipeline).leanLater).toBe((client as unknown as Pipeline).leanLater);
    expect(Object.keys(ioredisPipeline(client)._shaToScript as object)).toEqual(Object.keys((client.pipeline() as unknown as Pipeline)._shaToScript as object));
  });

  it("carry auto-pipelined commands, explicit pipelines, scripts and transactions", async () => {
    const client = hotPathClient();
    expect(await whenReady(client, 10_000)).toBe(true);
    const counter = "{lean}counter";
    const many = await Promise.all(Array.from({ length: 50 }, () => client.incr(counter)));
    expect([...many].sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    const results = await client.pipeline().set("{lean}a", "1").incrby("{lean}a", 41).get("{lean}a").exec();
    expect(results).toEqual([
      [null, "OK"],
      [null, 42],
      [null, "42"],
    ]);
    const echoed = await (client as unknown as { leanEcho(k: string, v: string): Promise<string[]> }).leanEcho("{lean}k", "v");
    expect(echoed).toEqual([`${prefix}{lean}k`, "v"]);
    const scripted = await (client.pipeline() as unknown as { leanEcho(k: string, v: string): { exec(): Promise<unknown> } }).leanEcho("{lean}k", "w").exec();
    expect(scripted).toEqual([[null, [`${prefix}{lean}k`, "w"]]]);
    const tx = await client.multi().incr("{lean}t").incr("{lean}t").exec();
    expect(tx).toEqual([
      [null, 1],
      [null, 2],
    ]);
    // A command error comes back in its slot, the pipeline's other commands stand.
    const mixed = await client.pipeline().set("{lean}s", "text").incr("{lean}s").get("{lean}s").exec();
    expect(mixed![1]![0]).toBeInstanceOf(Error);
    expect(mixed![2]).toEqual([null, "text"]);
  });

  it("let a scavenge collect them (ioredis's own survive it)", async () => {
    // What each scavenge keeps while 4,000 commands go through one after another: the median
    // of the main thread's last ten scavenges, from node's own GC trace.
    const survivedKb = async (kind: "lean" | "ioredis") => {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ["--trace-gc-nvp", "--max-semi-space-size=4", "--import", "tsx", path.join(ROOT, "test/ops/pipeline-gc.child.ts"), kind],
        { cwd: ROOT, env: { ...process.env, TEST_REDIS_URL: REDIS_URL, TEST_REDIS_CLUSTER_NODES: REDIS_CLUSTER_NODES }, maxBuffer: 64 * 1024 * 1024 },
      );
      const main = mainThreadScavenges(stdout, "new_space_survived");
      expect(main.length, `scavenges seen for ${kind}`).toBeGreaterThanOrEqual(12);
      const last = main.slice(-10).sort((a, b) => a - b);
      return last[5]!;
    };
    const lean = await survivedKb("lean");
    const ioredis = await survivedKb("ioredis");
    expect(lean).toBeLessThan(200);
    expect(ioredis).toBeGreaterThan(3 * lean);
  });
});
