import { isIP } from "node:net";
import { badInput } from "../../lib/errors.js";

/**
 * Where webhooks may be sent. A webhook URL is an instruction to make HTTP requests from inside
 * our network, so by default a target that resolves to loopback, private (RFC 1918, CGNAT, ULA),
 * link-local (cloud metadata lives at 169.254.169.254), unspecified, multicast or reserved space
 * is refused: at creation and again at every delivery, because DNS can change in between. At
 * delivery the connection goes to the very address that was checked (see webhook-sender.ts), so
 * a DNS answer that changes between check and connect (rebinding) cannot slip through.
 * WEBHOOK_ALLOW_PRIVATE_TARGETS=true lifts the address rule (local development and tests).
 */

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** DNS as connections see it (getaddrinfo: /etc/hosts included), every address. */
export type HostResolver = (hostname: string) => Promise<ResolvedAddress[]>;

export type TargetResolution = { ok: true; addresses: ResolvedAddress[] } | { ok: false; reason: string };

export const MAX_WEBHOOK_URL_LENGTH = 2_048;

type Range = { bytes: number[]; bits: number; label: string };

const v4 = (a: number, b: number, c: number, d: number, bits: number, label: string): Range => ({ bytes: [a, b, c, d], bits, label });
const V4_RANGES: Range[] = [
  v4(0, 0, 0, 0, 8, "unspecified (0.0.0.0/8)"),
  v4(10, 0, 0, 0, 8, "private (10.0.0.0/8)"),
  v4(100, 64, 0, 0, 10, "shared address space (100.64.0.0/10)"),
  v4(127, 0, 0, 0, 8, "loopback (127.0.0.0/8)"),
  v4(169, 254, 0, 0, 16, "link-local (169.254.0.0/16)"),
  v4(172, 16, 0, 0, 12, "private (172.16.0.0/12)"),
  v4(192, 0, 0, 0, 24, "IETF protocol assignments (192.0.0.0/24)"),
  v4(192, 168, 0, 0, 16, "private (192.168.0.0/16)"),
  v4(198, 18, 0, 0, 15, "benchmarking (198.18.0.0/15)"),
  v4(224, 0, 0, 0, 4, "multicast (224.0.0.0/4)"),
  v4(240, 0, 0, 0, 4, "reserved (240.0.0.0/4)"),
];

const v6 = (prefix: number[], bits: number, label: string): Range => ({ bytes: prefix, bits, label });
const V6_RANGES: Range[] = [
  v6([0xfc], 7, "unique local (fc00::/7)"),
  v6([0xfe, 0x80], 10, "link-local (fe80::/10)"),
  v6([0xfe, 0xc0], 10, "site-local (fec0::/10)"),
  v6([0xff], 8, "multicast (ff00::/8)"),
];

function inRange(addr: number[], r: Range): boolean {
  let bits = r.bits;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((addr[i]! & mask) !== ((r.bytes[i] ?? 0) & mask)) return false;
  }
  return true;
}

function parseV4(s: string): number[] | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const out = parts.map((p) => (/^\d{1,3}$/.test(p) ? Number(p) : NaN));
  return out.every((n) => n >= 0 && n <= 255) ? out : null;
}

/** 16 bytes of an IPv6 address (`::` compression and a trailing dotted quad allowed). */
export function parseV6(input: string): number[] | null {
  let s = input.toLowerCase();
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  let tail: number[] = [];
  const lastColon = s.lastIndexOf(":");
  if (s.slice(lastColon + 1).includes(".")) {
    const q = parseV4(s.slice(lastColon + 1));
    if (!q) return null;
    tail = q;
    s = `${s.slice(0, lastColon + 1)}0:0`;
  }
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const groups = (h: string) => (h === "" ? [] : h.split(":"));
  const head = groups(halves[0]!);
  const rest = halves.length === 2 ? groups(halves[1]!) : [];
  const missing = 8 - head.length - rest.length;
  if ((halves.length === 1 && missing !== 0) || missing < 0) return null;
  const all = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...rest];
  const bytes: number[] = [];
  for (const g of all) {
    if (!/^[0-9a-f]{1,4}$/.test(g)) return null;
    const n = parseInt(g, 16);
    bytes.push(n >> 8, n & 0xff);
  }
  if (tail.length) bytes.splice(12, 4, ...tail);
  return bytes.length === 16 ? bytes : null;
}

