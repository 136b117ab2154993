import http from "node:http";
import https from "node:https";
import { lookup as dnsLookup } from "node:dns/promises";
import type { LookupFunction } from "node:net";
import type { AttemptResult, WebhookTransport } from "../domain/events/webhook-delivery.js";
import type { HostResolver, WebhookTargetPolicy } from "../domain/events/webhook-targets.js";

/** DNS as the OS resolves it for connections (getaddrinfo: /etc/hosts included), every address. */
export const systemResolver: HostResolver = async (hostname) => {
  const all = await dnsLookup(hostname, { all: true, verbatim: true });
  return all.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

/** What a receiver says in a failed attempt's log: enough to debug, never a whole error page. */
const MAX_BODY_SNIPPET = 300;

/**
 * Sends webhook requests with node:http(s), so the connection goes exactly to the addresses the
 * target policy checked: the policy resolves the host once, refuses it if any address is
 * private, and hands the vetted addresses to the socket through `lookup`. There is no second
 * DNS query for an attacker's resolver to answer differently. Redirects are not followed (a 3xx
 * is a failed attempt): following one would be a request to an unchecked target.
 */
export class HttpWebhookTransport implements WebhookTransport {
  constructor(private readonly targets: WebhookTargetPolicy) {}

  async post(url: URL, headers: Record<string, string>, body: string, timeoutMs: number): Promise<AttemptResult> {
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    const target = await this.targets.resolve(url);
    if (!target.ok) return { statusCode: null, error: `refused: ${target.reason}`, durationMs: elapsed() };
    const addresses = target.addresses;
    const lookup: LookupFunction = (_host, options, callback) => {
      const family = typeof options === "object" ? options.family : undefined;
      const usable = family === 4 || family === 6 ? addresses.filter((a) => a.family === family) : addresses;
      if (usable.length === 0) return callback(Object.assign(new Error("no address of the requested family"), { code: "ENOTFOUND" }), "", 4);
      if (typeof options === "object" && options.all) return (callback as unknown as (e: null, a: typeof usable) => void)(null, usable);
      callback(null, usable[0]!.address, usable[0]!.family);
    };

    const client = url.protocol === "https:" ? https : http;
    return new Promise<AttemptResult>((resolve) => {
      let settled = false;
      const done = (r: Omit<AttemptResult, "durationMs">) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({ ...r, durationMs: elapsed() });
      };
      const req = client.request(
        url,
        {
          method: "POST",
          headers: { ...headers, "content-length": String(Buffer.byteLength(body)), "user-agent": "llm-usage-webhooks/1" },
          lookup,
          agent: false,
        },
        (res) => {
          const status = res.statusCode ?? 0;
          let snippet = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => {
            if (snippet.length < MAX_BODY_SNIPPET) snippet += chunk.slice(0, MAX_BODY_SNIPPET - snippet.length);
          });
          res.on("end", () => {
            const ok = status >= 200 && status < 300;
            done({ statusCode: status, error: ok ? null : `HTTP ${status}${snippet.trim() ? `: ${snippet.trim()}` : ""}` });
          });
          res.on("error", (err) => done({ statusCode: status, error: `response interrupted: ${err.message}` }));
        },
      );
      // One deadline for the whole exchange: connect, send, and the receiver's answer.
      const timer = setTimeout(() => {
        done({ statusCode: null, error: `timed out after ${timeoutMs} ms` });
        req.destroy();
      }, timeoutMs);
      req.on("error", (err: NodeJS.ErrnoException) => done({ statusCode: null, error: err.code ? `${err.code}: ${err.message}` : err.message }));
      req.end(body);
    });
  }
}
