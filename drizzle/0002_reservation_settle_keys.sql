ALTER TABLE "reservations" ADD COLUMN "settle" text NOT NULL;--> statement-breakpoint
CREATE INDEX "reservations_created_idx" ON "reservations" USING btree ("created_at");