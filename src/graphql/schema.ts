import "reflect-metadata";
import { buildSchema } from "type-graphql";
import type { GraphQLSchema } from "graphql";
import { resolvers } from "./resolvers/index.js";
import { authChecker } from "./auth-checker.js";

/** Builds the executable schema from the type-graphql classes (no I/O). */
export function buildApiSchema(): Promise<GraphQLSchema> {
  // Inputs are validated by the domain (zod and explicit checks) with field-named errors,
  // so type-graphql's class-validator integration is off.
  return buildSchema({ resolvers, authChecker, validate: false });
}
