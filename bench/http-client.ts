import net from "node:net";

/**
 * The load generator's HTTP/1.1 client: persistent connections over node:net, one request in
 * flight per connection, each request written as one prepared string or Buffer. node:http's
 * client (request objects, header validation, an Agent, a full response parser) took four times
 * the CPU per pair (closed loop against the null server: 0.21–0.23 ms against 0.05 ms), on the
 * cores the server under test also runs on.
 *
 * It reads only what the benchmark's servers send: a status line and a content-length body.
 * Anything else (chunked bodies, no length) is an UnsupportedResponse, which the caller treats
 * as fatal: the client would need extending, the server is not at fault.
 */
export interface HttpResponse {
  status: number;
  text: string;
}

export class UnsupportedResponse extends Error {
  override name = "UnsupportedResponse";
}

interface Pending {
  data: string | Buffer;
  onSent: (() => void) | undefined;
  resolve: (r: HttpResponse) => void;
  reject: (e: Error) => void;
}

const HEAD_END = Buffer.from("\r\n\r\n");
// A head this long without its end is not one of the benchmark's answers.
const MAX_HEAD = 64 * 1024;

class Connection {
  readonly socket: net.Socket;
  pending: Pending | null = null;
  connected = false;
  private error: Error | null = null;
  /** The start of a head that has not fully arrived. */
  private rest: Buffer | null = null;
  /** Body bytes still to come; -1 while reading a head. */
  private left = -1;
  private status = 0;
  private closeAfter = false;
  private chunks: Buffer[] | null = null;

  constructor(
    private readonly pool: HttpClient,
    host: string,
    port: number,
  ) {
    this.socket = net.connect({ host, port });
    this.socket.setNoDelay(true);
    this.socket.on("connect", () => {
      this.connected = true;
      const p = this.pending;
      // Written only now, so that a send lag includes the connection's setup.
      if (p) this.write(p);
    });
    this.socket.on("data", (chunk: Buffer) => this.onData(chunk));
    this.socket.on("error", (e) => (this.error ??= e));
    this.socket.on("close", () => {
      const p = this.pending;
      this.pending = null;
      this.pool.dropped(this);
      p?.reject(this.error ?? new Error("connection closed before the response"));
    });
  }

  send(p: Pending): void {
    this.pending = p;
    if (this.connected) this.write(p);
  }

  private write(p: Pending): void {
    // Before the write: on a loopback socket the write wakes the server, which may take this
    // core inside the call, and that time is the server's, not the generator's.
    p.onSent?.();
    this.socket.write(p.data);
  }

  private fatal(e: Error): void {
    this.error = e;
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    let buf = chunk;
    if (this.rest) {
      buf = Buffer.concat([this.rest, chunk]);
      this.rest = null;
    }
    let off = 0;
    while (off < buf.length) {
      if (this.left < 0) {
        const end = buf.indexOf(HEAD_END, off);
        if (end < 0) {
          if (buf.length - off > MAX_HEAD) return this.fatal(new UnsupportedResponse(`response head longer than ${MAX_HEAD} bytes`));
          this.rest = buf.subarray(off);
          return;
        }
        if (!this.pending) return this.fatal(new Error(`response without a request: ${buf.toString("latin1", off, Math.min(end, off + 200))}`));
        const head = buf.toString("latin1", off, end);
        off = end + 4;
        if (!this.readHead(head)) return;
        if (this.left === 0) {
          this.finish("");
          continue;
        }
      }
      const n = Math.min(this.left, buf.length - off);
      if (n === this.left && !this.chunks) {
        const text = buf.toString("utf8", off, off + n);
        off += n;
        this.finish(text);
        continue;
      }
      (this.chunks ??= []).push(buf.subarray(off, off + n));
      off += n;
      this.left -= n;
      if (this.left === 0) {
        const text = Buffer.concat(this.chunks).toString("utf8");
        this.chunks = null;
        this.finish(text);
      }
    }
  }

  /** Sets status, left and closeAfter from a head; false (and the connection closing) if it cannot be read. */
  private readHead(head: string): boolean {
    const status = Number(head.slice(9, 12));
    if (!head.startsWith("HTTP/1.") || !Number.isInteger(status)) {
      this.fatal(new UnsupportedResponse(`not an HTTP/1.x status line: ${head.slice(0, 100)}`));
      return false;
    }
    const h = head.toLowerCase();
    if (h.includes("\r\ntransfer-encoding:")) {
      this.fatal(new UnsupportedResponse(`HTTP ${status} answer with transfer-encoding; the client reads content-length bodies only`));
      return false;
    }
    const i = h.indexOf("\r\ncontent-length:");
    let length = status === 204 || status === 304 ? 0 : NaN;
    if (i >= 0) {
      const j = h.indexOf("\r\n", i + 17);
      length = Number(h.slice(i + 17, j < 0 ? undefined : j));
    }
    if (!Number.isInteger(length) || length < 0) {
      this.fatal(new UnsupportedResponse(`HTTP ${status} answer without a valid content-length; the client reads content-length bodies only`));
      return false;
    }
    this.status = status;
    this.left = length;
    this.closeAfter = h.includes("\r\nconnection: close");
    return true;
  }

  private finish(text: string): void {
    const p = this.pending!;
    this.pending = null;
    this.left = -1;
    if (this.closeAfter) this.socket.destroy();
    else this.pool.released(this);
    p.resolve({ status: this.status, text });
  }
}

export class HttpClient {
  /** Most recently used last: it is taken first, so connections beyond the load's need go quiet. */
  private readonly idle: Connection[] = [];
  private readonly waiting: Pending[] = [];
  private open = 0;
  private closed = false;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly maxSockets: number,
    private readonly headers: Record<string, string>,
  ) {}

  /** A POST's request line and fixed headers, ending where the content-length value goes. */
  head(path: string): string {
    let s = `POST ${path} HTTP/1.1\r\nhost: ${this.host}:${this.port}\r\n`;
    for (const [k, v] of Object.entries(this.headers)) s += `${k}: ${v}\r\n`;
    return s + "content-length: ";
  }

  /** A whole request, for a body that is sent many times. */
  prepare(path: string, body: string): Buffer {
    return Buffer.from(this.head(path) + Buffer.byteLength(body) + "\r\n\r\n" + body);
  }

  /** Sends a whole request (`prepare`, or `head` + length + CRLFCRLF + body); `onSent` runs as it is handed to the socket. */
  request(data: string | Buffer, onSent?: () => void): Promise<HttpResponse> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error("client closed"));
      const p: Pending = { data, onSent, resolve, reject };
      const c = this.idle.pop();
      if (c) c.send(p);
      else if (this.open < this.maxSockets) this.connect(p);
      else this.waiting.push(p);
    });
  }

  close(): void {
    this.closed = true;
    for (const p of this.waiting.splice(0)) p.reject(new Error("client closed"));
    for (const c of this.idle.splice(0)) c.socket.destroy();
  }

  private connect(p: Pending): void {
    this.open++;
    new Connection(this, this.host, this.port).send(p);
  }

  /** @internal */
  released(c: Connection): void {
    if (this.closed) return void c.socket.destroy();
    const p = this.waiting.shift();
    if (p) c.send(p);
    else this.idle.push(c);
  }

  /** @internal */
  dropped(c: Connection): void {
    this.open--;
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
    const p = this.closed ? undefined : this.waiting.shift();
    if (p) this.connect(p);
  }
}
