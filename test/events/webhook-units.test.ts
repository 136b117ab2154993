import { describe, expect, it } from "vitest";
import { Webhook, WebhookVerificationError } from "standardwebhooks";
import { webhookBody, webhookHeaders, webhookSignature } from "../../src/domain/events/webhook-message.js";
import { generateWebhookSecret, WebhookSecretBox } from "../../src/domain/events/webhook-secrets.js";
import {
  WEBHOOK_MAX_ATTEMPTS,
  WEBHOOK_RETRY_DELAYS_MS,
  WEBHOOK_RETRY_JITTER,
  webhookRetryDelayMs,
} from "../../src/domain/events/webhook-retry.js";
import { forbiddenAddressReason, WebhookTargetPolicy } from "../../src/domain/events/webhook-targets.js";
import { systemResolver } from "../../src/jobs/webhook-sender.js";
import type { PublishedQuotaEvent } from "../../src/domain/events/outbox.js";

const event: PublishedQuotaEvent = {
  id: "evt_0123456789ABCDEF",
  seq: 7n,
  deliverySeq: 42n,
  type: "threshold.crossed",
  tenantId: "ten_0123456789ABCDEF",
  scope: "tenant",
  period: "2026-11",
  payload: { dimension: "MONTHLY_BUDGET", percent: 80, usedUsd: "80.000000000", limitUsd: "100.000000000" },
  occurredAt: new Date("2026-11-21T10:00:00.000Z"),
  publishedAt: new Date("2026-11-21T10:00:00.100Z"),
};

/** Signs as the dispatcher does, for `at`. */
function signed(secrets: string[], at = new Date()) {
  const body = webhookBody(event);
  return { body, headers: webhookHeaders(event.id, at, webhookSignature(secrets, event.id, at, body)) };
}

