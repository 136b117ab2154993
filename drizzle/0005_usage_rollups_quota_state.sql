CREATE TABLE "quota_degradation_history" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "quota_degradation_history_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"tenant_id" text NOT NULL,
	"scope" text NOT NULL,
	"action" text NOT NULL,
	"from_rung" integer,
	"to_rung" integer,
	"dimension" text NOT NULL,
	"at_percent" integer NOT NULL,
	"period" text NOT NULL,
	"usage" bigint NOT NULL,
	"limit_value" bigint,
	"reason" text NOT NULL,
	"event_id" text NOT NULL,
	"at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "quota_degradation_state" (
	"tenant_id" text NOT NULL,
	"scope" text NOT NULL,
	"rung" integer NOT NULL,
	"dimension" text NOT NULL,
	"at_percent" integer NOT NULL,
	"blocking" boolean NOT NULL,
	"period" text NOT NULL,
	"usage" bigint NOT NULL,
	"limit_value" bigint NOT NULL,
	"reason" text NOT NULL,
	"applied_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL,
	CONSTRAINT "quota_degradation_state_pk" PRIMARY KEY("tenant_id","scope")
);
--> statement-breakpoint
CREATE TABLE "quota_tenant_periods" (
	"tenant_id" text PRIMARY KEY NOT NULL,
	"timezone" text NOT NULL,
	"day" text NOT NULL,
	"month" text NOT NULL,
	"day_ends_at" timestamp with time zone NOT NULL,
	"month_ends_at" timestamp with time zone NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "quota_threshold_state" (
	"tenant_id" text NOT NULL,
	"scope" text NOT NULL,
	"dimension" text NOT NULL,
	"period" text NOT NULL,
	"kind" text NOT NULL,
	"threshold_percent" integer NOT NULL,
	"state" text NOT NULL,
	"crossings" integer NOT NULL,
	"usage" bigint NOT NULL,
	"limit_value" bigint NOT NULL,
	"crossed_at" timestamp with time zone NOT NULL,
	"resolved_at" timestamp with time zone,
	"resolution" text,
	CONSTRAINT "quota_threshold_state_pk" PRIMARY KEY("tenant_id","scope","dimension","period","kind","threshold_percent")
);
--> statement-breakpoint
CREATE TABLE "usage_counter_drift" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "usage_counter_drift_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"tenant_id" text NOT NULL,
	"scope" text NOT NULL,
	"period" text NOT NULL,
	"period_kind" text NOT NULL,
	"redis_tokens" bigint NOT NULL,
	"ledger_tokens" bigint NOT NULL,
	"redis_cost_nano" bigint NOT NULL,
	"ledger_cost_nano" bigint NOT NULL,
	"token_drift" bigint NOT NULL,
	"cost_drift_nano" bigint NOT NULL,
	"repaired" boolean NOT NULL,
	"found_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "usage_daily" (
	"tenant_id" text NOT NULL,
	"period_day" text NOT NULL,
	"period_month" text NOT NULL,
	"key_id" text NOT NULL,
	"model" text NOT NULL,
	"route" text NOT NULL,
	"input_tokens" bigint NOT NULL,
	"output_tokens" bigint NOT NULL,
	"cost_nano" bigint NOT NULL,
	"requests" bigint NOT NULL,
	"failed_requests" bigint NOT NULL,
	"cancelled_requests" bigint NOT NULL,
	"overage_requests" bigint NOT NULL,
	"expired_reservations" bigint NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "usage_daily_pk" PRIMARY KEY("tenant_id","period_day","key_id","model","route")
);
--> statement-breakpoint
CREATE TABLE "usage_monthly" (
	"tenant_id" text NOT NULL,
	"period_month" text NOT NULL,
	"key_id" text NOT NULL,
	"model" text NOT NULL,
	"route" text NOT NULL,
	"input_tokens" bigint NOT NULL,
	"output_tokens" bigint NOT NULL,
	"cost_nano" bigint NOT NULL,
	"requests" bigint NOT NULL,
	"failed_requests" bigint NOT NULL,
	"cancelled_requests" bigint NOT NULL,
	"overage_requests" bigint NOT NULL,
	"expired_reservations" bigint NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "usage_monthly_pk" PRIMARY KEY("tenant_id","period_month","key_id","model","route")
);
--> statement-breakpoint
CREATE TABLE "usage_rollup_state" (
	"name" text PRIMARY KEY NOT NULL,
	"watermark" bigint NOT NULL,
	"safe_horizon" bigint NOT NULL,
	"rows_rolled" bigint NOT NULL,
	"rebuilt_at" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "quota_degradation_history_tenant_idx" ON "quota_degradation_history" USING btree ("tenant_id","id");--> statement-breakpoint
CREATE INDEX "quota_tenant_periods_day_ends_idx" ON "quota_tenant_periods" USING btree ("day_ends_at");--> statement-breakpoint
CREATE INDEX "quota_threshold_open_idx" ON "quota_threshold_state" USING btree ("tenant_id","state");--> statement-breakpoint
CREATE INDEX "usage_counter_drift_tenant_idx" ON "usage_counter_drift" USING btree ("tenant_id","id");