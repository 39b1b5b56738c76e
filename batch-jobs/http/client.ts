/**
 * The HTTP client of fan-out tasks: one connection pool per client (h1-pool.ts: HTTP/1.1 over
 * node:net and node:tls), `connections` keep-alive sockets per origin, no pipelining (one request
 * at a time per socket, so a slow answer never holds up another), a per-request timeout covering
 * queueing, connecting, headers and body.
 *
 * `request` only turns transport failures into TransientError; `requestJson` also classifies the
 * status the way the retry policy needs it (see its TSDoc). Error messages name the method and the
 * URL with userinfo removed and secret-looking query values masked, never request headers.
 */
import { STATUS_CODES } from 'node:http';
import { H1Error, H1Pool, headerValue, type H1Exchange, type H1Request, type H1Response } from './h1-pool';
import { PermanentError, TransientError, errorMessage, transientKindOf } from '../../runtime/errors';
import { abortReason, onSharedAbort, type AbortTarget } from '../../runtime/retry';

/**
 * A URL as an origin and a request-target: `origin` is a URL object parsed once and shared by
 * many requests (only its scheme, host and port are used), `path` the path and query
 * ("/a/b?c=1"), already encoded as the URL parser would leave it.
 */
export interface UrlTarget {
  origin: URL;
  path: string;
}

export interface HttpRequest {
  method: string;
  /** The URL; a URL object or target the caller has already parsed and checked is used as it is. */
  url: string | URL | UrlTarget;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** Whole request: waiting for a socket, connecting, sending, headers and body. */
  timeoutMs: number;
  /** Caller's cancellation (shutdown); the request rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface HttpResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: string;
}

export interface HttpClientOptions {
  /** Sockets per origin (the task's concurrency). */
  connections: number;
  /** Idle time after which a kept-alive socket is closed (the server's Keep-Alive hint wins when shorter). @default 30000 */
  keepAliveTimeoutMs?: number;
  /** Largest response body read; a larger one fails the request (PermanentError). @default 8 MiB */
  maxResponseBytes?: number;
  /** Certificates trusted for https sources besides the system's (tests). @default - the system's */
  ca?: string | Buffer | (string | Buffer)[];
}

const EXCERPT_CHARS = 200;

/** Transport error codes, and how a person would call them. */
const TRANSPORT_CAUSES: Record<string, string> = {
  ECONNRESET: 'connection reset',
  ECONNREFUSED: 'connection refused',
  ECONNABORTED: 'connection aborted',
  EPIPE: 'connection closed while sending',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENETDOWN: 'network down',
  EAI_AGAIN: 'DNS lookup failed (temporary)',
  ENOTFOUND: 'DNS lookup failed (host not found)',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  UND_ERR_HEADERS_TIMEOUT: 'timed out waiting for the response headers',
  UND_ERR_BODY_TIMEOUT: 'timed out reading the response body',
  UND_ERR_SOCKET: 'connection closed by the server',
  UND_ERR_CLOSED: 'connection closed',
  UND_ERR_DESTROYED: 'connection destroyed',
  UND_ERR_INFO: 'connection error',
  H1_CLOSED: 'connection closed by the server',
  H1_PARSE: 'not an HTTP/1.x answer',
};

export class HttpClient {
  private readonly pool: H1Pool;
  private readonly deadlines = new Deadlines();
  private closing: Promise<void> | undefined;

  constructor(opts: HttpClientOptions) {
    if (!Number.isInteger(opts.connections) || opts.connections < 1) {
      throw new RangeError(`connections must be a whole number >= 1, got ${opts.connections}`);
    }
    this.pool = new H1Pool({
      connections: opts.connections,
      keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? 30_000,
      maxResponseBytes: opts.maxResponseBytes ?? 8 * 1024 * 1024,
      ca: opts.ca,
    });
  }

  /** Transport failures (timeout, reset, refused, DNS) -> TransientError naming the cause. Statuses are not classified. */
  request(req: HttpRequest): Promise<HttpResponse> {
    return this.start(req, false) as Promise<HttpResponse>;
  }

