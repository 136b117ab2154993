import { execute, getVariableValues, GraphQLError, type DocumentNode, type ExecutionResult, type GraphQLSchema, type OperationDefinitionNode } from "graphql";
import { compileQuery, isCompiledQuery, type CompiledQuery } from "graphql-jit";
import type { ApolloServerOptionsWithGateway } from "@apollo/server";

type Gateway = ApolloServerOptionsWithGateway<any>["gateway"];
type Executor = NonNullable<Awaited<ReturnType<Gateway["load"]>>["executor"]>;

/** The gateway's hot path: every request pays for these, so they run compiled. */
export const HOT_ROOT_FIELDS: ReadonlySet<string> = new Set(["checkAndReserve", "commit", "release"]);

function hotOperation(document: DocumentNode, operationName: string | null, rootFields: ReadonlySet<string>): OperationDefinitionNode | null {
  const ops = document.definitions.filter((d): d is OperationDefinitionNode => d.kind === "OperationDefinition");
  const op = operationName === null ? (ops.length === 1 ? ops[0] : undefined) : ops.find((o) => o.name?.value === operationName);
  if (!op || op.operation === "subscription") return null;
  const sel = op.selectionSet.selections;
  if (sel.length !== 1 || sel[0]!.kind !== "Field" || !rootFields.has(sel[0]!.name.value)) return null;
  // Fragments are fine for graphql-jit; @skip/@include on the root field are left to graphql-js.
  if (sel[0]!.directives?.length) return null;
  return op;
}

/**
 * graphql-jit's errors leave `extensions` undefined where graphql-js always sets an object, and
 * Apollo reads `extensions.code` unguarded: every resolver error (a NOT_FOUND, a CONFLICT) came
 * out as a bare "Internal server error". Such errors are rebuilt as graphql-js errors with the
 * same message, path, locations and original error.
 */
function normalizeErrors(result: ExecutionResult): ExecutionResult {
  if (!result.errors?.some((e) => !e.extensions)) return result;
  const errors = result.errors.map((e) => {
    if (e.extensions) return e;
    const copy = new GraphQLError(e.message, { path: e.path, originalError: e.originalError ?? undefined, extensions: {} });
    (copy as { locations: GraphQLError["locations"] }).locations = e.locations;
    return copy;
  });
  return Object.assign({}, result, { errors });
}

/**
 * Compiled execution (graphql-jit) behind Apollo's executor hook, the `gateway` option: Apollo
 * still parses, validates (both cached per document), runs every plugin and formats errors; only
 * execution changes. An operation whose single root field is a hot one is compiled once per
 * cached document into a plain function (no per-field resolve-info objects, no generic tree walk,
 * leaf serialisers inlined); everything else runs through graphql-js `execute` as before.
 *
 * A bad variable yields the same error (and Apollo's BAD_USER_INPUT, HTTP 400) whichever path
 * runs: graphql-jit's own coercion decides, and graphql-js's words the refusal.
 */
export function jitExecutionGateway(schema: GraphQLSchema, rootFields: ReadonlySet<string> = HOT_ROOT_FIELDS): Gateway {
  // Keyed by the document object: Apollo's document store hands out the same parsed document
  // for the same query text, so a hot operation compiles once; an evicted one is collected.
  const compiled = new WeakMap<DocumentNode, Map<string, CompiledQuery | null>>();

  const compiledFor = (document: DocumentNode, operationName: string | null): { op: OperationDefinitionNode; q: CompiledQuery } | null => {
    let byName = compiled.get(document);
    if (!byName) compiled.set(document, (byName = new Map()));
    const key = operationName ?? "";
    const op = hotOperation(document, operationName, rootFields);
    if (!op) return null;
    let q = byName.get(key);
    if (q === undefined) {
      const c = compileQuery(schema, document, operationName ?? undefined);
      q = isCompiledQuery(c) ? c : null;
      byName.set(key, q);
    }
    return q ? { op, q } : null;
  };

  const executor: Executor = async (rc) => {
    const variables = rc.request.variables ?? {};
    const hot = compiledFor(rc.document, rc.operationName);
    if (!hot) {
      return execute({ schema, document: rc.document, contextValue: rc.context, variableValues: variables, operationName: rc.operationName });
    }
    const result = hot.q.query(undefined, rc.context, variables);
    // graphql-jit coerces the variables itself (compiled) and, when they do not fit, answers
    // at once with errors and no data. Only then does graphql-js coerce them as well, so a bad
    // variable yields exactly the error `execute` would; valid variables are coerced once.
    if (!(result instanceof Promise) && result.data === undefined && result.errors?.length) {
      const coerced = getVariableValues(schema, hot.op.variableDefinitions ?? [], variables);
      if (coerced.errors) return { errors: coerced.errors };
    }
    return normalizeErrors(await result);
  };

  return {
    async load() {
      return { executor };
    },
    onSchemaLoadOrUpdate(callback) {
      callback({ apiSchema: schema, coreSupergraphSdl: "" });
      return () => {};
    },
    async stop() {},
  };
}
