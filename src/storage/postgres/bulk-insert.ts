import { Param, sql, type SQL } from "drizzle-orm";

/**
 * A multi-row INSERT as `INSERT … SELECT * FROM unnest($1::t1[], $2::t2[], …)`: one parameter
 * per column whatever the batch size, so the statement text is constant (Postgres plans it
 * once) and building it costs nothing per row. Used by the ledger's group commit and the
 * reservation archive, the two inserts on the enforcement path.
 */
export interface Column<Row> {
  name: string;
  type: "text" | "bigint" | "boolean" | "timestamptz";
  value(row: Row): string | bigint | boolean | Date | null;
}

function encode(v: string | bigint | boolean | Date | null): string | boolean | null {
  if (v === null) return null;
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Date) return v.toISOString();
  return v;
}

export function unnestInsert<Row>(table: string, columns: Column<Row>[], rows: Row[], onConflict: string): SQL {
  const names = columns.map((c) => `"${c.name}"`).join(", ");
  const arrays = columns.map((c, i) => {
    const p = sql`${new Param(rows.map((r) => encode(c.value(r))))}`;
    return i === 0 ? sql`${p}::${sql.raw(c.type)}[]` : sql`, ${p}::${sql.raw(c.type)}[]`;
  });
  return sql`INSERT INTO ${sql.raw(`"${table}"`)} (${sql.raw(names)}) SELECT * FROM unnest(${sql.join(arrays)}) ${sql.raw(onConflict)}`;
}
