import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

/**
 * Webhook signing secrets: generated here, shown to the operator once, stored sealed.
 *
 * Standard Webhooks secrets are `whsec_` + base64 of 24 to 64 random bytes; we use 32. The
 * sender must hold the secret itself to compute HMACs, so (unlike API keys) it cannot be stored
 * as a hash. It is sealed with AES-256-GCM under a key derived (HKDF-SHA256) from
 * WEBHOOK_SECRET_KEY, with the endpoint id as associated data: a sealed secret copied onto
 * another endpoint's row fails to open instead of signing for it.
 */

const SECRET_BYTES = 32;
const VERSION = "v1";

export function generateWebhookSecret(): string {
  return `whsec_${randomBytes(SECRET_BYTES).toString("base64")}`;
}

export class WebhookSecretBox {
  private readonly key: Buffer;

  constructor(masterKey: string) {
    if (masterKey.length < 32) throw new Error("webhook secret key must be at least 32 characters");
    this.key = Buffer.from(hkdfSync("sha256", Buffer.from(masterKey, "utf8"), Buffer.from("llm-usage/webhook-secrets"), Buffer.from(VERSION), 32));
  }

  seal(secret: string, endpointId: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    cipher.setAAD(Buffer.from(endpointId, "utf8"));
    const ct = Buffer.concat([cipher.update(secret, "utf8"), cipher.final()]);
    return `${VERSION}.${iv.toString("base64url")}.${cipher.getAuthTag().toString("base64url")}.${ct.toString("base64url")}`;
  }

  /** Throws when the value was sealed under another key or for another endpoint. */
  open(sealed: string, endpointId: string): string {
    const [version, iv, tag, ct] = sealed.split(".");
    if (version !== VERSION || !iv || !tag || ct === undefined) throw new Error("unrecognised sealed webhook secret");
    const decipher = createDecipheriv("aes-256-gcm", this.key, Buffer.from(iv, "base64url"));
    decipher.setAAD(Buffer.from(endpointId, "utf8"));
    decipher.setAuthTag(Buffer.from(tag, "base64url"));
    return Buffer.concat([decipher.update(Buffer.from(ct, "base64url")), decipher.final()]).toString("utf8");
  }
}
