CREATE TABLE "anomalies" (
	"id" text PRIMARY KEY NOT NULL,
	"kind" text NOT NULL,
	"tenant_id" text,
	"key_id" text,
	"source" text,
	"key_prefix" text,
	"detected_at" timestamp with time zone NOT NULL,
	"window_start" timestamp with time zone NOT NULL,
	"window_end" timestamp with time zone NOT NULL,
	"evidence" jsonb NOT NULL,
	"action" text NOT NULL,
	"action_result" text
);
--> statement-breakpoint
CREATE TABLE "decision_audit" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "decision_audit_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"minute" timestamp with time zone NOT NULL,
	"group_key" text NOT NULL,
	"actor_kind" text NOT NULL,
	"actor_id" text NOT NULL,
	"tenant_id" text,
	"key_id" text,
	"key_prefix" text,
	"source" text,
	"route" text NOT NULL,
	"model" text NOT NULL,
	"outcome" text NOT NULL,
	"reason" text NOT NULL,
	"count" integer NOT NULL,
	"input_tokens" bigint NOT NULL,
	"output_tokens" bigint NOT NULL,
	"last_at" timestamp with time zone NOT NULL,
	"message" text NOT NULL
);
--> statement-breakpoint
CREATE INDEX "anomalies_detected_idx" ON "anomalies" USING btree ("detected_at","id");--> statement-breakpoint
CREATE INDEX "anomalies_tenant_detected_idx" ON "anomalies" USING btree ("tenant_id","detected_at","id");--> statement-breakpoint
CREATE INDEX "anomalies_kind_detected_idx" ON "anomalies" USING btree ("kind","detected_at","id");--> statement-breakpoint
CREATE UNIQUE INDEX "decision_audit_group_uq" ON "decision_audit" USING btree ("minute","group_key");--> statement-breakpoint
CREATE INDEX "decision_audit_minute_idx" ON "decision_audit" USING btree ("minute","id");--> statement-breakpoint
CREATE INDEX "decision_audit_tenant_minute_idx" ON "decision_audit" USING btree ("tenant_id","minute","id");