import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SignJWT, exportJWK, exportSPKI, generateKeyPair, type JWK, type JWTPayload } from "jose";
import { startTestApp, type TestApp } from "../support/app.js";
import { errorCode, GraphQLClient } from "../support/client.js";
import { newId } from "../../src/lib/ids.js";
import { sleep } from "./support.js";

const ISSUER = "https://idp.test.example";
const AUDIENCE = "llm-usage-api";
const COOLDOWN_MS = 2_500;
const TOLERANCE_S = 5;
const VIEWER = `{ viewer { id role tenantId name } }`;

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>;

/** A JWKS endpoint whose key set the test can change, counting every fetch. */
class JwksServer {
  keys: JWK[] = [];
  requests = 0;
  private server = http.createServer((req, res) => {
    this.requests++;
    const body = JSON.stringify({ keys: this.keys });
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
    res.end(body);
  });
  url = "";
  async start() {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/.well-known/jwks.json`;
  }
  stop() {
    return new Promise<void>((r) => this.server.close(() => r()));
  }
}

async function publicJwk(kp: KeyPair, kid: string): Promise<JWK> {
  return { ...(await exportJWK(kp.publicKey)), kid, alg: "RS256", use: "sig" };
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");

describe("OIDC JWT authentication", () => {
  const jwks = new JwksServer();
  let t: TestApp;
  let key1: KeyPair;
  let tenantId: string;

  function sign(claims: JWTPayload, opts: { kid?: string; key?: KeyPair; omit?: Array<"iss" | "aud" | "exp"> } = {}) {
    const omit = new Set(opts.omit ?? []);
    const now = Math.floor(Date.now() / 1000);
    const payload: JWTPayload = {
      sub: "user-1",
      iat: now,
      ...(omit.has("iss") ? {} : { iss: ISSUER }),
      ...(omit.has("aud") ? {} : { aud: AUDIENCE }),
      ...(omit.has("exp") ? {} : { exp: now + 300 }),
      ...claims,
    };
    return new SignJWT(payload).setProtectedHeader({ alg: "RS256", kid: opts.kid ?? "k1" }).sign((opts.key ?? key1).privateKey);
  }
  const as = (token: string) => new GraphQLClient(t.url, token);

  beforeAll(async () => {
    key1 = await generateKeyPair("RS256", { extractable: true });
    await jwks.start();
    jwks.keys = [await publicJwk(key1, "k1")];
    t = await startTestApp({
      OIDC_JWKS_URL: jwks.url,
      OIDC_ISSUER: ISSUER,
      OIDC_AUDIENCE: AUDIENCE,
      OIDC_ALGORITHMS: "RS256,ES256",
      OIDC_JWKS_COOLDOWN_MS: String(COOLDOWN_MS),
      OIDC_CLOCK_TOLERANCE_SECONDS: String(TOLERANCE_S),
    });
    tenantId = newId("tenant");
  });
  afterAll(async () => {
    await t?.close();
    await jwks.stop();
  });

  it("accepts a valid token and maps role and tenant", async () => {
    const gw = await as(await sign({ role: "GATEWAY" })).request(VIEWER);
    expect(gw.data?.viewer).toEqual({ id: "user-1", role: "GATEWAY", tenantId: null, name: "user-1" });

    const ta = await as(await sign({ role: "TENANT_ADMIN", tenant_id: tenantId, sub: "ta-1", name: "Tenant Admin" })).request(VIEWER);
    expect(ta.data?.viewer).toEqual({ id: "ta-1", role: "TENANT_ADMIN", tenantId, name: "Tenant Admin" });

    // IdPs that put roles in a list: exactly one known role is accepted.
    const listed = await as(await sign({ role: ["offline_access", "BILLING"], tenant_id: tenantId })).request(VIEWER);
    expect(listed.data?.viewer).toMatchObject({ role: "BILLING", tenantId });

    // An ADMIN is never confined to a tenant, whatever the token says.
    const adm = await as(await sign({ role: "ADMIN", tenant_id: tenantId })).request(VIEWER);
    expect(adm.data?.viewer).toMatchObject({ role: "ADMIN", tenantId: null });
  });

  it("accepts expiry within the clock tolerance", async () => {
    const now = Math.floor(Date.now() / 1000);
    const r = await as(await sign({ role: "GATEWAY", exp: now - (TOLERANCE_S - 2) })).request(VIEWER);
    expect(r.data?.viewer.role).toBe("GATEWAY");
  });

  describe("refuses with UNAUTHENTICATED (HTTP 401)", () => {
    const now = () => Math.floor(Date.now() / 1000);
    const cases: Array<[string, () => Promise<string>, RegExp]> = [
      [
        "alg none",
        async () => `${b64({ alg: "none", kid: "k1", typ: "JWT" })}.${b64({ sub: "x", iss: ISSUER, aud: AUDIENCE, exp: now() + 300, role: "ADMIN" })}.`,
        /"alg" .* not allowed/,
      ],
      [
        "HS256 signed with the RSA public key as the HMAC secret",
        async () => {
          const pem = await exportSPKI(key1.publicKey);
          const payload = { sub: "x", iss: ISSUER, aud: AUDIENCE, exp: now() + 300, role: "ADMIN" };
          return new SignJWT(payload).setProtectedHeader({ alg: "HS256", kid: "k1" }).sign(new TextEncoder().encode(pem));
        },
        /"alg" .* not allowed/,
      ],
      ["a wrong issuer", () => sign({ role: "ADMIN", iss: "https://evil.example" }), /unexpected "iss"/],
      ["a missing issuer", () => sign({ role: "ADMIN" }, { omit: ["iss"] }), /missing required "iss"/],
      ["a wrong audience", () => sign({ role: "ADMIN", aud: "another-api" }), /unexpected "aud"/],
      ["a missing audience", () => sign({ role: "ADMIN" }, { omit: ["aud"] }), /missing required "aud"/],
      ["a missing expiry", () => sign({ role: "ADMIN" }, { omit: ["exp"] }), /missing required "exp"/],
      ["expiry beyond the tolerance", () => sign({ role: "ADMIN", exp: now() - (TOLERANCE_S + 5) }), /"exp" claim timestamp check failed/],
      ["nbf in the future", () => sign({ role: "ADMIN", nbf: now() + 60 }), /"nbf" claim timestamp check failed/],
      ["a missing role claim", () => sign({}), /claim "role" must name exactly one/],
      ["an unknown role", () => sign({ role: "SUPERUSER" }), /claim "role" must name exactly one/],
      ["two roles at once", () => sign({ role: ["ADMIN", "GATEWAY"] }), /claim "role" must name exactly one/],
      ["a TENANT_ADMIN without a tenant", () => sign({ role: "TENANT_ADMIN" }), /TENANT_ADMIN token needs the "tenant_id" claim/],
      ["a malformed tenant claim", () => sign({ role: "TENANT_ADMIN", tenant_id: "acme" }), /"tenant_id" is not a tenant id/],
      [
        "a signature by another key under a known kid",
        async () => sign({ role: "ADMIN" }, { key: await generateKeyPair("RS256", { extractable: true }) }),
        /signature verification failed/,
      ],
      [
        "a tampered payload",
        async () => {
          const [h, , sig] = (await sign({ role: "GATEWAY" })).split(".");
          return `${h}.${b64({ sub: "x", iss: ISSUER, aud: AUDIENCE, exp: now() + 300, role: "ADMIN" })}.${sig}`;
        },
        /signature verification failed/,
      ],
    ];
    for (const [what, make, reason] of cases) {
      it(what, async () => {
        const r = await as(await make()).request(VIEWER);
        expect(r.status).toBe(401);
        expect(errorCode(r)).toBe("UNAUTHENTICATED");
        expect(r.data).toBeNull();
        expect(r.errors![0]!.message).toMatch(reason);
      });
    }
  });

  it("accepts a rotated signing key without restart, and a kid storm costs at most one JWKS fetch", async () => {
    const key2 = await generateKeyPair("RS256", { extractable: true });
    jwks.keys = [await publicJwk(key1, "k1"), await publicJwk(key2, "k2")];
    // An unknown kid may refetch only once the cooldown since the last fetch has passed.
    await sleep(COOLDOWN_MS + 200);
    const rotated = await as(await sign({ role: "BILLING" }, { kid: "k2", key: key2 })).request(VIEWER);
    expect(rotated.data?.viewer.role).toBe("BILLING");
    expect((await as(await sign({ role: "GATEWAY" })).request(VIEWER)).data?.viewer.role).toBe("GATEWAY");

    await sleep(COOLDOWN_MS + 200);
    const forger = await generateKeyPair("RS256");
    const before = jwks.requests;
    const storm = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const token = await new SignJWT({ sub: "x", iss: ISSUER, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 300, role: "ADMIN" })
          .setProtectedHeader({ alg: "RS256", kid: `unknown-${i}` })
          .sign(forger.privateKey);
        return as(token).request(VIEWER);
      }),
    );
    expect(storm.every((r) => r.status === 401 && errorCode(r) === "UNAUTHENTICATED")).toBe(true);
    expect(jwks.requests - before).toBeLessThanOrEqual(1);
    // Within the cooldown that follows, further unknown kids fetch nothing at all.
    const settled = jwks.requests;
    const second = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const token = await new SignJWT({ sub: "x", iss: ISSUER, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 300, role: "ADMIN" })
          .setProtectedHeader({ alg: "RS256", kid: `unknown-again-${i}` })
          .sign(forger.privateKey);
        return as(token).request(VIEWER);
      }),
    );
    expect(second.every((r) => r.status === 401)).toBe(true);
    expect(jwks.requests).toBe(settled);

    // Known keys keep working from the cached set throughout.
    expect((await as(await sign({ role: "GATEWAY" }, { kid: "k2", key: key2 })).request(VIEWER)).status).toBe(200);
  });
});

describe("OIDC with an unreachable JWKS", () => {
  let t: TestApp;
  let blackhole: net.Server;
  const sockets = new Set<net.Socket>();
  let connections = 0;

  beforeAll(async () => {
    // Accepts connections and never answers: the worst case, worse than a refused connection.
    blackhole = net.createServer((s) => {
      connections++;
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    });
    await new Promise<void>((r) => blackhole.listen(0, "127.0.0.1", r));
    const port = (blackhole.address() as AddressInfo).port;
    t = await startTestApp({
      OIDC_JWKS_URL: `http://127.0.0.1:${port}/jwks`,
      OIDC_ISSUER: ISSUER,
      OIDC_AUDIENCE: AUDIENCE,
      OIDC_JWKS_TIMEOUT_MS: "3000",
    });
  });
  afterAll(async () => {
    await t?.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => blackhole.close(() => r()));
  });

  it("fails within 5 s as BACKEND_UNAVAILABLE (503, retryable), and other credentials still work", async () => {
    const kp = await generateKeyPair("RS256");
    const token = await new SignJWT({ sub: "x", iss: ISSUER, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 300, role: "ADMIN" })
      .setProtectedHeader({ alg: "RS256", kid: "k1" })
      .sign(kp.privateKey);
    const started = Date.now();
    const r = await new GraphQLClient(t.url, token).request(VIEWER);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeLessThan(5_000);
    expect(r.status).toBe(503);
    expect(errorCode(r)).toBe("BACKEND_UNAVAILABLE");
    expect(r.errors![0]!.extensions!.retryable).toBe(true);
    // It really waited on the JWKS (and gave up on the timeout), rather than failing for another reason.
    expect(connections).toBeGreaterThan(0);
    expect(elapsed).toBeGreaterThanOrEqual(2_900);

    expect((await t.admin.request(VIEWER)).data?.viewer.role).toBe("ADMIN");
  });
});
