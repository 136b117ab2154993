import type { RedisClient } from "./client.js";

/**
 * ioredis pipelines that do not keep every request alive through every scavenge.
 *
 * With auto-pipelining every hot-path command goes through an ioredis `Pipeline`, and that
 * constructor ends with
 *
 *     const _this = this;
 *     Object.defineProperty(this, "length", { get: function () { return _this._queue.length; } });
 *
 * V8 allocates the accessor pair of an own accessor property in the old generation. So each
 * pipeline leaves an old-generation object behind that points at a young closure, which holds
 * the pipeline, its commands, their promises and, through them, the request that sent them. The
 * pair is dead as soon as the pipeline is, but it stays in the old generation until the next
 * mark-compact, and a scavenge treats old → young pointers as roots: every pipeline of the last
 * seconds, with its request, survived every scavenge, was copied, then promoted. Measured at 50
 * pairs/s, with ioredis's pipelines → with these: the service's scavenges kept 2.4–4.0 → 1.2–1.6
 * MB each, a bare node:http + ioredis server's 2.6 → 0.09 MB; those pauses set the latency tail.
 *
 * `useLeanPipelines` gives a client a `pipeline()` that builds the same object on ioredis's own
 * `Pipeline.prototype` (so `instanceof`, `exec` and the cluster routing are ioredis's), with
 * `length` a getter on a shared prototype. That prototype also carries the client's script and
 * added-command functions, which ioredis copies onto every pipeline (two properties per script,
 * a dozen scripts here); `_shaToScript`, which ioredis fills per pipeline and never reads, is one
 * object per client. Auto-pipelining calls `client.pipeline()`, so it picks all of this up.
 * test/ops/lean-pipeline.test.ts compares the result with a pipeline from ioredis's constructor,
 * so an ioredis upgrade that changes the constructor fails there instead of drifting, and it
 * measures what a scavenge keeps with either.
 */
interface PipelineFields {
  options: unknown;
  scriptsSet: Record<string, unknown>;
  addedBuiltinSet: Set<string>;
  redis: RedisClient;
  isPipeline: boolean;
  replyPending: number;
  _queue: unknown[];
  _result: unknown[];
  _transactions: number;
  _shaToScript: Record<string, unknown>;
  isCluster: boolean;
  promise: Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  addBatch(commands: unknown[][]): unknown;
}

/** The parts of a client (Commander) this reads and wraps. */
interface ClientInternals {
  constructor: { name: string };
  isCluster?: boolean;
  options: unknown;
  scriptsSet: Record<string, { sha: string }>;
  addedBuiltinSet: Set<string>;
  pipeline(this: RedisClient, commands?: unknown[][]): unknown;
  defineCommand(name: string, definition: unknown): void;
  addBuiltinCommand(name: string): void;
  [name: string]: unknown;
}

const LEAN = Symbol("leanPipelines");

export function useLeanPipelines(client: RedisClient): void {
  const c = client as unknown as ClientInternals & { [LEAN]?: true };
  if (c[LEAN]) return;
  // One pipeline from ioredis's own constructor, never executed, to find its prototype (the
  // class is not exported from the package's entry point).
  const pipelinePrototype = Object.getPrototypeOf(c.pipeline.call(client)) as object;
  const shared = Object.create(pipelinePrototype, {
    length: {
      get(this: PipelineFields) {
        return this._queue.length;
      },
    },
  }) as Record<string, unknown>;
  const shaToScript: Record<string, unknown> = {};
  const share = (name: string) => {
    shared[name] = c[name];
    shared[`${name}Buffer`] = c[`${name}Buffer`];
  };
  for (const [name, script] of Object.entries(c.scriptsSet)) {
    shaToScript[script.sha] = script;
    share(name);
  }
  c.addedBuiltinSet.forEach(share);
  // Scripts are defined after the client is made (RedisScripts, AbuseScripts): keep up.
  const defineCommand = c.defineCommand;
  c.defineCommand = function (name, definition) {
    defineCommand.call(this, name, definition);
    shaToScript[c.scriptsSet[name]!.sha] = c.scriptsSet[name];
    share(name);
  };
  const addBuiltinCommand = c.addBuiltinCommand;
  c.addBuiltinCommand = function (name) {
    addBuiltinCommand.call(this, name);
    share(name);
  };
  const isCluster = c.constructor.name === "Cluster" || c.isCluster === true;
  c.pipeline = function leanPipeline(commands) {
    const p = Object.create(shared) as PipelineFields;
    // Commander's constructor, then Pipeline's, field by field in their order. Commander sets
    // `options` to {} and Pipeline then replaces it with the client's: the property keeps its
    // first place, so it is set once, to its final value.
    p.options = c.options;
    p.scriptsSet = {};
    p.addedBuiltinSet = new Set();
    p.redis = this;
    p.isPipeline = true;
    p.replyPending = 0;
    p._queue = [];
    p._result = [];
    p._transactions = 0;
    p._shaToScript = shaToScript;
    p.isCluster = isCluster;
    p.promise = new Promise((resolve, reject) => {
      p.resolve = resolve;
      p.reject = reject;
    });
    if (Array.isArray(commands)) p.addBatch(commands);
    return p;
  };
  c[LEAN] = true;
}
