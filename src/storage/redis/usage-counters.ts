import type { RedisClient } from "./client.js";
import { RedisScripts } from "./scripts.js";
import { periodLabel, redisKeys, scope as scopeLabel } from "./keys.js";
import type { CounterTarget, CounterUsed, QuotaCounterPort, RepairOutcome } from "../../domain/usage/reconciliation.service.js";

/** The reconcile script's reply codes (scripts/reconcile.lua). */
const REPAIR_OUTCOME: Record<number, RepairOutcome> = { 0: "missing", 1: "busy", 2: "repaired", 3: "unchanged" };

function counterKey(tenantId: string, t: CounterTarget): string {
  const period = t.periodKind === "day" ? periodLabel.day(t.period) : periodLabel.month(t.period);
  const label = t.scope === "tenant" ? scopeLabel.tenant() : scopeLabel.key(t.scope.slice("key:".length));
  return redisKeys.quota(tenantId, period, label);
}

/** Reads and repairs the used parts (tok, usd) of the hot path's quota counter hashes. */
export class RedisQuotaCounters implements QuotaCounterPort {
  private readonly scripts: RedisScripts;

  constructor(private readonly redis: RedisClient) {
    this.scripts = new RedisScripts(redis);
  }

  async read(tenantId: string, targets: CounterTarget[]): Promise<Array<CounterUsed | null>> {
    return Promise.all(
      targets.map(async (t) => {
        const [tok, usd] = await this.redis.hmget(counterKey(tenantId, t), "tok", "usd");
        if (tok === null && usd === null) return null;
        return { tokens: BigInt(tok ?? "0"), costNano: BigInt(usd ?? "0") };
      }),
    );
  }

  async repair(tenantId: string, items: Array<{ target: CounterTarget; expected: CounterUsed; ledger: CounterUsed }>): Promise<RepairOutcome[]> {
    if (items.length === 0) return [];
    const reply = (await this.scripts.run(
      "reconcile",
      items.map((i) => counterKey(tenantId, i.target)),
      [JSON.stringify(items.map((i) => [i.expected.tokens.toString(), i.expected.costNano.toString(), i.ledger.tokens.toString(), i.ledger.costNano.toString()]))],
    )) as unknown as number[];
    return reply.map((code) => {
      const o = REPAIR_OUTCOME[Number(code)];
      if (!o) throw new Error(`unexpected reconcile reply ${code}`);
      return o;
    });
  }
}
