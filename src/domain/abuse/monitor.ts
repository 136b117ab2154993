import type { Clock } from "../../lib/clock.js";
import type { Logger } from "../../lib/logger.js";
import type { PolicyLoader } from "../enforcement/policy-cache.js";
import type { AnomalyService } from "./anomaly.service.js";
import type { BreakerService } from "./breaker.service.js";
import type { AbuseStore } from "./ports.js";

export interface AbuseMonitorOptions {
  store: AbuseStore;
  breakers: BreakerService;
  anomalies: AnomalyService;
  policy: PolicyLoader;
  clock: Clock;
  logger: Logger;
  /** Tenants with usage this recent are evaluated (plus every tenant whose breaker is not closed). */
  activeForMs: number;
  /** Upper bound of one run; the lease that keeps runs from overlapping lasts this long. */
  leaseMs: number;
}

export interface EvaluationRun {
  ran: boolean;
  tenants: number;
  anomalies: number;
  failures: number;
}

/**
 * One evaluation pass over every active tenant: its breaker, its keys' anomalies, then the
 * global breaker over the sum of their spend, then expired degradations. Run by the abuse job
 * on a schedule; a lease in Redis keeps two workers from evaluating at the same time (their
 * writes would be safe — compare-and-set — but wasted). One tenant's failure does not stop
 * the others.
 */
export class AbuseMonitor {
  constructor(private readonly o: AbuseMonitorOptions) {}

  async evaluate(): Promise<EvaluationRun> {
    const lease = await this.o.store.tryLease("evaluate", this.o.leaseMs);
    if (!lease) return { ran: false, tenants: 0, anomalies: 0, failures: 0 };
    try {
      const now = this.o.clock.now().getTime();
      const tenantIds = await this.o.store.activeTenants(now - this.o.activeForMs);
      const globalSpend = new Map<number, bigint>();
      let globalSeed = 0;
      let anomalies = 0;
      let failures = 0;
      for (const tenantId of tenantIds) {
        try {
          const evaluated = await this.o.breakers.evaluateTenant(tenantId, now);
          if (!evaluated) continue;
          for (const [b, v] of evaluated.spend) globalSpend.set(b, (globalSpend.get(b) ?? 0n) + v);
          globalSeed += evaluated.baselinePerBucket;
          const tenant = await this.o.policy.tenant(tenantId);
          const tier = tenant ? await this.o.policy.tier(tenant.tierId) : null;
          if (tenant && tier) anomalies += await this.o.anomalies.evaluateTenant(tenant, tier, now);
        } catch (err) {
          failures++;
          this.o.logger.warn({ err: (err as Error).message, tenantId }, "abuse evaluation of a tenant failed");
        }
      }
      try {
        await this.o.breakers.evaluateGlobal(globalSpend, now, globalSeed);
        await this.o.anomalies.expireDegradations(now);
      } catch (err) {
        failures++;
        this.o.logger.warn({ err: (err as Error).message }, "global abuse evaluation failed");
      }
      return { ran: true, tenants: tenantIds.length, anomalies, failures };
    } finally {
      await this.o.store.releaseLease("evaluate", lease).catch(() => undefined);
    }
  }
}