describe("Standard Webhooks signatures, verified with the standardwebhooks library", () => {
  const secret = generateWebhookSecret();

  it("verifies, and the verified body is the event as quotaEvents shows it", () => {
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const { body, headers } = signed([secret]);
    expect(headers["webhook-id"]).toBe(event.id);
    expect(headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    const verified = new Webhook(secret).verify(body, headers) as any;
    expect(verified).toEqual({
      type: "threshold.crossed",
      timestamp: "2026-11-21T10:00:00.000Z",
      data: {
        id: event.id,
        type: "threshold.crossed",
        tenantId: event.tenantId,
        scope: "tenant",
        period: "2026-11",
        occurredAt: "2026-11-21T10:00:00.000Z",
        cursor: Buffer.from("42").toString("base64url"),
        payload: event.payload,
      },
    });
  });

  it("refuses a tampered body, a tampered id, a wrong secret and a stale or future timestamp", () => {
    const { body, headers } = signed([secret]);
    const wh = new Webhook(secret);
    expect(() => wh.verify(body.replace('"percent":80', '"percent":81'), headers)).toThrow(WebhookVerificationError);
    expect(() => wh.verify(body, { ...headers, "webhook-id": "evt_other0000000000" })).toThrow(/No matching signature/);
    expect(() => new Webhook(generateWebhookSecret()).verify(body, headers)).toThrow(/No matching signature/);

    const stale = signed([secret], new Date(Date.now() - 6 * 60_000));
    expect(() => wh.verify(stale.body, stale.headers)).toThrow(/too old/);
    const future = signed([secret], new Date(Date.now() + 6 * 60_000));
    expect(() => wh.verify(future.body, future.headers)).toThrow(/too new/);
    // Within the library's 5-minute tolerance the same message verifies: the refusals above are the timestamp's.
    const recent = signed([secret], new Date(Date.now() - 4 * 60_000));
    expect(wh.verify(recent.body, recent.headers)).toBeTruthy();
  });

  it("during a rotation carries two signatures, and each secret alone verifies the message", () => {
    const next = generateWebhookSecret();
    const { body, headers } = signed([next, secret]);
    const sigs = headers["webhook-signature"]!.split(" ");
    expect(sigs).toHaveLength(2);
    expect(sigs[0]).not.toBe(sigs[1]);
    expect(new Webhook(next).verify(body, headers)).toBeTruthy();
    expect(new Webhook(secret).verify(body, headers)).toBeTruthy();
    expect(() => new Webhook(generateWebhookSecret()).verify(body, headers)).toThrow(WebhookVerificationError);
  });
});

describe("webhook secrets at rest", () => {
  it("seal and open round-trip; another endpoint's id or another key cannot open them", () => {
    const box = new WebhookSecretBox("k".repeat(40));
    const secret = generateWebhookSecret();
    const sealed = box.seal(secret, "wh_AAAAAAAAAAAAAAAA");
    expect(sealed).not.toContain(secret.slice(6, 30));
    expect(box.seal(secret, "wh_AAAAAAAAAAAAAAAA")).not.toBe(sealed); // fresh IV each time
    expect(box.open(sealed, "wh_AAAAAAAAAAAAAAAA")).toBe(secret);
    expect(() => box.open(sealed, "wh_BBBBBBBBBBBBBBBB")).toThrow();
    expect(() => new WebhookSecretBox("j".repeat(40)).open(sealed, "wh_AAAAAAAAAAAAAAAA")).toThrow();
  });
});

describe("retry schedule", () => {
  it("backs off exponentially from 30 s, capped at 6 h, over 14 attempts spanning about a day", () => {
    const mid = () => 0.5; // jitter factor exactly 1
    const nominal = Array.from({ length: WEBHOOK_MAX_ATTEMPTS - 1 }, (_, i) => webhookRetryDelayMs(i + 1, mid)!);
    expect(nominal.map((ms) => ms / 1000)).toEqual([30, 60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600, 21600]);
    expect(nominal).toEqual(WEBHOOK_RETRY_DELAYS_MS);
    const hours = (ms: number) => ms / 3_600_000;
    expect(hours(nominal.reduce((a, b) => a + b, 0))).toBeCloseTo(26.525, 3);
    // After the last attempt nothing follows: the delivery is FAILED.
    expect(webhookRetryDelayMs(WEBHOOK_MAX_ATTEMPTS, mid)).toBeNull();
    expect(webhookRetryDelayMs(0, mid)).toBeNull();
  });

  it("jitters each delay within ±20 %, so the whole schedule stays between about 21 and 32 hours", () => {
    for (const [i, d] of WEBHOOK_RETRY_DELAYS_MS.entries()) {
      expect(webhookRetryDelayMs(i + 1, () => 0)).toBe(Math.round(d * (1 - WEBHOOK_RETRY_JITTER)));
      expect(webhookRetryDelayMs(i + 1, () => 0.999999)).toBeLessThanOrEqual(Math.round(d * (1 + WEBHOOK_RETRY_JITTER)));
    }
    const low = WEBHOOK_RETRY_DELAYS_MS.reduce((a, _d, i) => a + webhookRetryDelayMs(i + 1, () => 0)!, 0);
    const high = WEBHOOK_RETRY_DELAYS_MS.reduce((a, _d, i) => a + webhookRetryDelayMs(i + 1, () => 0.999999)!, 0);
    expect(low / 3_600_000).toBeGreaterThan(21);
    expect(high / 3_600_000).toBeLessThan(32);
    // Real randomness: two retries of the same attempt rarely coincide (receivers are not hit in lockstep).
    const samples = new Set(Array.from({ length: 20 }, () => webhookRetryDelayMs(3)));
    expect(samples.size).toBeGreaterThan(10);
  });
});

describe("webhook target addresses (SSRF)", () => {
  it.each([
    ["127.0.0.1", /loopback/],
    ["127.255.0.9", /loopback/],
    ["10.1.2.3", /private/],
    ["172.16.0.1", /private/],
    ["172.31.255.255", /private/],
    ["192.168.1.1", /private/],
    ["169.254.169.254", /link-local/],
    ["0.0.0.0", /unspecified/],
    ["100.64.0.1", /shared/],
    ["224.0.0.1", /multicast/],
    ["255.255.255.255", /broadcast/],
    ["::1", /loopback/],
    ["::", /unspecified/],
    ["fc00::1", /unique local/],
    ["fd12:3456::1", /unique local/],
    ["fe80::1", /link-local/],
    ["::ffff:127.0.0.1", /loopback.*IPv6/],
    ["::ffff:7f00:1", /loopback.*IPv6/],
    ["::ffff:10.0.0.1", /private.*IPv6/],
    ["64:ff9b::a9fe:a9fe", /link-local.*IPv6/],
    ["2002:7f00:1::", /loopback.*6to4/],
  ])("refuses %s", (addr, why) => {
    expect(forbiddenAddressReason(addr)).toMatch(why);
  });

  it.each(["8.8.8.8", "1.1.1.1", "172.32.0.1", "192.169.0.1", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8"])(
    "allows public %s",
    (addr) => {
      expect(forbiddenAddressReason(addr)).toBeNull();
    },
  );

  it("refuses literals and names that resolve to private space (localhost via the system resolver), unless allowed", async () => {
    const strict = new WebhookTargetPolicy({ allowPrivate: false, resolve: systemResolver });
    for (const u of ["http://127.0.0.1:8080/x", "http://10.0.0.5/x", "http://169.254.169.254/latest/meta-data", "http://[::1]:9000/", "http://localhost:4000/hook"]) {
      const r = await strict.resolve(strict.parseUrl(u, "url"));
      expect(r.ok, u).toBe(false);
      expect(!r.ok && r.reason).toMatch(/private targets are refused/);
    }
    const local = await strict.resolve(new URL("http://localhost/"));
    expect(!local.ok && local.reason).toMatch(/^localhost resolves to (127\.0\.0\.1|::1), which is loopback/);

    // A name with one public and one private address is refused as a whole.
    const mixed = new WebhookTargetPolicy({
      allowPrivate: false,
      resolve: async () => [
        { address: "93.184.216.34", family: 4 },
        { address: "10.0.0.7", family: 4 },
      ],
    });
    expect((await mixed.resolve(new URL("https://mixed.example/"))).ok).toBe(false);

    const lax = new WebhookTargetPolicy({ allowPrivate: true, resolve: systemResolver });
    expect(await lax.resolve(new URL("http://127.0.0.1:8080/"))).toEqual({ ok: true, addresses: [{ address: "127.0.0.1", family: 4 }] });
    expect((await lax.resolve(new URL("http://localhost:8080/"))).ok).toBe(true);
  });

  it("refuses URLs that are not plain http(s) targets", () => {
    const p = new WebhookTargetPolicy({ allowPrivate: true, resolve: systemResolver });
    for (const [u, msg] of [
      ["ftp://example.com/x", /http or https/],
      ["file:///etc/passwd", /http or https/],
      ["https://user:pw@example.com/", /credentials/],
      ["https://example.com/#frag", /fragment/],
      ["not a url", /not a valid URL/],
      [`https://example.com/${"a".repeat(2100)}`, /1 to 2048/],
    ] as const) {
      expect(() => p.parseUrl(u, "input.url"), u).toThrow(msg);
    }
  });
});
