-- Rollup rows are updated in place by every incremental batch that touches their key (today's
-- daily rows, this month's monthly rows). With full pages such an update cannot stay on its page:
-- it writes a new index entry and leaves one more for vacuum (about half the updates measured).
-- 20 % free space per page keeps ~80 % of them HOT and made update-heavy batches 20–30 % cheaper.
-- drizzle's pgTable cannot declare storage parameters, hence this hand-written migration.
-- Existing pages keep their fill (no rewrite, no long lock): the setting applies to new pages,
-- which is where the rows still being updated are.
ALTER TABLE "usage_daily" SET (fillfactor = 80);
--> statement-breakpoint
ALTER TABLE "usage_monthly" SET (fillfactor = 80);