  /**
   * request + classification: 2xx -> parsed JSON (an empty body is null; unparseable ->
   * TransientError); 408/425/429/5xx -> TransientError with retryAfterMs from Retry-After (seconds or
   * HTTP date); 3xx (redirects are not followed), 404 and other 4xx -> PermanentError
   * "HTTP 404 Not Found from <method> <url-without-query-secrets>: <short body excerpt>".
   */
  requestJson(req: HttpRequest): Promise<unknown> {
    return this.start(req, true);
  }

  private start(req: HttpRequest, json: boolean): Promise<unknown> {
    const target = req.url;
    let url: URL;
    let path: string | undefined;
    try {
      if (typeof target === 'string') url = new URL(target);
      else if (target instanceof URL) url = target;
      else {
        url = target.origin;
        path = target.path;
      }
    } catch {
      return Promise.reject(new PermanentError(`invalid URL in ${describeRequest(req)}`));
    }
    const protocol = url.protocol;
    if (protocol !== 'http:' && protocol !== 'https:') {
      return Promise.reject(new PermanentError(`unsupported URL scheme "${protocol}" in ${describeRequest(req)}`));
    }
    if (req.signal?.aborted) return Promise.reject(abortReason(req.signal));
    return new Promise<unknown>((resolve, reject) => new Call(this.pool, this.deadlines, req, url, path, json, resolve, reject));
  }

  /** Closes the sockets once the requests in flight have finished. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= this.pool.close();
    return this.closing;
  }
}

/**
 * The timeouts of a client's calls: one list in deadline order and one timer for the earliest,
 * instead of a Node timer per call. A call goes in at the end (the calls of a task share one
 * timeout, so the list stays in order without a search) and leaves when it settles.
 */
class Deadlines {
  private first: Call | undefined;
  private last: Call | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** When the timer fires (performance.now() ms); Infinity when none is set. */
  private timerAt = Number.POSITIVE_INFINITY;

  add(call: Call): void {
    let after = this.last;
    while (after !== undefined && after.deadline > call.deadline) after = after.prevDue;
    call.prevDue = after;
    call.nextDue = after === undefined ? this.first : after.nextDue;
    if (call.nextDue === undefined) this.last = call;
    else call.nextDue.prevDue = call;
    if (after === undefined) this.first = call;
    else after.nextDue = call;
    if (call.deadline < this.timerAt) this.arm(call.deadline);
  }

  remove(call: Call): void {
    const { prevDue, nextDue } = call;
    if (prevDue === undefined) {
      if (this.first !== call) return; // not in the list
      this.first = nextDue;
    } else prevDue.nextDue = nextDue;
    if (nextDue === undefined) this.last = prevDue;
    else nextDue.prevDue = prevDue;
    call.prevDue = undefined;
    call.nextDue = undefined;
    if (this.first === undefined && this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.timerAt = Number.POSITIVE_INFINITY;
    }
  }

  private arm(at: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(deadlinesDue, Math.max(1, Math.ceil(at - performance.now())), this);
  }

  /** The timer fired: every call past its deadline times out; the timer is set for the next one. */
  due(): void {
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    const now = performance.now();
    while (this.first !== undefined && this.first.deadline <= now) {
      const call = this.first;
      this.remove(call);
      call.timeOut();
    }
    if (this.first !== undefined) this.arm(this.first.deadline);
  }
}

function deadlinesDue(deadlines: Deadlines): void {
  deadlines.due();
}

/**
 * One request in flight: its deadline, its place among the shutdown signal's listeners and its
 * exchange with the pool, in one object (the fan-out makes thousands a second). A JSON call
 * classifies the answer here, so the caller's promise is the only one.
 */
class Call implements AbortTarget, H1Request {
  readonly method: string;
  readonly headers: Record<string, string> | undefined;
  readonly body: string | Uint8Array | undefined;
  /** When the call times out, performance.now() ms. */
  readonly deadline: number;
  /** Neighbours in the client's deadline list. */
  prevDue: Call | undefined;
  nextDue: Call | undefined;
  private readonly exchange: H1Exchange;
  private readonly listening: Set<AbortTarget> | undefined;
  private timedOut = false;
  private settled = false;

