import type { ApolloServerPlugin } from "@apollo/server";
import type { OperationDefinitionNode } from "graphql";
import type { Histogram } from "prom-client";

/**
 * The label for an operation: its single root field (`checkAndReserve`, `commit`, `tenants`),
 * or "multiple" when it selects several. Names come from the validated document, so they are
 * schema field names: a bounded set, unlike operation names, which callers choose freely.
 */
export function operationLabel(op: OperationDefinitionNode | null | undefined): string {
  const sel = op?.selectionSet.selections;
  if (!sel || sel.length === 0) return "unknown";
  if (sel.length === 1 && sel[0]!.kind === "Field") return sel[0]!.name.value;
  return "multiple";
}

/**
 * Latency per GraphQL operation, from Apollo's start of the request to the response being
 * ready. Requests that never resolve an operation (parse or validation errors) are labelled
 * "invalid", so bad traffic is visible without a series per bad document. Hot operations
 * answered before Apollo (src/graphql/server.ts) are recorded through `observe`, timed from the
 * start of their execution.
 */
export function operationMetrics(histogram: Histogram<"operation" | "type" | "status">): {
  plugin: ApolloServerPlugin<any>;
  observe(operation: string, type: string, status: "ok" | "error", seconds: number): void;
} {
  const children = new Map<string, ReturnType<Histogram<"operation" | "type" | "status">["labels"]>>();
  const observe = (operation: string, type: string, status: "ok" | "error", seconds: number) => {
    const k = `${operation}|${type}|${status}`;
    let c = children.get(k);
    if (!c) {
      c = histogram.labels(operation, type, status);
      children.set(k, c);
    }
    c.observe(seconds);
  };
  return {
    observe,
    plugin: {
      async requestDidStart() {
        const started = performance.now();
        let operation = "invalid";
        let type = "unknown";
        return {
          async didResolveOperation({ operation: op }) {
            operation = operationLabel(op);
            type = op?.operation ?? "unknown";
          },
          async willSendResponse({ response }) {
            const failed = response.body.kind === "single" && (response.body.singleResult.errors?.length ?? 0) > 0;
            observe(operation, type, failed ? "error" : "ok", (performance.now() - started) / 1000);
          },
        };
      },
    },
  };
}
