import { timingSafeEqual } from "node:crypto";
import { createRemoteJWKSet, customFetch, errors as joseErrors, jwtVerify, type FetchImplementation, type JWTPayload } from "jose";
import { ROLES, type Actor, type Role } from "../domain/tenancy/types.js";
import type { CredentialRecord } from "../domain/tenancy/credentials.service.js";
import type { Config } from "../config/config.js";
import type { Logger } from "../lib/logger.js";
import { backendUnavailable, isDomainError, unauthenticated } from "../lib/errors.js";
import { isIdOf, randomBase62 } from "../lib/ids.js";
import { apiKeyFormat, checksumValid, credentialFormat, digestMatchesHash, digestToken, parseToken, parseTokenShape, type TokenFormat } from "./api-key-format.js";
import { InvalidatedCache, type InvalidationSource } from "./api-key-verifier.js";

/** Turns an `Authorization` header into the calling Actor (or null when none is presented). */
export interface Authenticator {
  authenticate(authorization: string | undefined, sourceIp: string | null): Promise<Actor | null>;
}

export type OidcSettings = NonNullable<Config["auth"]["oidc"]>;

/** What the authenticator reads about service credentials (the credential repository). */
export interface CredentialLookup {
  findForAuth(id: string): Promise<CredentialRecord | null>;
  hasActiveAdmin(): Promise<boolean>;
}

export interface AuthenticatorOptions {
  /** BOOTSTRAP_ADMIN_TOKEN: accepted as ADMIN for as long as it is configured. */
  bootstrapAdminToken: string | null;
  apiKeyPrefix: string;
  credentials: CredentialLookup;
  invalidation: InvalidationSource;
  /** Upper bound on how long a revoked credential may still be accepted if a message is lost. */
  cacheTtlMs: number;
  oidc: OidcSettings | null;
  logger: Logger;
  maxCachedCredentials?: number;
}

const JWT_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;
/** Longer bearer strings are refused unread: nothing hashes or parses attacker-sized input. */
const MAX_BEARER_LENGTH = 8_192;
const MAX_JWKS_BYTES = 1_000_000;

/** The JWKS endpoint could not be reached or did not answer with a key set. */
class JwksUnavailableError extends Error {}

async function readCapped(res: Response, limit: number): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      throw new JwksUnavailableError(`JWKS response exceeds ${limit} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * jose's fetch, with every way the identity provider can be unreachable or broken turned into
 * JwksUnavailableError, so "we could not check" (503, retryable) is never confused with "this
 * token is bad" (401). Timeouts are rethrown as-is for jose to report as JWKSTimeout.
 */
const fetchJwks: FetchImplementation = async (url, init) => {
  try {
    const res = await fetch(url, init);
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new JwksUnavailableError(`JWKS endpoint answered HTTP ${res.status}`);
    }
    const text = await readCapped(res, MAX_JWKS_BYTES);
    try {
      JSON.parse(text);
    } catch {
      throw new JwksUnavailableError("JWKS endpoint answered with something that is not JSON");
    }
    return new Response(text, { status: 200, headers: { "content-type": "application/json" } });
  } catch (err) {
    if (err instanceof JwksUnavailableError || (err as Error)?.name === "TimeoutError") throw err;
    throw new JwksUnavailableError(`JWKS endpoint unreachable: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
};

function isJwksOutage(err: unknown): boolean {
  return err instanceof JwksUnavailableError || err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid;
}

/**
 * OIDC access tokens: signature against the issuer's JWKS, then issuer, audience, expiry and
 * not-before (with clock tolerance). The algorithm allow-list is checked by jose before any
 * key is resolved, so `alg: none` and HS* (an attacker "signing" with the public key as an
 * HMAC secret) are refused without a JWKS fetch.
 *
 * Key rotation at the IdP: a token whose `kid` is not in the cached set triggers one refetch,
 * at most once per `jwksCooldownMs`; concurrent misses share that fetch. A storm of tokens with
 * made-up kids therefore costs the IdP one request per cooldown, not one per token.
 */
export class OidcVerifier {
  private readonly jwks: ReturnType<typeof createRemoteJWKSet>;
  private readonly algorithms: string[];

  constructor(private readonly settings: OidcSettings) {
    // Config refuses these already; refusing again here keeps the invariant local and obvious.
    this.algorithms = settings.algorithms.filter((a) => a.toLowerCase() !== "none" && !a.toUpperCase().startsWith("HS"));
    if (this.algorithms.length === 0) throw new Error("OIDC needs at least one asymmetric algorithm");
    this.jwks = createRemoteJWKSet(new URL(settings.jwksUrl), {
      cooldownDuration: settings.jwksCooldownMs,
      timeoutDuration: settings.jwksTimeoutMs,
      [customFetch]: fetchJwks,
    });
  }

