import { Webhook } from "standardwebhooks";
import { quotaEventJson, type PublishedQuotaEvent } from "./outbox.js";

/**
 * A webhook message per the Standard Webhooks spec (https://www.standardwebhooks.com):
 *   webhook-id         the event id (evt_…): the same on every retry, so receivers deduplicate on it
 *   webhook-timestamp  this attempt's time, Unix seconds (receivers refuse stale ones: replay guard)
 *   webhook-signature  `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, space-separated
 *                      when more than one secret is valid (during a rotation: new and old)
 * The body is `{ type, timestamp, data }`, `data` being the event as `quotaEvents` shows it.
 */

export function webhookBody(e: PublishedQuotaEvent): string {
  return JSON.stringify({ type: e.type, timestamp: e.occurredAt.toISOString(), data: quotaEventJson(e) });
}

/** One `v1,` signature per secret, in the given order (current secret first). */
export function webhookSignature(secrets: string[], msgId: string, at: Date, body: string): string {
  if (secrets.length === 0) throw new Error("a webhook needs at least one signing secret");
  return secrets.map((s) => new Webhook(s).sign(msgId, at, body)).join(" ");
}

export function webhookHeaders(msgId: string, at: Date, signature: string): Record<string, string> {
  return {
    "content-type": "application/json",
    "webhook-id": msgId,
    "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
    "webhook-signature": signature,
  };
}
