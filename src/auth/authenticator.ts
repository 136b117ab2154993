import { timingSafeEqual, createHash } from "node:crypto";
import type { Actor } from "../domain/tenancy/types.js";
import { unauthenticated } from "../lib/errors.js";

/** Turns an `Authorization` header into the calling Actor (or null when none is presented). */
export interface Authenticator {
  authenticate(authorization: string | undefined, sourceIp: string | null): Promise<Actor | null>;
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

/** Constant-time equality of two secrets (hashing first equalises their lengths). */
export function secretsEqual(a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

export interface AuthenticatorOptions {
  bootstrapAdminToken: string | null;
}

export class BearerAuthenticator implements Authenticator {
  constructor(private readonly opts: AuthenticatorOptions) {}

  async authenticate(authorization: string | undefined): Promise<Actor | null> {
    if (authorization === undefined || authorization === "") return null;
    const m = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!m) throw unauthenticated("Authorization must be `Bearer <token>`");
    const token = m[1]!;
    if (this.opts.bootstrapAdminToken && secretsEqual(token, this.opts.bootstrapAdminToken)) {
      return { kind: "bootstrap", id: "bootstrap", role: "ADMIN", tenantId: null, name: "bootstrap admin" };
    }
    throw unauthenticated();
  }
}