  async verify(token: string): Promise<Actor> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.jwks, {
        issuer: this.settings.issuer,
        audience: this.settings.audience,
        algorithms: this.algorithms,
        clockTolerance: this.settings.clockToleranceSeconds,
        requiredClaims: ["exp", "sub"],
      }));
    } catch (err) {
      if (isJwksOutage(err)) {
        throw backendUnavailable("the identity provider's signing keys (JWKS) could not be fetched; retry shortly", err);
      }
      if (err instanceof joseErrors.JOSEError) throw unauthenticated(`JWT rejected: ${err.message}`);
      throw err;
    }
    const s = this.settings;
    const role = roleFromClaim(payload[s.roleClaim]);
    if (role === null) throw unauthenticated(`JWT rejected: claim "${s.roleClaim}" must name exactly one of ${ROLES.join(", ")}`);
    const tenantClaim = payload[s.tenantClaim];
    let tenantId: string | null = null;
    if (role !== "ADMIN" && tenantClaim !== undefined && tenantClaim !== null) {
      if (typeof tenantClaim !== "string" || !isIdOf("tenant", tenantClaim)) {
        throw unauthenticated(`JWT rejected: claim "${s.tenantClaim}" is not a tenant id`);
      }
      tenantId = tenantClaim;
    }
    if (role === "TENANT_ADMIN" && tenantId === null) {
      throw unauthenticated(`JWT rejected: a TENANT_ADMIN token needs the "${s.tenantClaim}" claim`);
    }
    const sub = String(payload.sub);
    const display = typeof payload.name === "string" ? payload.name : typeof payload.preferred_username === "string" ? payload.preferred_username : sub;
    return { kind: "jwt", id: sub.slice(0, 200), role, tenantId, name: display.slice(0, 200) };
  }
}

/** A role claim is one role name, or a list holding exactly one of them (IdPs differ). */
function roleFromClaim(v: unknown): Role | null {
  const known = (x: unknown): x is Role => typeof x === "string" && (ROLES as readonly string[]).includes(x);
  if (known(v)) return v;
  if (Array.isArray(v)) {
    const roles = v.filter(known);
    return roles.length === 1 ? roles[0]! : null;
  }
  return null;
}

/**
 * Resolves a Bearer token to an Actor, in this order:
 *  1. BOOTSTRAP_ADMIN_TOKEN (ADMIN);
 *  2. the generated first-start token (ADMIN, only while no ADMIN credential exists);
 *  3. a service credential (`<prefix>svc_…`), cached per replica and dropped on invalidation;
 *  4. an OIDC JWT, when OIDC is configured.
 * Anything else is UNAUTHENTICATED (HTTP 401). A backing store or IdP that cannot be reached
 * is BACKEND_UNAVAILABLE (HTTP 503, retryable), never a misleading 401.
 */
export class BearerAuthenticator implements Authenticator {
  private readonly credentialFormat: TokenFormat;
  private readonly apiKeyFormat: TokenFormat;
  private readonly credentialCache: InvalidatedCache<CredentialRecord | null>;
  /** Whether an ADMIN credential exists; only consulted for the generated bootstrap token. */
  private readonly adminExists: InvalidatedCache<boolean>;
  private readonly oidc: OidcVerifier | null;
  private readonly unsubscribe: () => void;
  /** SHA-256 of the token generated on a first start with no configuration (never the token itself). */
  private generatedBootstrapDigest: Buffer | null = null;
  private readonly bootstrapDigest: Buffer | null;

  constructor(private readonly opts: AuthenticatorOptions) {
    this.credentialFormat = credentialFormat(opts.apiKeyPrefix);
    this.apiKeyFormat = apiKeyFormat(opts.apiKeyPrefix);
    this.bootstrapDigest = opts.bootstrapAdminToken ? digestToken(opts.bootstrapAdminToken) : null;
    this.credentialCache = new InvalidatedCache({ ttlMs: opts.cacheTtlMs, maxEntries: opts.maxCachedCredentials ?? 10_000 });
    this.adminExists = new InvalidatedCache({ ttlMs: opts.cacheTtlMs, maxEntries: 1 });
    this.oidc = opts.oidc ? new OidcVerifier(opts.oidc) : null;
    this.unsubscribe = opts.invalidation.onInvalidate((m) => {
      if (m.kind === "credential") {
        this.credentialCache.invalidate(m.id);
        this.adminExists.clear();
      } else if (m.kind === "all") {
        this.credentialCache.clear();
        this.adminExists.clear();
      }
    });
  }

