import { createHash } from "node:crypto";
import { and, desc, eq, gte, lt, or, sql, type SQL } from "drizzle-orm";
import type { Db } from "./db.js";
import { anomalies, apiKeys, decisionAudit } from "./schema/index.js";
import { appendOutboxEvents } from "./outbox.repository.js";
import { insertAudit, jsonSafe } from "./audit.repository.js";
import type { AuditEntry, AuditFilter, AuditKind, AuditReader, AuditRecord, DecisionAuditGroup, DecisionAuditSink } from "../../domain/abuse/audit.js";
import type { Anomaly } from "../../domain/abuse/anomaly.js";
import type { AbuseRepository, AnomalyQuery } from "../../domain/abuse/ports.js";
import type { NewQuotaEvent } from "../../domain/events/types.js";

type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];
type Conn = Db | Tx;

async function rowsOf<T>(conn: Conn, query: SQL): Promise<T[]> {
  return ((await conn.execute(query)) as unknown as { rows: T[] }).rows;
}

/** Through the outbox's own append (type, id and payload checks; the relay publishes it). */
async function insertEvent(conn: Conn, e: NewQuotaEvent): Promise<void> {
  await appendOutboxEvents(conn, [e], new Date());
}

type AnomalyRow = typeof anomalies.$inferSelect;
const anomalyFromRow = (r: AnomalyRow): Anomaly => ({
  id: r.id,
  kind: r.kind,
  tenantId: r.tenantId,
  keyId: r.keyId,
  source: r.source,
  keyPrefix: r.keyPrefix,
  detectedAt: r.detectedAt,
  windowStart: r.windowStart,
  windowEnd: r.windowEnd,
  evidence: r.evidence,
  action: r.action,
  actionResult: r.actionResult,
});

interface AuditRow {
  src: "L" | "D";
  id: string;
  at_us: string;
  at: Date | string;
  actor_kind: string;
  actor_id: string;
  tenant_id: string | null;
  key_id: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  route: string | null;
  model: string | null;
  input_tokens: string | null;
  output_tokens: string | null;
  decision: string | null;
  reason: string | null;
  count: number | string;
  source: string | null;
  details: Record<string, unknown> | string | null;
}

const CURSOR_RE = /^(\d{1,20})\|([LD])\|(\d{1,20})$/;

/** The kind an audit_log row is shown as (a row may match more filters: OPERATOR covers every person's action). */
function kindOfLogRow(action: string, actorKind: string): AuditKind {
  if (action.startsWith("breaker.")) return "BREAKER";
  if (action.startsWith("anomaly.")) return "ANOMALY";
  if (action.startsWith("degradation.") || action.startsWith("apiKey.degrade")) return "DEGRADATION";
  return actorKind === "system" ? "SYSTEM" : "OPERATOR";
}

/**
 * Postgres side of the abuse controls: anomalies, breaker/anomaly events with their audit
 * entries (one transaction each), the aggregated decision audit, and the audit trail query
 * (audit_log and decision_audit as one newest-first list).
 */
export class PostgresAbuseRepository implements AbuseRepository, AuditReader, DecisionAuditSink {
  constructor(private readonly db: Db) {}

  async recordBreakerTransition(event: NewQuotaEvent, audit: AuditEntry): Promise<void> {
    await this.db.transaction(async (tx) => {
      await insertEvent(tx, event);
      await insertAudit(tx, audit);
    });
  }

  async recordAudit(audit: AuditEntry): Promise<void> {
    await insertAudit(this.db, audit);
  }

