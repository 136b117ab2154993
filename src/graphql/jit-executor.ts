import { execute, getVariableValues, GraphQLError, type DocumentNode, type ExecutionResult, type GraphQLSchema, type OperationDefinitionNode } from "graphql";
import { compileQuery, isCompiledQuery, type CompiledQuery } from "graphql-jit";
import type { ApolloServerOptionsWithGateway, ApolloServerPlugin, BaseContext, GraphQLRequestListener } from "@apollo/server";

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

/** What a compiled hot operation produced when it cannot be answered from the plugin. */
type Deferred = { result: ExecutionResult } | { thrown: unknown };

export interface JitExecution {
  /** Apollo's executor hook (the `gateway` option): hands back what the plugin kept, runs the rest with graphql-js. */
  gateway: Gateway;
  /** Answers hot operations that succeed before Apollo's execution phase (see below). */
  plugin: ApolloServerPlugin<BaseContext>;
  /** How hot operations were answered: a test and the benchmark read these. */
  readonly stats: { answeredByPlugin: number; deferredToExecutor: number; executorRuns: number };
}

/**
 * Compiled execution (graphql-jit) for the hot operations. An operation whose single root field
 * is a hot one is compiled once per cached document into a plain function (no per-field
 * resolve-info objects, no generic tree walk, leaf serialisers inlined); everything else runs
 * through graphql-js `execute` as before. Apollo still parses, validates (both cached per
 * document) and runs every plugin's hooks around it.
 *
 * Where the compiled function runs: Apollo's executor hook (the `gateway` option) is the obvious
 * place, but Apollo builds, for every request it hands to that hook, a gateway request context
 * whose `response.http` is an object literal with a `get status()` / `set status()` pair; V8
 * keeps each such pair in the old generation with closures over a copy of the request context,
 * so every request stayed reachable until the next mark-compact (README, Performance: what a
 * scavenge keeps). Around it come a `Negotiator` for incremental delivery and two spreads of the
 * request context and result. So a hot operation runs from the plugin's `responseForOperation`
 * hook instead, which Apollo calls after `didResolveOperation` (complexity limit, operation
 * metrics) and whose answer it takes as the response, skipping all of that; `willSendResponse`
 * hooks still run. Only an answer without errors is given that way. One with errors (a NOT_FOUND,
 * a refusal of the variables, a resolver that threw) is kept and the plugin returns null: Apollo
 * then calls the executor hook, which hands back the kept result instead of running the
 * operation a second time, and Apollo words, masks and logs its errors (`formatError`,
 * `didEncounterErrors`, status 400 for variables) exactly as for any other operation.
 *
 * A bad variable yields the same error (and Apollo's BAD_USER_INPUT, HTTP 400) whichever path
 * runs: graphql-jit's own coercion decides, and graphql-js's words the refusal.
 */
export function jitExecution(schema: GraphQLSchema, rootFields: ReadonlySet<string> = HOT_ROOT_FIELDS): JitExecution {
  // Keyed by the document object: Apollo's document store hands out the same parsed document
  // for the same query text, so a hot operation compiles once; an evicted one is collected.
  const compiled = new WeakMap<DocumentNode, Map<string, CompiledQuery | null>>();
  // Results with errors from the plugin, for the executor hook, keyed by the request's context
  // object (one per request; a request's entry is taken by its own executor call).
  const deferred = new WeakMap<object, Deferred>();
  const stats = { answeredByPlugin: 0, deferredToExecutor: 0, executorRuns: 0 };

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

  /**
   * graphql-jit coerces the variables itself (compiled) and, when they do not fit, answers at
   * once with errors and no data. Only then does graphql-js coerce them as well, so a bad
   * variable yields exactly the error `execute` would; valid variables are coerced once.
   */
  const worded = (op: OperationDefinitionNode, variables: Record<string, unknown>, result: ExecutionResult): ExecutionResult => {
    if (result.data === undefined && result.errors?.length) {
      const coerced = getVariableValues(schema, op.variableDefinitions ?? [], variables);
      if (coerced.errors) return { errors: coerced.errors };
    }
    return normalizeErrors(result);
  };

  const listener: GraphQLRequestListener<BaseContext> = {
    async responseForOperation(rc) {
      const hot = compiledFor(rc.document, rc.operationName);
      if (!hot) return null;
      const variables = rc.request.variables ?? {};
      let result: ExecutionResult;
      try {
        result = await hot.q.query(undefined, rc.contextValue, variables);
      } catch (thrown) {
        deferred.set(rc.contextValue, { thrown });
        stats.deferredToExecutor++;
        return null;
      }
      if (result.errors?.length) {
        deferred.set(rc.contextValue, { result: worded(hot.op, variables, result) });
        stats.deferredToExecutor++;
        return null;
      }
      stats.answeredByPlugin++;
      // The request's own head (status and headers other plugins may have set): Apollo merges the
      // answer's head into it, which for the same object changes nothing.
      return { http: rc.response.http, body: { kind: "single", singleResult: result } };
    },
  };

  const executor: Executor = async (rc) => {
    stats.executorRuns++;
    const kept = deferred.get(rc.context);
    if (kept) {
      deferred.delete(rc.context);
      if ("thrown" in kept) throw kept.thrown;
      return kept.result;
    }
    // Every hot operation was answered or kept by the plugin above; the rest run here.
    return execute({ schema, document: rc.document, contextValue: rc.context, variableValues: rc.request.variables ?? {}, operationName: rc.operationName });
  };

  return {
    gateway: {
      async load() {
        return { executor };
      },
      onSchemaLoadOrUpdate(callback) {
        callback({ apiSchema: schema, coreSupergraphSdl: "" });
        return () => {};
      },
      async stop() {},
    },
    plugin: {
      async requestDidStart() {
        return listener;
      },
    },
    stats,
  };
}
