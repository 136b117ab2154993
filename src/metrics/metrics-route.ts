import type http from "node:http";
import type { ServiceMetrics } from "./service-metrics.js";

/** GET /metrics in the Prometheus text format. A failing collector is a 500, not a crash. */
export function metricsRoute(metrics: ServiceMetrics, onError: (err: unknown) => void) {
  return async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" });
      res.end("method not allowed\n");
      return;
    }
    try {
      const { contentType, body } = await metrics.render();
      res.writeHead(200, { "content-type": contentType, "content-length": Buffer.byteLength(body), "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : body);
    } catch (err) {
      onError(err);
      res.writeHead(500, { "content-type": "text/plain" });
      res.end("metrics collection failed\n");
    }
  };
}