  async recordAnomaly(a: Anomaly, event: NewQuotaEvent, audit: AuditEntry): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.insert(anomalies).values({
        id: a.id,
        kind: a.kind,
        tenantId: a.tenantId,
        keyId: a.keyId,
        source: a.source,
        keyPrefix: a.keyPrefix,
        detectedAt: a.detectedAt,
        windowStart: a.windowStart,
        windowEnd: a.windowEnd,
        evidence: jsonSafe(a.evidence),
        action: a.action,
        actionResult: a.actionResult,
      });
      await insertEvent(tx, event);
      await insertAudit(tx, audit);
    });
  }

  async setAnomalyActionResult(id: string, result: string): Promise<void> {
    await this.db.update(anomalies).set({ actionResult: result }).where(eq(anomalies.id, id));
  }

  async anomalies(q: AnomalyQuery, page: { first: number; after: { at: Date; id: string } | null }): Promise<Anomaly[]> {
    const where: SQL[] = [];
    if (q.tenantId !== null) where.push(eq(anomalies.tenantId, q.tenantId));
    if (q.kind !== null) where.push(eq(anomalies.kind, q.kind));
    if (q.from !== null) where.push(gte(anomalies.detectedAt, q.from));
    if (q.to !== null) where.push(lt(anomalies.detectedAt, q.to));
    if (page.after) {
      where.push(or(lt(anomalies.detectedAt, page.after.at), and(eq(anomalies.detectedAt, page.after.at), lt(anomalies.id, page.after.id)))!);
    }
    const rows = await this.db
      .select()
      .from(anomalies)
      .where(where.length ? and(...where) : undefined)
      .orderBy(desc(anomalies.detectedAt), desc(anomalies.id))
      .limit(page.first + 1);
    return rows.map(anomalyFromRow);
  }

  async ledgerSpend(tenantId: string, from: Date, to: Date): Promise<{ costNano: bigint; firstAt: Date | null }> {
    // period_day is the tenant-local day the reservation was made: a day either side of the UTC
    // dates covers every time zone, two more a reservation's TTL and late commit, and the bound
    // lets the (tenant_id, period_day) index narrow the scan. (Rarer late commits only make a
    // heuristic baseline a little lower.)
    const day = (d: Date, shift: number) => new Date(d.getTime() + shift * 86_400_000).toISOString().slice(0, 10);
    const rows = await rowsOf<{ cost: string | null; first: Date | string | null }>(
      this.db,
      sql`SELECT coalesce(sum(cost_nano), 0)::text AS cost, min(recorded_at) AS first FROM usage_ledger
          WHERE tenant_id = ${tenantId} AND period_day >= ${day(from, -3)} AND period_day <= ${day(to, 1)}
            AND entry = 'COMMIT' AND recorded_at >= ${from.toISOString()}::timestamptz AND recorded_at < ${to.toISOString()}::timestamptz`,
    );
    const r = rows[0];
    return { costNano: BigInt(r?.cost ?? "0"), firstAt: r?.first ? new Date(r.first) : null };
  }

  async tenantOfKey(keyId: string): Promise<string | null> {
    const rows = await this.db.select({ tenantId: apiKeys.tenantId }).from(apiKeys).where(eq(apiKeys.id, keyId)).limit(1);
    return rows[0]?.tenantId ?? null;
  }

  // ── aggregated decisions ──

  async add(groups: DecisionAuditGroup[]): Promise<void> {
    if (groups.length === 0) return;
    const rows = groups.map((g) => ({
      minute: g.minute,
      groupKey: createHash("sha256")
        .update(JSON.stringify([g.actorKind, g.actorId, g.tenantId, g.keyId, g.keyPrefix, g.source, g.route, g.model, g.outcome, g.reason]))
        .digest("hex"),
      actorKind: g.actorKind,
      actorId: g.actorId,
      tenantId: g.tenantId,
      keyId: g.keyId,
      keyPrefix: g.keyPrefix,
      source: g.source,
      route: g.route,
      model: g.model,
      outcome: g.outcome,
      reason: g.reason,
      count: g.count,
      inputTokens: g.inputTokens,
      outputTokens: g.outputTokens,
      lastAt: g.lastAt,
      message: g.message.slice(0, 500),
    }));
    await this.db
      .insert(decisionAudit)
      .values(rows)
      .onConflictDoUpdate({
        target: [decisionAudit.minute, decisionAudit.groupKey],
        set: {
          count: sql`${decisionAudit.count} + excluded.count`,
          inputTokens: sql`${decisionAudit.inputTokens} + excluded.input_tokens`,
          outputTokens: sql`${decisionAudit.outputTokens} + excluded.output_tokens`,
          lastAt: sql`greatest(${decisionAudit.lastAt}, excluded.last_at)`,
          message: sql`excluded.message`,
        },
      });
  }

  // ── the trail ──

  isCursor(key: string): boolean {
    return CURSOR_RE.test(key);
  }

  async query(f: AuditFilter, page: { first: number; after: string | null }): Promise<AuditRecord[]> {
    const logWhere: SQL[] = [];
    const decWhere: SQL[] = [];
    let withLog = true;
    let withDec = true;
    switch (f.kind) {
      case null:
        break;
      case "DENIAL":
        withLog = false;
        decWhere.push(sql`d.outcome = 'DENY'`);
        break;
      case "DEGRADATION":
        logWhere.push(sql`(l.action LIKE 'degradation.%' OR l.action LIKE 'apiKey.degrade%')`);
        decWhere.push(sql`d.outcome = 'ALLOW_DEGRADED'`);
        break;
      case "BREAKER":
        withDec = false;
        logWhere.push(sql`l.action LIKE 'breaker.%'`);
        break;
      case "ANOMALY":
        withDec = false;
        logWhere.push(sql`l.action LIKE 'anomaly.%'`);
        break;
      case "OPERATOR":
        withDec = false;
        logWhere.push(sql`l.actor_kind <> 'system'`);
        break;
      case "SYSTEM":
        withDec = false;
        logWhere.push(sql`l.actor_kind = 'system'`);
        break;
    }
    if (f.tenantId !== null) {
      logWhere.push(sql`l.tenant_id = ${f.tenantId}`);
      decWhere.push(sql`d.tenant_id = ${f.tenantId}`);
    }
    if (f.actorId !== null) {
      logWhere.push(sql`l.actor_id = ${f.actorId}`);
      decWhere.push(sql`d.actor_id = ${f.actorId}`);
    }
    if (f.from !== null) {
      logWhere.push(sql`l.at >= ${f.from.toISOString()}::timestamptz`);
      decWhere.push(sql`d.minute >= ${f.from.toISOString()}::timestamptz`);
    }
    if (f.to !== null) {
      logWhere.push(sql`l.at < ${f.to.toISOString()}::timestamptz`);
      decWhere.push(sql`d.minute < ${f.to.toISOString()}::timestamptz`);
    }
    let cursor: SQL = sql``;
    if (page.after !== null) {
      const m = CURSOR_RE.exec(page.after)!;
      const [us, src, id] = [m[1]!, m[2]!, m[3]!];
      // Coarse and index-friendly inside each branch, exact on the union.
      const bound = sql`(timestamptz 'epoch' + ${us}::bigint * interval '1 microsecond')`;
      logWhere.push(sql`l.at <= ${bound}`);
      decWhere.push(sql`d.minute <= ${bound}`);
      cursor = sql`WHERE (u.at_us, u.src, u.id) < (${us}::bigint, ${src}::text, ${id}::bigint)`;
    }
    const whereOf = (w: SQL[]) => (w.length ? sql`WHERE ${sql.join(w, sql` AND `)}` : sql``);
    const branches: SQL[] = [];
    if (withLog) {
      branches.push(sql`SELECT 'L'::text AS src, l.id, (extract(epoch FROM l.at) * 1000000)::bigint AS at_us, l.at,
          l.actor_kind, l.actor_id, l.tenant_id,
          CASE WHEN l.target_type = 'apiKey' THEN l.target_id END AS key_id,
          l.action, l.target_type, l.target_id,
          NULL::text AS route, NULL::text AS model, NULL::bigint AS input_tokens, NULL::bigint AS output_tokens,
          NULL::text AS decision, NULL::text AS reason, 1 AS count, NULL::text AS source, l.details
        FROM audit_log l ${whereOf(logWhere)}`);
    }
    if (withDec) {
      branches.push(sql`SELECT 'D'::text AS src, d.id, (extract(epoch FROM d.minute) * 1000000)::bigint AS at_us, d.minute AS at,
          d.actor_kind, d.actor_id, d.tenant_id, d.key_id,
          CASE d.outcome WHEN 'DENY' THEN 'decision.denied' ELSE 'decision.degraded' END AS action,
          'apiKey'::text AS target_type, coalesce(d.key_id, d.key_prefix) AS target_id,
          d.route, d.model, d.input_tokens, d.output_tokens, d.outcome AS decision, d.reason, d.count, d.source,
          jsonb_build_object('message', d.message, 'keyPrefix', d.key_prefix, 'lastAt', d.last_at) AS details
        FROM decision_audit d ${whereOf(decWhere)}`);
    }
    const rows = await rowsOf<AuditRow>(
      this.db,
      sql`SELECT * FROM (${sql.join(branches, sql` UNION ALL `)}) u ${cursor}
          ORDER BY u.at_us DESC, u.src DESC, u.id DESC LIMIT ${page.first + 1}`,
    );
    return rows.map((r) => {
      const details = typeof r.details === "string" ? (JSON.parse(r.details) as Record<string, unknown>) : (r.details ?? {});
      const rec: AuditRecord = {
        id: `${r.src === "L" ? "log" : "dec"}_${r.id}`,
        at: new Date(r.at),
        kind: r.src === "D" ? (r.decision === "DENY" ? "DENIAL" : "DEGRADATION") : kindOfLogRow(r.action, r.actor_kind),
        actorKind: r.actor_kind,
        actorId: r.actor_id,
        tenantId: r.tenant_id,
        keyId: r.key_id,
        action: r.action,
        targetType: r.target_type,
        targetId: r.target_id,
        route: r.route,
        model: r.model,
        inputTokens: r.input_tokens === null ? null : BigInt(r.input_tokens),
        outputTokens: r.output_tokens === null ? null : BigInt(r.output_tokens),
        decision: r.decision,
        reason: r.reason,
        count: Number(r.count),
        source: r.source,
        details,
        // The timestamp to the microsecond: audit_log rows written in one millisecond stay ordered.
        sortKey: `${r.at_us}|${r.src}|${r.id}`,
      };
      return rec;
    });
  }
}
