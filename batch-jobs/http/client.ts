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
import { H1Error, H1Pool, type H1Exchange, type H1Response } from './h1-pool';
import { PermanentError, TransientError, errorMessage, transientKindOf } from '../../runtime/errors';
import { abortReason } from '../../runtime/retry';

export interface HttpRequest {
  method: string;
  /** The URL; a URL object the caller has already parsed and checked is used as it is. */
  url: string | URL;
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
    let url: URL;
    try {
      url = typeof req.url === 'string' ? new URL(req.url) : req.url;
    } catch {
      return Promise.reject(new PermanentError(`invalid URL in ${describeRequest(req)}`));
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      return Promise.reject(new PermanentError(`unsupported URL scheme "${url.protocol}" in ${describeRequest(req)}`));
    }
    if (req.signal?.aborted) return Promise.reject(abortReason(req.signal));
    return new Promise<HttpResponse>((resolve, reject) => new Call(this.pool, req, url, resolve, reject));
  }

  /**
   * request + classification: 2xx -> parsed JSON (an empty body is null; unparseable ->
   * TransientError); 408/425/429/5xx -> TransientError with retryAfterMs from Retry-After (seconds or
   * HTTP date); 3xx (redirects are not followed), 404 and other 4xx -> PermanentError
   * "HTTP 404 Not Found from <method> <url-without-query-secrets>: <short body excerpt>".
   */
  async requestJson(req: HttpRequest): Promise<unknown> {
    const res = await this.request(req);
    if (res.status >= 200 && res.status < 300) {
      if (res.body.trim() === '') return null;
      try {
        return JSON.parse(res.body) as unknown;
      } catch {
        throw new TransientError(`unparseable JSON in ${describeResponse(req, res)}`);
      }
    }
    if (isTransientStatus(res.status)) {
      throw new TransientError(describeResponse(req, res), parseRetryAfter(res.headers['retry-after']), transientKindOf(res.status));
    }
    throw new PermanentError(describeResponse(req, res));
  }

  /** Closes the sockets once the requests in flight have finished. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= this.pool.close();
    return this.closing;
  }
}

/**
 * One request in flight: its timer, its place among the shutdown signal's listeners and its
 * exchange with the pool, in one object (the fan-out makes thousands a second).
 */
class Call {
  private readonly timer: ReturnType<typeof setTimeout>;
  private readonly exchange: H1Exchange;
  private readonly stopListening: () => void;
  private timedOut = false;
  private settled = false;

  constructor(
    pool: H1Pool,
    private readonly req: HttpRequest,
    url: URL,
    private readonly resolve: (res: HttpResponse) => void,
    private readonly reject: (err: Error) => void,
  ) {
    this.timer = setTimeout(callTimedOut, req.timeoutMs, this);
    this.stopListening = onSharedAbort(req.signal, this);
    this.exchange = pool.request({ method: req.method, url, headers: req.headers, body: req.body }, (err, res) => this.settle(err, res));
  }

  timeOut(): void {
    this.timedOut = true;
    this.exchange.cancel(new Error('request timeout'));
  }

  /** The caller's signal aborted. */
  abortNow(): void {
    this.exchange.cancel(abortReason(this.req.signal!));
  }

  private settle(err: Error | undefined, res: H1Response | undefined): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    this.stopListening();
    if (res !== undefined) this.resolve(responseOf(res));
    else this.reject(failureOf(err, this.req, this.timedOut));
  }
}

function callTimedOut(call: Call): void {
  call.timeOut();
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
  if (url.search) {
    const parts = url.search
      .slice(1)
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
      });
    url.search = parts.join('&');
  }
  return url.toString();
}

/** "GET <url as describeUrl shows it>"; built only when a message needs it. */
function describeRequest(req: HttpRequest): string {
  return `${req.method.toUpperCase()} ${describeUrl(String(req.url))}`;
}

/** "HTTP 404 Not Found from GET <url>: <short body excerpt>". */
function describeResponse(req: HttpRequest, res: HttpResponse): string {
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
function responseOf(res: H1Response): HttpResponse {
  let headers: Record<string, string> | undefined;
  return {
    status: res.status,
    body: res.body,
    get headers() {
      if (headers === undefined) {
        headers = {};
        const lines = res.head.split('\r\n');
        for (let i = 1; i < lines.length; i++) {
          const line = lines[i]!;
          const colon = line.indexOf(':');
          if (colon <= 0) continue;
          const name = line.slice(0, colon).trim().toLowerCase();
          const value = line.slice(colon + 1).trim();
          headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
        }
      }
      return headers;
    },
  };
}

/** What listens to a shared shutdown signal. */
interface AbortTarget {
  abortNow(): void;
}

/**
 * Calls `target.abortNow()` when `signal` aborts; returns the function that stops listening. Every
 * request of a fan-out child shares one shutdown signal: one listener per signal, and a set of
 * targets, instead of an event listener per request.
 */
const sharedAbortTargets = new WeakMap<AbortSignal, Set<AbortTarget>>();
function onSharedAbort(signal: AbortSignal | undefined, target: AbortTarget): () => void {
  if (signal === undefined) return noop;
  let targets = sharedAbortTargets.get(signal);
  if (!targets) {
    const set = new Set<AbortTarget>();
    targets = set;
    sharedAbortTargets.set(signal, set);
    signal.addEventListener(
      'abort',
      () => {
        for (const t of set) t.abortNow();
        set.clear();
      },
      { once: true },
    );
  }
  const set = targets;
  set.add(target);
  return () => set.delete(target);
}

function noop(): void {}
