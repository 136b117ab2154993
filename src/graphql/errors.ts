import type { GraphQLFormattedError } from "graphql";
import { unwrapResolverError } from "@apollo/server/errors";
import { isDomainError, ErrorCode } from "../lib/errors.js";

/**
 * The one place errors become what a caller sees. Domain errors keep their code, message and
 * `retryable`; GraphQL validation/parse errors keep theirs; anything else is masked as
 * INTERNAL_SERVER_ERROR with no stack, SQL or table name, only the request id to find it in logs.
 */
const PASS_THROUGH = new Set([
  "GRAPHQL_PARSE_FAILED",
  "GRAPHQL_VALIDATION_FAILED",
  "BAD_USER_INPUT",
  "BAD_REQUEST",
  "PERSISTED_QUERY_NOT_FOUND",
  "PERSISTED_QUERY_NOT_SUPPORTED",
  "OPERATION_RESOLUTION_FAILURE",
  "UNAUTHENTICATED",
  "FORBIDDEN",
  "QUERY_TOO_COMPLEX",
]);

export function makeFormatError(opts: { onInternal: (err: unknown) => void; requestIdOf?: () => string | undefined }) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const original = unwrapResolverError(error);
    if (isDomainError(original)) {
      return {
        message: original.message,
        path: formatted.path,
        locations: formatted.locations,
        extensions: {
          code: original.code,
          retryable: original.retryable,
          ...(typeof original.context.field === "string" ? { field: original.context.field } : {}),
        },
      };
    }
    const code = formatted.extensions?.code;
    if (typeof code === "string" && PASS_THROUGH.has(code)) {
      const { stacktrace: _s, exception: _e, ...ext } = (formatted.extensions ?? {}) as Record<string, unknown>;
      return { ...formatted, extensions: ext };
    }
    // Everything else is ours: a resolver's plain Error, a driver's SQL error, and also codeless
    // GraphQLErrors such as an enum or scalar failing to *serialise* a resolver's value. The
    // caller's own mistakes never land here: graphql-js and Apollo code them (parse, validation,
    // BAD_USER_INPUT for variables that do not coerce), and domain errors are handled above.
    opts.onInternal(original);
    return {
      message: "Internal server error",
      path: formatted.path,
      extensions: { code: ErrorCode.INTERNAL, requestId: opts.requestIdOf?.() },
    };
  };
}
