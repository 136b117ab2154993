-- The rollup tables' key columns compare byte by byte (COLLATE "C"): see keyText in
-- src/storage/postgres/schema/usage.ts for why and what it measured. Text to text changes only
-- the collation, so the tables are not rewritten; each primary key is rebuilt, once, as the
-- columns change in one ALTER TABLE per table. The ledger, which gateways write, is not touched,
-- and the hot path never reads these tables: while an index is rebuilt, only usage reports, quota
-- evaluations and the rollup job wait (1.5 s for 1,150,000 daily rows here).
ALTER TABLE "usage_daily"
  ALTER COLUMN "tenant_id" SET DATA TYPE text COLLATE "C",
  ALTER COLUMN "period_day" SET DATA TYPE text COLLATE "C",
  ALTER COLUMN "period_month" SET DATA TYPE text COLLATE "C",
  ALTER COLUMN "key_id" SET DATA TYPE text COLLATE "C",
  ALTER COLUMN "model" SET DATA TYPE text COLLATE "C",
  ALTER COLUMN "route" SET DATA TYPE text COLLATE "C";
--> statement-breakpoint
ALTER TABLE "usage_monthly"
  ALTER COLUMN "tenant_id" SET DATA TYPE text COLLATE "C",
  ALTER COLUMN "period_month" SET DATA TYPE text COLLATE "C",
  ALTER COLUMN "key_id" SET DATA TYPE text COLLATE "C",
  ALTER COLUMN "model" SET DATA TYPE text COLLATE "C",
  ALTER COLUMN "route" SET DATA TYPE text COLLATE "C";