function v4Reason(b: number[]): string | null {
  if (b.every((x) => x === 255)) return "broadcast (255.255.255.255)";
  return V4_RANGES.find((r) => inRange(b, r))?.label ?? null;
}

/** Why an address may not be a webhook target, or null when it may. */
export function forbiddenAddressReason(address: string): string | null {
  const kind = isIP(address.replace(/^\[|\]$/g, ""));
  const a = address.replace(/^\[|\]$/g, "");
  if (kind === 4) return v4Reason(parseV4(a)!);
  if (kind !== 6) return "not an IP address";
  const b = parseV6(a);
  if (!b) return "not an IP address";
  const zeros = (from: number, to: number) => b.slice(from, to).every((x) => x === 0);
  if (zeros(0, 16)) return "unspecified (::)";
  if (zeros(0, 15) && b[15] === 1) return "loopback (::1)";
  // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d), NAT64 (64:ff9b::/96), 6to4 (2002::/16).
  const mapped = zeros(0, 10) && b[10] === 0xff && b[11] === 0xff;
  const compatible = zeros(0, 12);
  const nat64 = b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zeros(4, 12);
  if (mapped || compatible || nat64) {
    const r = v4Reason(b.slice(12, 16));
    return r === null ? null : `${r} embedded in IPv6`;
  }
  if (b[0] === 0x20 && b[1] === 0x02) {
    const r = v4Reason(b.slice(2, 6));
    if (r !== null) return `${r} embedded in 6to4`;
  }
  return V6_RANGES.find((r) => inRange(b, r))?.label ?? null;
}

export class WebhookTargetPolicy {
  constructor(private readonly opts: { allowPrivate: boolean; resolve: HostResolver }) {}

  get allowsPrivateTargets(): boolean {
    return this.opts.allowPrivate;
  }

  /** A syntactically acceptable target: http(s), a host, no credentials or fragment. */
  parseUrl(raw: string, field: string): URL {
    const s = raw.trim();
    if (s.length === 0 || s.length > MAX_WEBHOOK_URL_LENGTH) throw badInput(field, `must be 1 to ${MAX_WEBHOOK_URL_LENGTH} characters`);
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      throw badInput(field, "is not a valid URL");
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") throw badInput(field, "must be an http or https URL");
    if (url.username !== "" || url.password !== "") throw badInput(field, "must not contain credentials; authenticate receivers by the signature");
    if (url.hash !== "") throw badInput(field, "must not contain a #fragment");
    if (url.hostname === "") throw badInput(field, "must name a host");
    return url;
  }

  /**
   * Every address the URL's host stands for, or why it may not be used. One forbidden address
   * refuses the whole host: a name that resolves to a public and a private address would
   * otherwise reach the private one whenever the resolver happened to list it first.
   */
  async resolve(url: URL): Promise<TargetResolution> {
    const host = url.hostname.replace(/^\[|\]$/g, "");
    let addresses: ResolvedAddress[];
    if (isIP(host)) {
      addresses = [{ address: host, family: isIP(host) === 6 ? 6 : 4 }];
    } else {
      try {
        addresses = await this.opts.resolve(host);
      } catch (err) {
        return { ok: false, reason: `host ${host} does not resolve (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
      }
      if (addresses.length === 0) return { ok: false, reason: `host ${host} does not resolve` };
    }
    if (!this.opts.allowPrivate) {
      for (const a of addresses) {
        const why = forbiddenAddressReason(a.address);
        if (why !== null) {
          return {
            ok: false,
            reason: `${host === a.address ? host : `${host} resolves to ${a.address}, which`} is ${why}; private targets are refused unless WEBHOOK_ALLOW_PRIVATE_TARGETS=true`,
          };
        }
      }
    }
    return { ok: true, addresses };
  }
}
