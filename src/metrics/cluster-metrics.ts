import cluster from "node:cluster";
import { AggregatorRegistry, type Registry } from "prom-client";

/**
 * With WEB_CONCURRENCY > 1 every worker has its own registry, and a scrape of /metrics lands on
 * whichever worker the primary hands the connection to. So a worker answers /metrics by asking
 * the primary, which collects every worker's series over IPC (prom-client's AggregatorRegistry:
 * counters and histograms summed, so the figures describe the whole process group).
 */
const REQUEST = "llm:metrics:request";
const RESPONSE = "llm:metrics:response";

interface MetricsRequest {
  type: typeof REQUEST;
  id: number;
}
interface MetricsResponse {
  type: typeof RESPONSE;
  id: number;
  body?: string;
  contentType?: string;
  error?: string;
}

/** In the primary: answer workers' requests with the aggregate of all workers. */
export function serveClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on("message", (worker, msg: MetricsRequest) => {
    if (msg?.type !== REQUEST) return;
    aggregator.clusterMetrics().then(
      (body) => worker.send({ type: RESPONSE, id: msg.id, body, contentType: aggregator.contentType } satisfies MetricsResponse),
      (err: Error) => worker.send({ type: RESPONSE, id: msg.id, error: err.message } satisfies MetricsResponse),
    );
  });
}

/**
 * In a worker: expose `registry` to the primary's aggregator, and return a renderer that
 * fetches the aggregate through the primary.
 */
export function clusterRenderer(registry: Registry, timeoutMs = 5_000): () => Promise<{ contentType: string; body: string }> {
  // Constructing one is what installs prom-client's worker-side listener (setRegistries alone
  // does not): without it the primary's collection times out.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
  let seq = 0;
  const pending = new Map<number, { resolve: (r: { contentType: string; body: string }) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  process.on("message", (msg: MetricsResponse) => {
    if (msg?.type !== RESPONSE) return;
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    clearTimeout(p.timer);
    if (msg.error !== undefined || msg.body === undefined) p.reject(new Error(`cluster metrics: ${msg.error ?? "no body"}`));
    else p.resolve({ contentType: msg.contentType ?? registry.contentType, body: msg.body });
  });
  return () =>
    new Promise((resolve, reject) => {
      const id = ++seq;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error("cluster metrics: the primary did not answer"));
      }, timeoutMs);
      pending.set(id, { resolve, reject, timer });
      process.send!({ type: REQUEST, id } satisfies MetricsRequest);
    });
}
