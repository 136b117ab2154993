import { registerEnumType } from "type-graphql";

/**
 * GraphQL enums shared by the operator and the enforcement API. Each TS value equals its name,
 * so a value is also the domain's string literal (`Priority.NORMAL` is assignable to the
 * domain's `"NORMAL"`) and crosses the edge without a lookup table.
 */

export enum Priority {
  CRITICAL = "CRITICAL",
  NORMAL = "NORMAL",
  BACKGROUND = "BACKGROUND",
}
registerEnumType(Priority, {
  name: "Priority",
  description: "Scheduling priority of a request. An open circuit breaker admits only CRITICAL traffic.",
});

export enum LimitDimension {
  REQUESTS_PER_MINUTE = "REQUESTS_PER_MINUTE",
  INPUT_TOKENS_PER_MINUTE = "INPUT_TOKENS_PER_MINUTE",
  OUTPUT_TOKENS_PER_MINUTE = "OUTPUT_TOKENS_PER_MINUTE",
  CONCURRENT_REQUESTS = "CONCURRENT_REQUESTS",
  DAILY_TOKENS = "DAILY_TOKENS",
  MONTHLY_TOKENS = "MONTHLY_TOKENS",
  DAILY_BUDGET = "DAILY_BUDGET",
  MONTHLY_BUDGET = "MONTHLY_BUDGET",
}
registerEnumType(LimitDimension, {
  name: "LimitDimension",
  description: "One kind of limit: a rate (token bucket), a concurrency cap, a calendar token quota or a USD budget.",
});

export enum TenantStatus {
  ACTIVE = "ACTIVE",
  SUSPENDED = "SUSPENDED",
}
registerEnumType(TenantStatus, {
  name: "TenantStatus",
  description: "A SUSPENDED tenant's requests are all denied (TENANT_SUSPENDED); its data and keys are kept.",
});
