export * from "./tenancy.js";
export * from "./ledger.js";
export * from "./events.js";
export * from "./webhooks.js";
export * from "./usage.js";
export * from "./abuse.js";
