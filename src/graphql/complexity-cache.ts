import { Kind, isInterfaceType, isObjectType, visit, type DocumentNode, type GraphQLSchema } from "graphql";

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