  /**
   * First start with no configuration: with no BOOTSTRAP_ADMIN_TOKEN and no ADMIN credential,
   * an operator would have no way in. Generate a token for this process only, print it once,
   * and accept it until an ADMIN credential exists. It is never written to the database or a
   * file, so it dies with the process.
   */
  async start(): Promise<void> {
    if (this.opts.bootstrapAdminToken !== null) return;
    if (await this.opts.credentials.hasActiveAdmin()) return;
    const token = `${this.opts.apiKeyPrefix}boot_${randomBase62(43)}`;
    this.generatedBootstrapDigest = digestToken(token);
    const message =
      "No ADMIN credential exists and BOOTSTRAP_ADMIN_TOKEN is not set. " +
      `Generated bootstrap admin token for this process: ${token} ` +
      "Send it as `Authorization: Bearer <token>` and call createCredential(input: { role: ADMIN, name: \"...\" }) " +
      "to create a real admin credential. The token is not stored anywhere and stops working once an ADMIN credential exists.";
    // The token is in the message, not a field: the logger redacts fields named `token`.
    // If warnings are silenced the operator would never see it, so it goes to stdout directly.
    if (this.opts.logger.isLevelEnabled("warn")) this.opts.logger.warn({ bootstrap: "generated" }, message);
    else process.stdout.write(`${message}\n`);
  }

  async authenticate(authorization: string | undefined): Promise<Actor | null> {
    if (authorization === undefined || authorization === "") return null;
    if (authorization.length > MAX_BEARER_LENGTH + 16) throw unauthenticated("Authorization header is too long");
    const m = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!m) throw unauthenticated("Authorization must be `Bearer <token>`");
    const token = m[1]!;
    // One SHA-256 of the presented token serves every comparison below: the bootstrap tokens'
    // digests are computed once, and a credential's stored hash is that digest.
    const digest = digestToken(token);

    if (this.bootstrapDigest && timingSafeEqual(digest, this.bootstrapDigest)) {
      return { kind: "bootstrap", id: "bootstrap", role: "ADMIN", tenantId: null, name: "bootstrap admin" };
    }
    if (this.generatedBootstrapDigest !== null && timingSafeEqual(digest, this.generatedBootstrapDigest)) {
      return this.generatedBootstrapActor();
    }
    const credential = parseTokenShape(this.credentialFormat, token);
    // As for API keys: the checksum spares storage a lookup, so it is checked only when the
    // credential is not cached; the digest comparison covers its digits anyway.
    if (credential && (this.credentialCache.has(credential.id) || checksumValid(this.credentialFormat, credential))) {
      return this.credentialActor(digest, credential.id);
    }
    if (JWT_RE.test(token)) {
      if (!this.oidc) throw unauthenticated("JWTs are not accepted: OIDC is not configured on this service");
      return this.oidc.verify(token);
    }
    if (parseToken(this.apiKeyFormat, token)) {
      throw unauthenticated("a tenant API key authorizes LLM requests through checkAndReserve; call this API with a service credential");
    }
    throw unauthenticated();
  }

  close(): void {
    this.unsubscribe();
  }

  private async generatedBootstrapActor(): Promise<Actor> {
    const exists = await this.guardStore(() => this.adminExists.get("admin", () => this.opts.credentials.hasActiveAdmin()));
    if (exists) {
      // Once real admins exist the generated token is retired for good, even if they are later revoked.
      this.generatedBootstrapDigest = null;
      this.opts.logger.info("generated bootstrap admin token retired: an ADMIN credential exists");
      throw unauthenticated("the generated bootstrap token was retired because an ADMIN credential exists");
    }
    return { kind: "bootstrap", id: "bootstrap-generated", role: "ADMIN", tenantId: null, name: "generated bootstrap admin" };
  }

  private async credentialActor(digest: Buffer, id: string): Promise<Actor> {
    const record = await this.guardStore(() => this.credentialCache.get(id, (i) => this.opts.credentials.findForAuth(i)));
    if (!record || !digestMatchesHash(digest, record.secretHash)) throw unauthenticated();
    const c = record.credential;
    if (c.status !== "ACTIVE") throw unauthenticated("this credential has been revoked");
    return { kind: "credential", id: c.id, role: c.role, tenantId: c.tenantId, name: c.name };
  }

  /** A database outage while authenticating is the service's fault, not the caller's. */
  private async guardStore<T>(read: () => Promise<T>): Promise<T> {
    try {
      return await read();
    } catch (err) {
      if (isDomainError(err)) throw err;
      throw backendUnavailable("credential store unavailable; retry shortly", err);
    }
  }
}