  constructor(
    pool: H1Pool,
    private readonly deadlines: Deadlines,
    private readonly req: HttpRequest,
    readonly url: URL,
    readonly target: string | undefined,
    private readonly json: boolean,
    private readonly resolve: (value: unknown) => void,
    private readonly reject: (err: Error) => void,
  ) {
    this.method = req.method;
    this.headers = req.headers;
    this.body = req.body;
    this.deadline = performance.now() + req.timeoutMs;
    deadlines.add(this);
    this.listening = onSharedAbort(req.signal, this);
    // The call is its own request and the context of its callback: no object or closure per request.
    this.exchange = pool.request(this, callSettled, this);
  }

  timeOut(): void {
    this.timedOut = true;
    this.exchange.cancel(new Error('request timeout'));
  }

  /** The caller's signal aborted. */
  abortNow(): void {
    this.exchange.cancel(abortReason(this.req.signal!));
  }

  settle(err: Error | undefined, res: H1Response | undefined): void {
    if (this.settled) return;
    this.settled = true;
    this.deadlines.remove(this);
    this.listening?.delete(this);
    if (res === undefined) this.reject(failureOf(err, this.req, this.timedOut));
    else if (!this.json) this.resolve(new LazyResponse(res));
    else {
      let value: unknown;
      try {
        value = jsonOf(this.req, res);
      } catch (failure) {
        this.reject(failure as Error);
        return;
      }
      this.resolve(value);
    }
  }
}

/** The classification of requestJson (see its TSDoc); throws the failure. */
function jsonOf(req: HttpRequest, res: H1Response): unknown {
  const { status, body } = res;
  if (status >= 200 && status < 300) {
    if (isBlank(body)) return null;
    try {
      return JSON.parse(body) as unknown;
    } catch {
      throw new TransientError(`unparseable JSON in ${describeResponse(req, res)}`);
    }
  }
  if (isTransientStatus(status)) {
    throw new TransientError(describeResponse(req, res), parseRetryAfter(headerValue(res.head, 'retry-after')), transientKindOf(status));
  }
  throw new PermanentError(describeResponse(req, res));
}

/** Whether a body is empty or white space only (without trimming a copy of it). */
function isBlank(body: string): boolean {
  if (body === '') return true;
  const first = body.charCodeAt(0);
  // An object or an array (most answers): no need to look further.
  if (first === 123 || first === 91) return false;
  return body.trim() === '';
}

function callSettled(err: Error | undefined, res: H1Response | undefined, call: Call): void {
  call.settle(err, res);
}

/** What a failed request rejects with: the caller's abort reason, a timeout, or an error naming the cause. */
function failureOf(err: unknown, req: HttpRequest, timedOut: boolean): Error {
  if (req.signal?.aborted) return abortReason(req.signal);
  if (timedOut) return new TransientError(`timed out after ${req.timeoutMs} ms: ${describeRequest(req)}`, undefined, 'timeout');
  if (err instanceof PermanentError || err instanceof TransientError) return err;
  if (err instanceof H1Error && err.code === 'H1_INVALID') {
    return new PermanentError(`invalid request ${describeRequest(req)}: ${errorMessage(err)}`);
  }
  if (err instanceof H1Error && err.code === 'H1_TOO_LARGE') return new PermanentError(`${err.message} from ${describeRequest(req)}`);
  return new TransientError(`${transportCause(err)}: ${describeRequest(req)}`, undefined, isTimeout(err) ? 'timeout' : 'other');
}

export function isTransientStatus(status: number): boolean {
  return status === 408 || status === 425 || status === 429 || (status >= 500 && status <= 599);
}

/**
 * Retry-After as milliseconds from `now`: delta-seconds ("120", "1.5") or an HTTP date
 * ("Wed, 21 Oct 2015 07:28:00 GMT"; a date in the past is 0). Anything else is undefined.
 */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (v === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  if (!/[a-z]/i.test(v)) return undefined; // "-5", "1e3": not a delay and not a date
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

const SECRET_QUERY_NAMES =
  /^(.*[-_.]?)?(token|key|apikey|secret|password|passwd|pwd|signature|sig|auth|authorization|credential|credentials|session)$/i;

/** The URL as error messages show it: no userinfo, no fragment, secret-looking query values masked. */
export function describeUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return '(invalid URL)';
  }
  url.username = '';
  url.password = '';
  url.hash = '';
  if (url.search) url.search = maskQuery(url.search.slice(1));
  return url.toString();
}

