import "reflect-metadata";
import { buildSchema, type PubSub } from "type-graphql";
import type { GraphQLSchema } from "graphql";
import { resolvers } from "./resolvers/index.js";
import { authChecker } from "./auth-checker.js";

/**
 * type-graphql refuses to build a schema with subscriptions unless a PubSub is configured, even
 * when every `@Subscription` brings its own `subscribe` function, as ours do (events come from
 * the replica's QuotaEventFeed, fed by Redis pub/sub and Postgres). This one only satisfies that
 * check; a topic-based subscription added by mistake fails loudly instead of never firing.
 */
const subscribeFunctionsOnly: PubSub = {
  publish() {
    throw new Error("subscriptions use their own subscribe function; there is no topic PubSub");
  },
  subscribe(topic) {
    throw new Error(`subscription topic "${topic}" has no PubSub: give the @Subscription a subscribe function`);
  },
};

/** Builds the executable schema from the type-graphql classes (no I/O). */
export function buildApiSchema(): Promise<GraphQLSchema> {
  // Inputs are validated by the domain (zod and explicit checks) with field-named errors,
  // so type-graphql's class-validator integration is off.
  return buildSchema({ resolvers, authChecker, validate: false, pubSub: subscribeFunctionsOnly });
}
