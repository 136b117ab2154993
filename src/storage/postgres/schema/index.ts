export * from "./tenancy.js";
export * from "./ledger.js";
