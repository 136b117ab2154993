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
 * "invalid", so bad traffic is visible without a series per bad document.
 */
export function operationMetricsPlugin(histogram: Histogram<"operation" | "type" | "status">): ApolloServerPlugin<any> {
  const children = new Map<string, ReturnType<Histogram<"operation" | "type" | "status">["labels"]>>();
  const child = (operation: string, type: string, status: string) => {
    const k = `${operation}|${type}|${status}`;
    let c = children.get(k);
    if (!c) {
      c = histogram.labels(operation, type, status);
      children.set(k, c);
    }
    return c;
  };
  return {
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
          child(operation, type, failed ? "error" : "ok").observe((performance.now() - started) / 1000);
        },
      };
    },
  };
}
