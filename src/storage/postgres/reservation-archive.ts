import { eq } from "drizzle-orm";
import type { Db } from "./db.js";
import { reservations } from "./schema/index.js";
import type { ArchivedReservation, ReservationArchive } from "../../domain/enforcement/ports.js";
import { quotaLimitsOf } from "../redis/counter-store.js";
import type { Logger } from "../../lib/logger.js";
import { unnestInsert, type Column } from "./bulk-insert.js";

type Row = typeof reservations.$inferInsert;

const COLUMNS: Column<Row>[] = [
  { name: "id", type: "text", value: (r) => r.id },
  { name: "tenant_id", type: "text", value: (r) => r.tenantId },
  { name: "key_id", type: "text", value: (r) => r.keyId },
  { name: "subject", type: "text", value: (r) => r.subject ?? null },
  { name: "route", type: "text", value: (r) => r.route },
  { name: "model", type: "text", value: (r) => r.model },
  { name: "input_tokens", type: "bigint", value: (r) => r.inputTokens },
  { name: "output_tokens", type: "bigint", value: (r) => r.outputTokens },
  { name: "cost_nano", type: "bigint", value: (r) => r.costNano },
  { name: "input_nano_per_token", type: "bigint", value: (r) => r.inputNanoPerToken },
  { name: "output_nano_per_token", type: "bigint", value: (r) => r.outputNanoPerToken },
  { name: "period_day", type: "text", value: (r) => r.periodDay },
  { name: "period_month", type: "text", value: (r) => r.periodMonth },
  { name: "fail_open", type: "boolean", value: (r) => r.failOpen ?? false },
  { name: "settle", type: "text", value: (r) => r.settle },
  { name: "created_at", type: "timestamptz", value: (r) => r.createdAt },
  { name: "expires_at", type: "timestamptz", value: (r) => r.expiresAt },
];

const insertRows = unnestInsert("reservations", COLUMNS, "ON CONFLICT (id) DO NOTHING");

function toRow(r: ArchivedReservation): Row {
  return {
    id: r.id,
    tenantId: r.tenantId,
    keyId: r.keyId,
    subject: r.subject,
    route: r.route,
    model: r.model,
    inputTokens: BigInt(r.inputTokens),
    outputTokens: BigInt(r.outputTokens),
    costNano: r.costNano,
    inputNanoPerToken: r.inputNanoPerToken,
    outputNanoPerToken: r.outputNanoPerToken,
    periodDay: r.day,
    periodMonth: r.month,
    failOpen: r.failOpen,
    settle: r.settleKeys,
    createdAt: r.reservedAt,
    expiresAt: r.expiresAt,
  };
}

/**
 * Write-behind archive of reservations. Inserts are buffered and written in batches off the
 * hot path; a failed batch is retried a few times, then logged (the Redis record is still the
 * primary copy, so only the flush-recovery of those reservations is at stake).
 */
export class PostgresReservationArchive implements ReservationArchive {
  private buffer: Row[] = [];
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;

  constructor(
    private readonly db: Db,
    private readonly opts: { lingerMs: number; maxBatch: number; logger: Logger },
  ) {}

  record(r: ArchivedReservation): void {
    this.buffer.push(toRow(r));
    if (this.buffer.length >= this.opts.maxBatch) void this.drain();
    else if (!this.timer) this.timer = setTimeout(() => void this.drain(), this.opts.lingerMs);
  }

  async recordNow(r: ArchivedReservation): Promise<void> {
    await this.db.insert(reservations).values(toRow(r)).onConflictDoNothing();
  }

  private async drain(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.writing) return this.writing;
    this.writing = (async () => {
      while (this.buffer.length > 0) {
        const batch = this.buffer.splice(0, this.opts.maxBatch);
        for (let attempt = 1; ; attempt++) {
          try {
            await insertRows(this.db, batch);
            break;
          } catch (err) {
            if (attempt >= 3) {
              this.opts.logger.error({ err, rows: batch.length }, "reservation archive batch dropped");
              break;
            }
            await new Promise((r) => setTimeout(r, 100 * attempt));
          }
        }
      }
    })().finally(() => {
      this.writing = null;
    });
    return this.writing;
  }

  async find(id: string): Promise<ArchivedReservation | null> {
    const [row] = await this.db.select().from(reservations).where(eq(reservations.id, id));
    if (!row) return null;
    return {
      id: row.id,
      tenantId: row.tenantId,
      keyId: row.keyId,
      subject: row.subject,
      route: row.route,
      model: row.model,
      inputNanoPerToken: row.inputNanoPerToken,
      outputNanoPerToken: row.outputNanoPerToken,
      day: row.periodDay,
      month: row.periodMonth,
      state: "E",
      inputTokens: Number(row.inputTokens),
      outputTokens: Number(row.outputTokens),
      costNano: row.costNano,
      reservedAt: row.createdAt,
      expiresAt: row.expiresAt,
      settleKeys: row.settle,
      quotaLimits: quotaLimitsOf(row.settle),
      failOpen: row.failOpen,
    };
  }

  async flush(): Promise<void> {
    while (this.buffer.length > 0 || this.writing) await this.drain();
  }
}
