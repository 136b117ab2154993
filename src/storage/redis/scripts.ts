import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { RedisClient } from "./client.js";

/**
 * The Lua scripts, loaded from their files and run with EVALSHA (ioredis falls back to EVAL
 * when a script is not cached, e.g. after a restart or on a new cluster node).
 * Replies are arrays of strings; `ScriptReply` types are parsed by the callers.
 */
const DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "scripts");

const load = (name: string) => readFileSync(path.join(DIR, `${name}.lua`), "utf8");

export const SCRIPTS = {
  reserve: load("reserve"),
  settle: load("settle"),
  seed: load("seed"),
  restore: load("restore"),
  reconcile: load("reconcile"),
} as const;

type ScriptName = keyof typeof SCRIPTS;

interface ScriptCommands {
  llmReserve(numKeys: number, ...args: string[]): Promise<unknown>;
  llmSettle(numKeys: number, ...args: string[]): Promise<unknown>;
  llmSeed(numKeys: number, ...args: string[]): Promise<unknown>;
  llmRestore(numKeys: number, ...args: string[]): Promise<unknown>;
  llmReconcile(numKeys: number, ...args: string[]): Promise<unknown>;
}

const COMMAND_NAME: Record<ScriptName, keyof ScriptCommands> = {
  reserve: "llmReserve",
  settle: "llmSettle",
  seed: "llmSeed",
  restore: "llmRestore",
  reconcile: "llmReconcile",
};

/**
 * On Redis Cluster, scripts go out as plain EVALSHA instead of the defined commands. With
 * auto-pipelining, ioredis puts a command into the pipeline of the node that serves its first
 * key, but for a custom command it takes the first argument as the key, here the key count:
 * under concurrency, commands for different nodes shared a pipeline and all of it failed
 * ("All keys in the pipeline should belong to the same slots allocation group"). EVALSHA is a
 * command ioredis knows, so it is routed by its first key and keeps its pipelining. A node that
 * does not have the script yet answers NOSCRIPT once; EVAL sends it (and caches it there).
 */
function runOnCluster(client: RedisClient, lua: string, sha: string, keys: string[], args: string[]): Promise<unknown> {
  return client.evalsha(sha, keys.length, ...keys, ...args).catch((err: Error) => {
    if (!/^NOSCRIPT/.test(err.message)) throw err;
    return client.eval(lua, keys.length, ...keys, ...args);
  });
}

const sha1 = (lua: string) => createHash("sha1").update(lua).digest("hex");

/** Typed access to the scripts on one connection (defined once per connection). */
export class RedisScripts {
  private readonly commands: ScriptCommands;
  private readonly shas = new Map<ScriptName, string>();

  constructor(private readonly client: RedisClient) {
    for (const [name, lua] of Object.entries(SCRIPTS)) {
      client.defineCommand(COMMAND_NAME[name as ScriptName], { lua });
      this.shas.set(name as ScriptName, sha1(lua));
    }
    this.commands = client as unknown as ScriptCommands;
  }

  run(name: ScriptName, keys: string[], args: string[]): Promise<string[]> {
    if (this.client.isCluster) return runOnCluster(this.client, SCRIPTS[name], this.shas.get(name)!, keys, args) as Promise<string[]>;
    return this.commands[COMMAND_NAME[name]](keys.length, ...keys, ...args) as Promise<string[]>;
  }
}

/**
 * The abuse controls' scripts (src/domain/abuse): spend and key statistics, breaker state,
 * the evaluator's lease and failed-auth throttling. Kept apart from the hot path's so neither
 * list has to know the other; defined on the connection the same way.
 */
export const ABUSE_SCRIPTS = {
  spendRecord: load("spend-record"),
  breakerApply: load("breaker-apply"),
  breakerLeaseRelease: load("breaker-lease-release-1"),
  authThrottleFail: load("auth-throttle-fail-2"),
} as const;

export type AbuseScriptName = keyof typeof ABUSE_SCRIPTS;

type ScriptCommand = (numKeys: number, ...args: string[]) => Promise<unknown>;

export class AbuseScripts {
  private readonly commands: Record<string, ScriptCommand>;
  private readonly shas = new Map<AbuseScriptName, string>();

  constructor(private readonly client: RedisClient) {
    for (const [name, lua] of Object.entries(ABUSE_SCRIPTS)) {
      client.defineCommand(`llmAbuse_${name}`, { lua });
      this.shas.set(name as AbuseScriptName, sha1(lua));
    }
    this.commands = client as unknown as Record<string, ScriptCommand>;
  }

  run(name: AbuseScriptName, keys: string[], args: string[]): Promise<unknown> {
    if (this.client.isCluster) return runOnCluster(this.client, ABUSE_SCRIPTS[name], this.shas.get(name)!, keys, args);
    return this.commands[`llmAbuse_${name}`]!(keys.length, ...keys, ...args);
  }
}