/** What every query with a secret-looking name holds (or an encoded name, which might decode to one). */
const MAYBE_SECRET = /%|\+|token|key|secret|passw|pwd|sig|auth|credential|session/i;

/** A query (without "?") with the values of secret-looking names masked. */
function maskQuery(query: string): string {
  if (!MAYBE_SECRET.test(query)) return query;
  return query
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      if (eq < 0) return pair;
      let name = pair.slice(0, eq);
      try {
        name = decodeURIComponent(name.replace(/\+/g, ' '));
      } catch {
        // keep the raw name
      }
      return SECRET_QUERY_NAMES.test(name) ? `${pair.slice(0, eq)}=***` : pair;
    })
    .join('&');
}

/**
 * A UrlTarget as describeUrl shows a URL: its origin (never with userinfo) and its path, query
 * values of secret-looking names masked, without parsing a URL (a flaky source makes thousands
 * of these messages a minute).
 */
function describeTarget(target: UrlTarget): string {
  let path = target.path;
  const hashAt = path.indexOf('#');
  if (hashAt >= 0) path = path.slice(0, hashAt);
  const queryAt = path.indexOf('?');
  if (queryAt >= 0 && queryAt < path.length - 1) path = `${path.slice(0, queryAt + 1)}${maskQuery(path.slice(queryAt + 1))}`;
  return `${target.origin.origin}${path}`;
}

/** "GET <url as describeUrl shows it>"; built only when a message needs it. */
function describeRequest(req: HttpRequest): string {
  const { url } = req;
  const shown = typeof url === 'string' || url instanceof URL ? describeUrl(String(url)) : describeTarget(url);
  return `${req.method.toUpperCase()} ${shown}`;
}

/** "HTTP 404 Not Found from GET <url>: <short body excerpt>". */
function describeResponse(req: HttpRequest, res: { status: number; body: string }): string {
  const reason = STATUS_CODES[res.status];
  const excerpt = bodyExcerpt(res.body);
  return `HTTP ${res.status}${reason ? ` ${reason}` : ''} from ${describeRequest(req)}${excerpt ? `: ${excerpt}` : ''}`;
}

function bodyExcerpt(body: string): string {
  const flat = body.replace(/\s+/g, ' ').trim();
  return flat.length > EXCERPT_CHARS ? `${flat.slice(0, EXCERPT_CHARS)}...` : flat;
}

const TIMEOUT_CODES = new Set(['ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** Whether a transport failure was a timeout (a load signal for adaptive concurrency). */
function isTimeout(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && TIMEOUT_CODES.has(code)) return true;
  }
  return false;
}

function transportCause(err: unknown): string {
  // undici wraps socket errors; the code that names the cause may sit on the error or its cause.
  // The deepest known code is the most precise ("other side closed" caused by ECONNRESET).
  let found: string | undefined;
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code in TRANSPORT_CAUSES) found = code;
  }
  if (found === undefined) return `request failed (${errorMessage(err)})`;
  const cause = TRANSPORT_CAUSES[found];
  return found.startsWith('UND_ERR') ? cause : `${cause} (${found})`;
}

/** A response whose headers (lower-case names, repeats joined with ", ") are read from the head when first asked for. */
class LazyResponse implements HttpResponse {
  readonly status: number;
  readonly body: string;
  private readonly head: string;
  private parsed: Record<string, string> | undefined;

  constructor(res: H1Response) {
    this.status = res.status;
    this.body = res.body;
    this.head = res.head;
  }

  get headers(): Record<string, string> {
    this.parsed ??= headersOf(this.head);
    return this.parsed;
  }
}

function headersOf(head: string): Record<string, string> {
  const headers: Record<string, string> = {};
  const lines = head.split('\r\n');
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return headers;
}
