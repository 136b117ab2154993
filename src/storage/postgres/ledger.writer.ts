import { and, eq, sql } from "drizzle-orm";
import type { Db } from "./db.js";
import { usageLedger } from "./schema/index.js";
import type { LedgerEntry, LedgerWriter } from "../../domain/enforcement/types.js";
import type { Logger } from "../../lib/logger.js";
import { unnestInsert, type Column } from "./bulk-insert.js";

const LEDGER_COLUMNS: Column<Pending>[] = [
  { name: "reservation_id", type: "text", value: (p) => p.entry.reservationId },
  { name: "entry", type: "text", value: (p) => p.entry.entry },
  { name: "tenant_id", type: "text", value: (p) => p.entry.tenantId },
  { name: "key_id", type: "text", value: (p) => p.entry.keyId },
  { name: "subject", type: "text", value: (p) => p.entry.subject },
  { name: "route", type: "text", value: (p) => p.entry.route },
  { name: "model", type: "text", value: (p) => p.entry.model },
  { name: "status", type: "text", value: (p) => p.entry.status },
  { name: "input_tokens", type: "bigint", value: (p) => p.entry.inputTokens },
  { name: "output_tokens", type: "bigint", value: (p) => p.entry.outputTokens },
  { name: "reserved_input_tokens", type: "bigint", value: (p) => p.entry.reservedInputTokens },
  { name: "reserved_output_tokens", type: "bigint", value: (p) => p.entry.reservedOutputTokens },
  { name: "cost_nano", type: "bigint", value: (p) => p.entry.costNano },
  { name: "overage", type: "boolean", value: (p) => p.entry.overage },
  { name: "period_day", type: "text", value: (p) => p.entry.periodDay },
  { name: "period_month", type: "text", value: (p) => p.entry.periodMonth },
  { name: "reserved_at", type: "timestamptz", value: (p) => p.entry.reservedAt },
];

const insertLedgerRows = unnestInsert("usage_ledger", LEDGER_COLUMNS, "ON CONFLICT (reservation_id, entry) DO NOTHING");

interface Pending {
  entry: LedgerEntry;
  resolve: () => void;
  reject: (e: unknown) => void;
  /** When it was appended (ms): each commit's commit → durable lag is measured from it. */
  at: number;
}

export interface GroupCommitStats {
  batches: number;
  rows: number;
  lastBatchSize: number;
}

/**
 * Group commit for the usage ledger. Concurrent `append`s wait at most `lingerMs` for company,
 * then go to Postgres as one multi-row INSERT; each caller's promise resolves only once that
 * transaction has committed (durable). While one batch is in flight the next one fills up, so
 * throughput grows with load instead of queueing one round trip per commit.
 * Rows are idempotent on (reservation_id, entry): a retried commit never writes twice.
 */
export class PostgresLedgerWriter implements LedgerWriter {
  private queue: Pending[] = [];
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  readonly stats: GroupCommitStats = { batches: 0, rows: 0, lastBatchSize: 0 };
  /** Observer of each batch's size: metrics hook. */
  onBatch: ((size: number) => void) | null = null;
  /** Observer of each row's ms from append to durable (its commit's wait): metrics hook. */
  onDurable: ((ms: number) => void) | null = null;

  constructor(
    private readonly db: Db,
    private readonly opts: { lingerMs: number; maxBatch: number; logger: Logger },
  ) {}

  append(entry: LedgerEntry): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ entry, resolve, reject, at: Date.now() });
      if (this.queue.length >= this.opts.maxBatch) this.kick();
      else if (!this.timer && !this.inFlight) this.timer = setTimeout(() => this.kick(), this.opts.lingerMs);
    });
  }

  private kick(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.inFlight || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.opts.maxBatch);
    this.inFlight = this.write(batch)
      .then(
        () => {
          this.stats.batches++;
          this.stats.rows += batch.length;
          this.stats.lastBatchSize = batch.length;
          this.onBatch?.(batch.length);
          const now = Date.now();
          for (const p of batch) {
            this.onDurable?.(now - p.at);
            p.resolve();
          }
        },
        (err) => {
          this.opts.logger.error({ err, rows: batch.length }, "ledger batch failed");
          for (const p of batch) p.reject(err);
        },
      )
      .finally(() => {
        this.inFlight = null;
        // What arrived during the write goes next, without waiting for another linger.
        if (this.queue.length > 0) this.kick();
      });
  }

  private async write(batch: Pending[]): Promise<void> {
    await insertLedgerRows(this.db, batch);
  }

  async totals(q: { tenantId: string; keyId: string | null; period: { day: string } | { month: string } }) {
    const conds = [eq(usageLedger.tenantId, q.tenantId)];
    if (q.keyId !== null) conds.push(eq(usageLedger.keyId, q.keyId));
    conds.push("day" in q.period ? eq(usageLedger.periodDay, q.period.day) : eq(usageLedger.periodMonth, q.period.month));
    const [row] = await this.db
      .select({
        tokens: sql<string>`coalesce(sum(${usageLedger.inputTokens} + ${usageLedger.outputTokens}), 0)::text`,
        cost: sql<string>`coalesce(sum(${usageLedger.costNano}), 0)::text`,
      })
      .from(usageLedger)
      .where(and(...conds));
    return { tokens: BigInt(row?.tokens ?? "0"), costNano: BigInt(row?.cost ?? "0") };
  }

  async findCommit(reservationId: string) {
    const [row] = await this.db
      .select()
      .from(usageLedger)
      .where(and(eq(usageLedger.reservationId, reservationId), eq(usageLedger.entry, "COMMIT")));
    return row ? { inputTokens: row.inputTokens, outputTokens: row.outputTokens, costNano: row.costNano, status: row.status, overage: row.overage } : null;
  }

  /** Wait until everything appended so far is durable (graceful shutdown). */
  async flush(): Promise<void> {
    while (this.queue.length > 0 || this.inFlight) {
      this.kick();
      if (this.inFlight) await this.inFlight.catch(() => {});
    }
  }
}
