/**
 * A lean HTTP/1.1 client over node:net and node:tls for the fan-out's many small calls: keep-alive
 * sockets per origin (at most `connections`, reused most recent first), one request at a time per
 * socket (no pipelining, so a slow answer never holds up another), requests beyond the sockets
 * queued first come, first served.
 *
 * Why not undici: at 256 calls in flight a fan-out child spent about half of its CPU in undici's
 * request objects, its WASM parser's per-header callbacks and its dispatch queue
 * (bench/fanout-stage.ts --profile). Here a request is one string written once (its head after
 * the request-target is built once per origin, method and header object), a response is parsed
 * from its head in one pass, and headers become an object only when asked for. Plain http sockets
 * read into one buffer the pool shares (net's `onread`), so a read makes no stream chunk and no
 * 'data' event; what outlives the read (a part of a head or of a body) is copied.
 *
 * Responses: a body by Content-Length, chunked transfer coding or (without either) up to the
 * close of the connection; none for HEAD, 1xx, 204 and 304 (an interim 1xx is skipped). A socket
 * goes back to the pool only after a complete keep-alive response; it is closed after
 * `Connection: close`, HTTP/1.0 without keep-alive, a body read to the close, surplus bytes, a
 * timeout or an abort. An idle socket is closed after `keepAliveTimeoutMs`, or one second before
 * the server's `Keep-Alive: timeout=` hint when that is shorter; idle sockets never keep the
 * process alive.
 *
 * Failures are reported as they are (an Error with a `code`: the socket's own, or H1_CLOSED when
 * the server closed the connection before a complete answer, H1_PARSE when the answer is not
 * HTTP/1.x, H1_TOO_LARGE past `maxResponseBytes`); the HTTP client (client.ts) classifies them.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export interface H1PoolOptions {
  /** Sockets per origin (>= 1). */
  connections: number;
  /** Idle time after which a kept-alive socket is closed, ms. */
  keepAliveTimeoutMs: number;
  /** Largest response body read; a larger one fails the request (code H1_TOO_LARGE). */
  maxResponseBytes: number;
  /** Certificates trusted for https origins besides the system's (tests). @default - the system's */
  ca?: string | Buffer | (string | Buffer)[];
}

export interface H1Request {
  method: string;
  /** The URL; with `target`, only its origin is used (one URL object may serve many requests). */
  url: URL;
  /** The request-target, path and query ("/a/b?c=1"). @default - the URL's path and query */
  target?: string;
  headers: Record<string, string> | undefined;
  body: string | Uint8Array | undefined;
}

/** A complete response: the head (status line and header lines, latin1) is kept raw until headers are read. */
export interface H1Response {
  status: number;
  head: string;
  body: string;
}

/** Called once, with an error or with the response, and the context given with the request. */
export type H1Callback<C = undefined> = (err: Error | undefined, res: H1Response | undefined, context: C) => void;

/** A request in progress: `cancel` stops it (a queued one leaves the queue, an active one closes its socket). */
export interface H1Exchange {
  cancel(reason: Error): void;
}

/** Header names that the pool writes itself and a caller's headers cannot set. */
const OWN_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'host']);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\r\n\0]/;

const NO_HEADERS = { block: '', host: undefined };

/** The header lines of a caller's header object, each ending in CRLF; built once per object. */
const headerBlocks = new WeakMap<Record<string, string>, { block: string; host: string | undefined }>();
function headerBlockOf(headers: Record<string, string> | undefined): { block: string; host: string | undefined } {
  if (headers === undefined) return NO_HEADERS;
  let cached = headerBlocks.get(headers);
  if (cached === undefined) {
    let block = '';
    let host: string | undefined;
    for (const name of Object.keys(headers)) {
      const value = String(headers[name]);
      if (!TOKEN.test(name)) throw new H1Error(`invalid header name "${name}"`, 'H1_INVALID');
      if (BAD_VALUE.test(value)) throw new H1Error(`header ${name} holds a line break or NUL character`, 'H1_INVALID');
      const lower = name.toLowerCase();
      if (lower === 'host') host = value;
      else if (!OWN_HEADERS.has(lower)) block += `${name}: ${value}\r\n`;
    }
    cached = { block, host };
    headerBlocks.set(headers, cached);
  }
  return cached;
}

