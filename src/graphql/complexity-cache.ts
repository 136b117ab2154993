import {
  GraphQLError,
  getVariableValues,
  Kind,
  isInterfaceType,
  isObjectType,
  visit,
  type DocumentNode,
  type GraphQLSchema,
  type OperationDefinitionNode,
} from "graphql";
import { fieldExtensionsEstimator, getComplexity, simpleEstimator } from "graphql-query-complexity";

export type ComplexityVerdict =
  | { kind: "ok"; complexity: number }
  /** Variables that do not coerce: the caller's error, reported by whoever executes. */
  | { kind: "badVariables"; errors: readonly GraphQLError[] }
  | { kind: "tooComplex"; message: string };

/**
 * The complexity of one operation, for the HTTP plugin and the WebSocket server alike. A query
 * whose node count passes `max(10_000, maxComplexity)` is refused without being measured
 * further: that bounds the work of measuring itself (fragment spreads can multiply nodes far
 * beyond the body size), and since every node costs at least 1, a query within the limit never trips it.
 */
export function measureComplexity(o: {
  schema: GraphQLSchema;
  document: DocumentNode;
  operation: OperationDefinitionNode | null | undefined;
  operationName: string | null | undefined;
  variables: Record<string, unknown> | null | undefined;
  maxComplexity: number;
}): ComplexityVerdict {
  const maxQueryNodes = Math.max(10_000, o.maxComplexity);
  const vars = getVariableValues(o.schema, o.operation?.variableDefinitions ?? [], o.variables ?? {});
  if (vars.errors) return { kind: "badVariables", errors: vars.errors };
  let complexity: number;
  try {
    complexity = getComplexity({
      schema: o.schema,
      operationName: o.operationName ?? undefined,
      query: o.document,
      variables: vars.coerced,
      estimators: [fieldExtensionsEstimator(), simpleEstimator({ defaultComplexity: 1 })],
      maxQueryNodes,
    });
  } catch (e) {
    // With variables known good, the GraphQLError left to throw is the node-count guard.
    if (!(e instanceof GraphQLError)) throw e;
    return { kind: "tooComplex", message: `query has more than ${maxQueryNodes} fields and fragments; the maximum complexity is ${o.maxComplexity}` };
  }
  if (complexity > o.maxComplexity) return { kind: "tooComplex", message: `query complexity ${complexity} exceeds the maximum of ${o.maxComplexity}` };
  return { kind: "ok", complexity };
}

/**
 * Query complexity measured once per document instead of on every request. Complexity depends on
 * the document alone unless a field prices itself from its arguments (a function in its
 * `complexity` extension, where variables feed the arguments) or `@skip`/`@include` take a
 * variable. When neither holds, the figure is a property of the document, and Apollo hands out the
 * same parsed document for the same query text, so a gateway's hot operations are measured once.
 * Measuring walked the document and coerced the variables again on every request.
 */
export class ComplexityCache {
  private readonly argumentPriced: boolean;
  /** null: this document's complexity may change with its variables; measure every time. */
  private readonly byDocument = new WeakMap<DocumentNode, Map<string, number> | null>();

  constructor(schema: GraphQLSchema) {
    this.argumentPriced = Object.values(schema.getTypeMap()).some(
      (t) => (isObjectType(t) || isInterfaceType(t)) && Object.values(t.getFields()).some((f) => typeof f.extensions?.complexity === "function"),
    );
  }

  get(document: DocumentNode, operationName: string | null): number | undefined {
    return this.entry(document)?.get(operationName ?? "");
  }

  set(document: DocumentNode, operationName: string | null, complexity: number): void {
    this.entry(document)?.set(operationName ?? "", complexity);
  }

  private entry(document: DocumentNode): Map<string, number> | null {
    let e = this.byDocument.get(document);
    if (e === undefined) {
      e = this.argumentPriced || variableDirectives(document) ? null : new Map();
      this.byDocument.set(document, e);
    }
    return e;
  }
}

function variableDirectives(document: DocumentNode): boolean {
  let found = false;
  visit(document, {
    Directive(node) {
      if ((node.name.value === "skip" || node.name.value === "include") && node.arguments?.some((a) => a.value.kind === Kind.VARIABLE)) found = true;
    },
  });
  return found;
}
