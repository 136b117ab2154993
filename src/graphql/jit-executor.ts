import { execute, getVariableValues, GraphQLError, type DocumentNode, type ExecutionResult, type FieldNode, type GraphQLSchema, type OperationDefinitionNode } from "graphql";
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

/**
 * A hot operation that Apollo has parsed, validated, measured and answered without errors once,
 * found again by its request's exact text and operation name.
 */
export interface KnownOperation {
  readonly op: OperationDefinitionNode;
  readonly q: CompiledQuery;
  /** Its root field and operation type, the operation-metrics labels. */
  readonly label: string;
  readonly type: string;
}

/** Distinct hot texts remembered; gateways send a handful, a misbehaving client cannot grow it. */
const KNOWN_MAX = 256;

/** What a compiled hot operation produced when it cannot be answered from the plugin. */
type Deferred = { result: ExecutionResult } | { thrown: unknown };

/** Where a context run before Apollo carries what it produced with errors (see runKnown). */
const KEPT = Symbol("jit.kept");

export interface JitExecution {
  /** Apollo's executor hook (the `gateway` option): hands back what the plugin kept, runs the rest with graphql-js. */
  gateway: Gateway;
  /** Answers hot operations that succeed before Apollo's execution phase (see below). */
  plugin: ApolloServerPlugin<BaseContext>;
  /** The hot operation a request names, if Apollo has answered this exact text before. */
  known(query: string, operationName: string | null): KnownOperation | undefined;
  /**
   * Runs a known operation before Apollo. The result when it has no errors; otherwise null, and
   * what it produced is kept for this context as the plugin keeps it: the caller then hands the
   * same context to Apollo, which words and masks the errors without running it again.
   */
  runKnown(known: KnownOperation, context: object, variables: Record<string, unknown>): Promise<ExecutionResult | null>;
  /** How hot operations were answered: a test and the benchmark read these. */
  readonly stats: { answeredBeforeApollo: number; answeredByPlugin: number; deferredToExecutor: number; executorRuns: number };
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
 *
 * Before Apollo: even answered from the plugin, a hot operation pays for Apollo's request
 * pipeline (the query text's SHA-256, the document-store lookup, every plugin's hooks at every
 * stage, the HTTP head negotiation, about 10 % of the service's CPU at 800 pairs/s). Once
 * Apollo has parsed, validated, measured (depth, complexity) and answered a hot text without
 * errors, that exact text and operation name are remembered with their compiled function
 * (`known`), and the HTTP layer runs a later request for them before Apollo (`runKnown`): the
 * same function, the same context, the same resolvers (type-graphql's auth checker included),
 * and, without errors, the bytes Apollo would write. With errors the result rides on the
 * context to Apollo, which runs its pipeline and takes the result from the executor hook as
 * above: a refusal or a fault is worded, masked and logged by Apollo, and nothing runs twice.
 */
export function jitExecution(schema: GraphQLSchema, rootFields: ReadonlySet<string> = HOT_ROOT_FIELDS): JitExecution {
  // Keyed by the document object: Apollo's document store hands out the same parsed document
  // for the same query text, so a hot operation compiles once; an evicted one is collected.
  const compiled = new WeakMap<DocumentNode, Map<string, CompiledQuery | null>>();
  // Results with errors from the plugin, for the executor hook, keyed by the request's context
  // object (one per request; a request's entry is taken by its own executor call).
  const deferred = new WeakMap<object, Deferred>();
  const stats = { answeredBeforeApollo: 0, answeredByPlugin: 0, deferredToExecutor: 0, executorRuns: 0 };
  // Keyed by operation name and query text; filled only from answers Apollo let through.
  const knownTexts = new Map<string, KnownOperation>();
  const knownKey = (query: string, operationName: string | null) => `${operationName ?? ""}\n${query}`;

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

  /**
   * Runs a compiled hot operation: its result when it has no errors; otherwise what it produced
   * (worded), for Apollo's error pipeline, and the caller keeps that where the executor finds it.
   */
  const run = async (op: OperationDefinitionNode, q: CompiledQuery, context: object, variables: Record<string, unknown>): Promise<ExecutionResult | Deferred> => {
    let result: ExecutionResult;
    try {
      result = await q.query(undefined, context, variables);
    } catch (thrown) {
      stats.deferredToExecutor++;
      return { thrown };
    }
    if (!result.errors?.length) return result;
    stats.deferredToExecutor++;
    return { result: worded(op, variables, result) };
  };
  const isDeferred = (r: ExecutionResult | Deferred): r is Deferred => "thrown" in r || "result" in r;

  const listener: GraphQLRequestListener<BaseContext> = {
    async responseForOperation(rc) {
      // Already run before Apollo, with errors: the executor hook hands that result back. Apollo
      // runs each operation on a copy of the context it was given, so the result rode along in
      // a symbol-keyed property of the original and is re-keyed here by the copy.
      const ran = (rc.contextValue as { [KEPT]?: Deferred })[KEPT];
      if (ran) {
        deferred.set(rc.contextValue, ran);
        return null;
      }
      const hot = compiledFor(rc.document, rc.operationName);
      if (!hot) return null;
      const result = await run(hot.op, hot.q, rc.contextValue, rc.request.variables ?? {});
      if (isDeferred(result)) {
        deferred.set(rc.contextValue, result);
        return null;
      }
      stats.answeredByPlugin++;
      if (typeof rc.request.query === "string" && knownTexts.size < KNOWN_MAX) {
        const root = hot.op.selectionSet.selections[0] as FieldNode;
        knownTexts.set(knownKey(rc.request.query, rc.request.operationName ?? null), { op: hot.op, q: hot.q, label: root.name.value, type: hot.op.operation });
      }
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
    known: (query, operationName) => knownTexts.get(knownKey(query, operationName)),
    async runKnown(known, context, variables) {
      const result = await run(known.op, known.q, context, variables);
      if (isDeferred(result)) {
        (context as { [KEPT]?: Deferred })[KEPT] = result;
        return null;
      }
      stats.answeredBeforeApollo++;
      return result;
    },
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