const FRAMING_HEADERS = ['content-length', 'transfer-encoding', 'connection', 'keep-alive'] as const;
type FramingHeader = (typeof FRAMING_HEADERS)[number];

/** Which framing header the name `head[start, colon)` is (any case, white space before the colon allowed), if any. */
function framingHeaderAt(head: string, start: number, colon: number): FramingHeader | undefined {
  for (const name of FRAMING_HEADERS) if (isHeaderName(head, start, colon, name)) return name;
  return undefined;
}

/** Whether `head[start, colon)` is the header name `lower` (lower case), in any case, with white space around it. */
function isHeaderName(head: string, start: number, colon: number, lower: string): boolean {
  let from = start;
  let end = colon;
  while (from < end && (head.charCodeAt(from) === 32 || head.charCodeAt(from) === 9)) from++;
  while (end > from && (head.charCodeAt(end - 1) === 32 || head.charCodeAt(end - 1) === 9)) end--;
  if (end - from !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    const ch = head.charCodeAt(from + i);
    if ((ch >= 65 && ch <= 90 ? ch | 0x20 : ch) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * One header of a response head (`lower`: its name in lower case), repeated ones joined with
 * ", ", read in place; undefined when the answer has none.
 */
export function headerValue(head: string, lower: string): string | undefined {
  let found: string | undefined;
  for (let at = head.indexOf('\r\n'); at >= 0; ) {
    const start = at + 2;
    const next = head.indexOf('\r\n', start);
    const end = next < 0 ? head.length : next;
    at = next;
    const colon = head.indexOf(':', start);
    if (colon <= start || colon >= end || !isHeaderName(head, start, colon, lower)) continue;
    const value = head.slice(colon + 1, end).trim();
    found = found === undefined ? value : `${found}, ${value}`;
  }
  return found;
}

/** The last Keep-Alive value read and what it means (a server sends the same one with every answer). */
let lastKeepAlive = '';
let lastKeepAliveMs: number | undefined;

/** How long a server keeps an idle connection by its `Keep-Alive: timeout=N` hint, less a second; undefined without one. */
function keepAliveHintMs(value: string): number | undefined {
  if (value !== lastKeepAlive) {
    const m = /timeout=\s*(\d+)/i.exec(value);
    lastKeepAlive = value;
    lastKeepAliveMs = m ? Math.max(0, Number(m[1]) * 1000 - 1000) : undefined;
  }
  return lastKeepAliveMs;
}

/** An error of the pool, with a code the HTTP client maps to a cause. */
export class H1Error extends Error {
  override readonly name = 'H1Error';
  constructor(
    message: string,
    readonly code: 'H1_CLOSED' | 'H1_PARSE' | 'H1_TOO_LARGE' | 'H1_INVALID' | 'H1_POOL_CLOSED',
  ) {
    super(message);
  }
}

/** A method as sent (upper case), checked once per spelling. */
const methods = new Map<string, string>();
function methodOf(method: string): string {
  let upper = methods.get(method);
  if (upper === undefined) {
    upper = method.toUpperCase();
    if (!TOKEN.test(upper)) throw new H1Error(`invalid method "${method}"`, 'H1_INVALID');
    if (methods.size < 64) methods.set(method, upper);
  }
  return upper;
}

/** Bytes read from plain http sockets, shared by the pool's sockets (see Connection.onData). */
const READ_BUFFER_BYTES = 64 * 1024;

export class H1Pool {
  private readonly origins = new Map<string, Origin>();
  /** Origins by the URL objects that named them with a `target` (callers reuse one URL per origin). */
  private readonly originsByUrl = new WeakMap<URL, Origin>();
  private readonly readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  private closed = false;

  constructor(readonly opts: H1PoolOptions) {}

  /**
   * Starts a request; `done` is called exactly once (not before this returns), with `context`
   * (so a caller making many requests needs no closure per request).
   */
  request<C = undefined>(req: H1Request, done: H1Callback<C>, context?: C): H1Exchange {
    const exchange = new Exchange(req, done as H1Callback<unknown>, context);
    if (this.closed) {
      exchange.failLater(new H1Error('the HTTP client is closed', 'H1_POOL_CLOSED'));
      return exchange;
    }
    const origin = this.originOf(req);
    try {
      exchange.prepare(origin);
    } catch (err) {
      exchange.failLater(err as Error);
      return exchange;
    }
    origin.start(exchange);
    return exchange;
  }

  private originOf(req: H1Request): Origin {
    const { url } = req;
    let origin = req.target === undefined ? undefined : this.originsByUrl.get(url);
    if (origin !== undefined) return origin;
    const key = url.origin;
    origin = this.origins.get(key);
    if (origin === undefined) {
      origin = new Origin(url, this.opts, this.readBuffer);
      this.origins.set(key, origin);
    }
    if (req.target !== undefined) this.originsByUrl.set(url, origin);
    return origin;
  }

  /** Lets the requests in flight finish, then closes every socket. New requests fail. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.origins.values()].map((o) => o.close()));
  }
}

class Exchange implements H1Exchange {
  head = '';
  payload: Buffer | undefined;
  /** A HEAD request: its answer has no body. */
  headOnly = false;
  conn: Connection | undefined;
  origin: Origin | undefined;
  private finished = false;

  constructor(
    readonly req: H1Request,
    private readonly done: H1Callback<unknown>,
    private readonly context: unknown,
  ) {}

  /** Builds the request's bytes; throws H1Error on a method or header that cannot be sent. */
  prepare(origin: Origin): void {
    const { url, method, body, target, headers } = this.req;
    const upper = methodOf(method);
    this.headOnly = upper === 'HEAD';
    const path = target ?? `${url.pathname}${url.search}`;
    if (body === undefined) {
      this.head = `${upper} ${path}${origin.headTail(upper, headers)}`;
    } else {
      const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
      const { block, host } = headerBlockOf(headers);
      this.head = `${upper} ${path} HTTP/1.1\r\nhost: ${host ?? origin.url.host}\r\n${block}content-length: ${bytes.byteLength}\r\n\r\n`;
      this.payload = Buffer.concat([Buffer.from(this.head, 'latin1'), bytes]);
    }
  }

  get settled(): boolean {
    return this.finished;
  }

  finish(err: Error | undefined, res: H1Response | undefined): void {
    if (this.finished) return;
    this.finished = true;
    this.done(err, res, this.context);
  }

  failLater(err: Error): void {
    process.nextTick(() => this.finish(err, undefined));
  }

  cancel(reason: Error): void {
    if (this.finished) return;
    if (this.conn) this.conn.abort(reason);
    else {
      this.origin?.dequeue(this);
      this.finish(reason, undefined);
    }
  }
}

class Origin {
  private readonly idle: Connection[] = [];
  private readonly queue: Exchange[] = [];
  private open = 0;
  private sweeper: ReturnType<typeof setInterval> | undefined;
  private closing: (() => void) | undefined;
  private active = 0;
  /** The last head tail built (one header object and method per task, as a rule). */
  private tailHeaders: Record<string, string> | undefined;
  private tailMethod = '';
  private tail = '';

  constructor(
    readonly url: URL,
    readonly opts: H1PoolOptions,
    /** Where plain http sockets read (shared: see Connection.onData). */
    readonly readBuffer: Buffer,
  ) {}

  /**
   * What follows the request-target in a request without a body: " HTTP/1.1", the host, the
   * caller's headers and the blank line. Throws H1Error on a header that cannot be sent.
   */
  headTail(method: string, headers: Record<string, string> | undefined): string {
    if (headers === this.tailHeaders && method === this.tailMethod && this.tail !== '') return this.tail;
    const { block, host } = headerBlockOf(headers);
    const length = method === 'POST' || method === 'PUT' || method === 'PATCH' ? 'content-length: 0\r\n' : '';
    this.tail = ` HTTP/1.1\r\nhost: ${host ?? this.url.host}\r\n${block}${length}\r\n`;
    this.tailHeaders = headers;
    this.tailMethod = method;
    return this.tail;
  }

  start(exchange: Exchange): void {
    exchange.origin = this;
    const now = Date.now();
    while (this.idle.length > 0) {
      const conn = this.idle.pop()!;
      if (conn.reusableAt(now)) {
        this.run(conn, exchange);
        return;
      }
      this.open--;
      conn.destroy();
    }
    if (this.open < this.opts.connections) {
      this.open++;
      this.run(new Connection(this), exchange);
      return;
    }
    this.queue.push(exchange);
  }

  dequeue(exchange: Exchange): void {
    const at = this.queue.indexOf(exchange);
    if (at >= 0) this.queue.splice(at, 1);
  }

  private run(conn: Connection, exchange: Exchange): void {
    this.active++;
    conn.send(exchange);
  }

  /** A connection finished its exchange; `reusable` when it may serve another. */
  released(conn: Connection, reusable: boolean): void {
    this.active--;
    if (!reusable) {
      conn.destroy();
      this.open--;
      const next = this.queue.shift();
      if (next) {
        this.open++;
        this.run(new Connection(this), next);
      } else this.maybeClosed();
      return;
    }
    const next = this.queue.shift();
    if (next) {
      this.run(conn, next);
      return;
    }
    conn.idleSince = Date.now();
    conn.unref();
    this.idle.push(conn);
    if (this.closing) {
      this.maybeClosed();
      return;
    }
    this.sweeper ??= setInterval(() => this.sweep(), 1_000).unref();
  }

  /** A socket closed while idle. */
  lost(conn: Connection): void {
    const at = this.idle.indexOf(conn);
    if (at >= 0) {
      this.idle.splice(at, 1);
      this.open--;
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const conn = this.idle[i]!;
      if (!conn.reusableAt(now)) {
        this.idle.splice(i, 1);
        this.open--;
        conn.destroy();
      }
    }
    if (this.idle.length === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  close(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.closing = resolve;
      this.maybeClosed();
    });
  }

  private maybeClosed(): void {
    if (!this.closing || this.active > 0 || this.queue.length > 0) return;
    for (const conn of this.idle) conn.destroy();
    this.open -= this.idle.length;
    this.idle.length = 0;
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.sweeper = undefined;
    this.closing();
  }
}

/** Where a connection is in reading an answer. */
const Phase = { Idle: 0, Head: 1, Length: 2, Chunked: 3, UntilClose: 4 } as const;
type Phase = (typeof Phase)[keyof typeof Phase];

/** One socket and the parser of the response it is reading. */
class Connection {
  readonly socket: Socket;
  idleSince = 0;
  private exchange: Exchange | undefined;
  private phase: Phase = Phase.Idle;
  /** Bytes of the head (or of a chunk-size line) not yet complete. */
  private pending: Buffer | undefined;
  private status = 0;
  private head = '';
  private keepAlive = true;
  private keepAliveMs: number;
  private remaining = 0;
  /** Body pieces of the answer being read (one array per connection, emptied after each answer). */
  private readonly chunks: Buffer[] = [];
  private size = 0;
  /** Chunked coding: 0 size line, 1 data, 2 the CRLF after data, 3 trailers. */
  private chunkState = 0;
  private error: Error | undefined;
  private dead = false;
  /** Whether the socket holds the process open (only while an exchange is on it). */
  private reffed = true;

  constructor(private readonly origin: Origin) {
    const { url, opts } = origin;
    const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    if (url.protocol === 'https:') {
      this.socket = tlsConnect({
        host,
        port,
        servername: /^[\d.]+$|:/.test(host) ? undefined : host,
        ALPNProtocols: ['http/1.1'],
        ca: opts.ca,
      });
      this.socket.on('data', (data: Buffer) => this.onData(data, false));
    } else {
      // Reads land in the pool's shared buffer: no stream chunk, no 'data' event per read.
      const buffer = origin.readBuffer;
      this.socket = netConnect({
        host,
        port,
        onread: {
          buffer,
          callback: (bytes: number) => {
            this.onData(buffer.subarray(0, bytes), true);
            return true;
          },
        },
      });
    }
    this.socket.setNoDelay(true);
    this.keepAliveMs = opts.keepAliveTimeoutMs;
    this.socket.on('error', (err: Error) => {
      this.error ??= err;
    });
    this.socket.on('close', () => this.onClose());
  }

  reusableAt(now: number): boolean {
    return !this.dead && now - this.idleSince < this.keepAliveMs;
  }

  send(exchange: Exchange): void {
    this.exchange = exchange;
    exchange.conn = this;
    this.phase = Phase.Head;
    this.status = 0;
    this.chunks.length = 0;
    this.size = 0;
    if (!this.reffed) {
      this.reffed = true;
      this.socket.ref();
    }
    if (exchange.payload) this.socket.write(exchange.payload);
    else this.socket.write(exchange.head, 'latin1');
  }

  /** Idle in the pool: the socket no longer keeps the process alive. */
  unref(): void {
    if (this.reffed) {
      this.reffed = false;
      this.socket.unref();
    }
  }

  /** Cuts the exchange in progress (timeout, caller's abort). */
  abort(reason: Error): void {
    const exchange = this.exchange;
    if (!exchange) return;
    this.exchange = undefined;
    this.dead = true;
    this.origin.released(this, false);
    exchange.finish(reason, undefined);
  }

  destroy(): void {
    this.dead = true;
    this.socket.destroy();
  }

  private onClose(): void {
    const wasDead = this.dead;
    this.dead = true;
    const exchange = this.exchange;
    if (exchange) {
      if (this.phase === Phase.UntilClose) {
        this.complete();
        return;
      }
      this.exchange = undefined;
      this.origin.released(this, false);
      const err = this.error ?? new H1Error('the server closed the connection before a complete answer', 'H1_CLOSED');
      exchange.finish(err, undefined);
    } else if (!wasDead) this.origin.lost(this);
  }

  private fail(err: H1Error): void {
    const exchange = this.exchange;
    this.exchange = undefined;
    this.dead = true;
    this.origin.released(this, false);
    exchange?.finish(err, undefined);
  }

  /**
   * Bytes read. `shared`: `data` is a view of the pool's read buffer, which the next read
   * overwrites, so what must outlive this call (an incomplete head or chunk line, body pieces of
   * an answer not yet complete) is copied before it returns.
   */
  private onData(data: Buffer, shared: boolean): void {
    if (this.exchange === undefined) {
      // Bytes nobody asked for: the socket cannot be trusted for another request.
      this.destroy();
      return;
    }
    const keptBefore = this.chunks.length;
    this.parse(data);
    if (!shared) return;
    if (this.pending !== undefined && this.pending.buffer === data.buffer) this.pending = Buffer.from(this.pending);
    const chunks = this.chunks;
    if (this.exchange !== undefined) for (let i = keptBefore; i < chunks.length; i++) chunks[i] = Buffer.from(chunks[i]!);
  }

  private parse(data: Buffer): void {
    let buf = data;
    while (buf.length > 0 && this.exchange !== undefined) {
      switch (this.phase) {
        case Phase.Head: {
          const rest = this.readHead(buf);
          if (rest === undefined) return;
          buf = rest;
          break;
        }
        case Phase.Length: {
          const take = Math.min(this.remaining, buf.length);
          const all = take === buf.length;
          if (!this.addBody(all ? buf : buf.subarray(0, take))) return;
          this.remaining -= take;
          if (this.remaining === 0) {
            if (!all) this.keepAlive = false;
            this.complete();
          }
          // Every byte was used, or the answer is complete.
          return;
        }
        case Phase.Chunked: {
          const rest = this.readChunked(buf);
          if (rest === undefined) return;
          buf = rest;
          break;
        }
        case Phase.UntilClose:
          if (!this.addBody(buf)) return;
          return;
        case Phase.Idle:
          this.destroy();
          return;
      }
    }
  }

  private addBody(chunk: Buffer): boolean {
    this.size += chunk.length;
    if (this.size > this.origin.opts.maxResponseBytes) {
      this.fail(new H1Error(`response body larger than ${this.origin.opts.maxResponseBytes} bytes`, 'H1_TOO_LARGE'));
      return false;
    }
    this.chunks.push(chunk);
    return true;
  }

  /** Reads the response head from `data`; returns the bytes after it, or undefined when it needs more (or failed). */
  private readHead(data: Buffer): Buffer | undefined {
    let buf = data;
    if (this.pending !== undefined) {
      buf = Buffer.concat([this.pending, data]);
      this.pending = undefined;
    }
    const end = buf.indexOf('\r\n\r\n', 0, 'latin1');
    if (end < 0) {
      if (buf.length > 64 * 1024) {
        this.fail(new H1Error('the response head is longer than 64 KiB', 'H1_PARSE'));
        return undefined;
      }
      this.pending = buf;
      return undefined;
    }
    const head = buf.toString('latin1', 0, end);
    const rest = buf.subarray(end + 4);
    // "HTTP/1.1 200 OK"
    if (head.charCodeAt(0) !== 72 || !head.startsWith('HTTP/1.') || head.charCodeAt(8) !== 32) {
      this.fail(new H1Error(`the answer is not HTTP/1.x: ${JSON.stringify(head.slice(0, 40))}`, 'H1_PARSE'));
      return undefined;
    }
    const status = Number(head.slice(9, 12));
    if (!(status >= 100 && status <= 999)) {
      this.fail(new H1Error(`bad status line ${JSON.stringify(head.slice(0, 40))}`, 'H1_PARSE'));
      return undefined;
    }
    if (status >= 100 && status < 200) return rest; // interim answer: the real one follows
    const http10 = head.charCodeAt(7) === 48;
    let length = -1;
    let chunked = false;
    let keepAlive = !http10;
    // Only the headers that frame the answer are read here, found by their names in place (no
    // string per header line); the rest waits for `headers`.
    for (let at = head.indexOf('\r\n'); at >= 0; ) {
      const start = at + 2;
      const next = head.indexOf('\r\n', start);
      const end = next < 0 ? head.length : next;
      at = next;
      const c = head.charCodeAt(start) | 0x20;
      if (c !== 99 && c !== 116 && c !== 107) continue; // c(ontent-length, connection), t(ransfer-encoding), k(eep-alive)
      const colon = head.indexOf(':', start);
      if (colon < 0 || colon >= end) continue;
      const header = framingHeaderAt(head, start, colon);
      if (header === undefined) continue;
      const value = head.slice(colon + 1, end).trim();
      if (header === 'content-length') {
        const n = Number(value);
        if (!/^\d+$/.test(value) || (length >= 0 && length !== n)) {
          this.fail(new H1Error(`bad Content-Length "${value}"`, 'H1_PARSE'));
          return undefined;
        }
        length = n;
      } else if (header === 'transfer-encoding') {
        if (/(^|,)\s*chunked\s*$/i.test(value)) chunked = true;
      } else if (header === 'connection') {
        const v = value.toLowerCase();
        if (v.includes('close')) keepAlive = false;
        else if (v.includes('keep-alive')) keepAlive = true;
      } else {
        const ms = keepAliveHintMs(value);
        if (ms !== undefined) this.keepAliveMs = Math.min(this.origin.opts.keepAliveTimeoutMs, ms);
      }
    }
    this.status = status;
    this.head = head;
    this.keepAlive = keepAlive;
    if (this.exchange!.headOnly || status === 204 || status === 304) {
      if (rest.length > 0) this.keepAlive = false;
      this.complete();
      return undefined;
    }
    if (chunked) {
      this.phase = Phase.Chunked;
      this.chunkState = 0;
      this.remaining = 0;
    } else if (length >= 0) {
      if (length > this.origin.opts.maxResponseBytes) {
        this.fail(new H1Error(`response body larger than ${this.origin.opts.maxResponseBytes} bytes`, 'H1_TOO_LARGE'));
        return undefined;
      }
      if (length === 0) {
        if (rest.length > 0) this.keepAlive = false;
        this.complete();
        return undefined;
      }
      this.phase = Phase.Length;
      this.remaining = length;
    } else {
      this.phase = Phase.UntilClose;
      this.keepAlive = false;
    }
    return rest;
  }

  /** Chunked transfer coding; returns the bytes after what it used, or undefined when done, waiting or failed. */
  private readChunked(data: Buffer): Buffer | undefined {
    let buf = data;
    if (this.pending !== undefined) {
      buf = Buffer.concat([this.pending, data]);
      this.pending = undefined;
    }
    while (buf.length > 0) {
      if (this.chunkState === 1) {
        const take = Math.min(this.remaining, buf.length);
        if (!this.addBody(buf.subarray(0, take))) return undefined;
        this.remaining -= take;
        buf = buf.subarray(take);
        if (this.remaining === 0) this.chunkState = 2;
        continue;
      }
      const eol = buf.indexOf('\r\n', 0, 'latin1');
      if (eol < 0) {
        if (buf.length > 16 * 1024) {
          this.fail(new H1Error('a chunk line longer than 16 KiB', 'H1_PARSE'));
          return undefined;
        }
        this.pending = buf;
        return undefined;
      }
      const line = buf.toString('latin1', 0, eol);
      buf = buf.subarray(eol + 2);
      if (this.chunkState === 2) {
        if (line !== '') {
          this.fail(new H1Error('chunk data not followed by CRLF', 'H1_PARSE'));
          return undefined;
        }
        this.chunkState = 0;
      } else if (this.chunkState === 0) {
        const sizeText = line.split(';', 1)[0]!.trim();
        if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) {
          this.fail(new H1Error(`bad chunk size "${sizeText.slice(0, 20)}"`, 'H1_PARSE'));
          return undefined;
        }
        const size = Number.parseInt(sizeText, 16);
        if (size === 0) this.chunkState = 3;
        else {
          this.remaining = size;
          this.chunkState = 1;
        }
      } else if (line === '') {
        // The empty line after the (ignored) trailers ends the answer.
        if (buf.length > 0) this.keepAlive = false;
        this.complete();
        return undefined;
      }
    }
    return buf;
  }

  private complete(): void {
    const exchange = this.exchange!;
    this.exchange = undefined;
    exchange.conn = undefined;
    this.phase = Phase.Idle;
    const chunks = this.chunks;
    const body =
      chunks.length === 0 ? '' : chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks, this.size).toString('utf8');
    chunks.length = 0;
    const res: H1Response = { status: this.status, head: this.head, body };
    this.origin.released(this, this.keepAlive && !this.dead);
    exchange.finish(undefined, res);
  }
}
