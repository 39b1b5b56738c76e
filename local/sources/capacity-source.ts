/**
 * A tax-office data source with a fixed capacity, for the fleet-rate benchmark
 * (bench/source-capacity.ts) and the rate-limit end-to-end test: the same API and answers as the
 * demo source (demo-data-source.ts), behind a token bucket of `capacityPerSecond` requests a
 * second. Above it the source answers 429 with `Retry-After: 1` at once; below it, after the
 * latency, a seeded share of calls fails (503, connection reset) or stalls before answering.
 *
 * The source counts every request it receives (429s included) by its own clock:
 * `windows()` gives the highest count in any sliding 1-second window and in each whole second,
 * both from the second after the first request on (the first second is the documented
 * exception: a fleet starting cold may burst there).
 *
 * Listens on 127.0.0.1 only. Standalone (prints one JSON line with its URL, and its stats on SIGTERM):
 *   npx tsx local/sources/capacity-source.ts --capacity 300 [--port 0] [--seed 7]
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { flagValue, isMain } from '../../examples/cli';
import { mulberry32 } from '../../examples/seeded-random';
import { loopbackServer, sendJson } from './loopback-server';
import { DEMO_TOKEN, isKnownCustomer, MAX_YEAR, MIN_YEAR, taxDueFor } from './demo-data-source';

export interface CapacitySourceOptions {
  /** Requests per second the source serves; above it, 429 + Retry-After. */
  capacityPerSecond: number;
  /** Requests the bucket holds after a quiet spell. @default - a twentieth of a second's capacity, at least 1 */
  burst?: number;
  /** Answer delay of a served request. @default 50 */
  latencyMs?: number;
  /** Share of served requests answered 503 (no Retry-After). @default 0.08 */
  unavailableRate?: number;
  /** Share of served requests whose connection is reset. @default 0.01 */
  resetRate?: number;
  /** Share of served requests that stall `stallMs` before answering. @default 0.01 */
  stallRate?: number;
  /** @default 3000 */
  stallMs?: number;
  /** Value of the Retry-After header on a 429, in seconds. @default 1 */
  retryAfterSeconds?: number;
  /** @default 7 */
  seed?: number;
  /** @default DEMO_TOKEN */
  token?: string;
  /** @default 0 - a free port */
  port?: number;
  /** Milliseconds, the source's clock. @default performance.now */
  now?: () => number;
}

export interface CapacitySourceStats {
  requests: number;
  ok: number;
  throttled: number;
  unavailable: number;
  resets: number;
  stalls: number;
  notFound: number;
  badRequest: number;
  unauthorized: number;
  maxInFlight: number;
}

export interface CapacityWindows {
  /** Highest request count in any sliding 1-second window starting a second after the first request. */
  maxSliding: number;
  /** Requests in each whole second after the first, counted from the first request. */
  perSecond: number[];
  /** Time from the first to the last request, ms. */
  spanMs: number;
}

export interface CapacitySource {
  url: string;
  capacityPerSecond: number;
  stats(): CapacitySourceStats;
  windows(): CapacityWindows;
  close(): Promise<void>;
}

export async function startCapacitySource(opts: CapacitySourceOptions): Promise<CapacitySource> {
  const capacity = opts.capacityPerSecond;
  if (!(capacity > 0)) throw new RangeError(`capacityPerSecond must be positive, got ${capacity}`);
  const burst = opts.burst ?? Math.max(1, capacity / 20);
  const latencyMs = opts.latencyMs ?? 50;
  const unavailableRate = opts.unavailableRate ?? 0.08;
  const resetRate = opts.resetRate ?? 0.01;
  const stallRate = opts.stallRate ?? 0.01;
  const stallMs = opts.stallMs ?? 3_000;
  const retryAfter = String(opts.retryAfterSeconds ?? 1);
  const token = opts.token ?? DEMO_TOKEN;
  const now = opts.now ?? (() => performance.now());
  const random = mulberry32(opts.seed ?? 7);

  const stats: CapacitySourceStats = {
    requests: 0,
    ok: 0,
    throttled: 0,
    unavailable: 0,
    resets: 0,
    stalls: 0,
    notFound: 0,
    badRequest: 0,
    unauthorized: 0,
    maxInFlight: 0,
  };
  let inFlight = 0;
  let arrivals = new Float64Array(1 << 16);
  let arrivalCount = 0;
  let tokens = burst;
  let last = now();

  const send = sendJson;

  const answer = (req: IncomingMessage, res: ServerResponse) => {
    if (req.headers.authorization !== `Bearer ${token}`) {
      stats.unauthorized++;
      send(res, 401, { error: 'missing or invalid bearer token' });
      return;
    }
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const m = /^\/customers\/([^/]+)\/tax-due$/.exec(url.pathname);
    const yearText = url.searchParams.get('year') ?? '';
    const year = Number(yearText);
    if (!m) {
      stats.notFound++;
      send(res, 404, { error: `no such resource ${url.pathname}` });
    } else if (!/^\d{4}$/.test(yearText) || year < MIN_YEAR || year > MAX_YEAR) {
      stats.badRequest++;
      send(res, 400, { error: `year must be a tax year from ${MIN_YEAR} to ${MAX_YEAR}, got "${yearText}"` });
    } else if (!isKnownCustomer(decodeURIComponent(m[1]))) {
      stats.notFound++;
      send(res, 404, { error: `unknown customer ${m[1]}` });
    } else {
      stats.ok++;
      send(res, 200, taxDueFor(decodeURIComponent(m[1]), year));
    }
  };

  const server = createServer((req, res) => {
    if (req.url === '/__stats') {
      send(res, 200, { stats, windows: windows() });
      return;
    }
    const t = now();
    if (arrivalCount === arrivals.length) {
      const grown = new Float64Array(arrivals.length * 2);
      grown.set(arrivals);
      arrivals = grown;
    }
    arrivals[arrivalCount++] = t;
    stats.requests++;
    inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, inFlight);
    res.on('close', () => inFlight--);
    req.resume();
    tokens = Math.min(burst, tokens + ((t - last) * capacity) / 1000);
    last = t;
    if (tokens < 1) {
      stats.throttled++;
      send(res, 429, { error: 'too many requests' }, { 'retry-after': retryAfter });
      return;
    }
    tokens -= 1;
    const draw = random();
    if (draw < unavailableRate) {
      later(latencyMs, () => {
        stats.unavailable++;
        send(res, 503, { error: 'service temporarily unavailable' });
      });
    } else if (draw < unavailableRate + resetRate) {
      later(latencyMs, () => {
        stats.resets++;
        req.socket.destroy();
      });
    } else if (draw < unavailableRate + resetRate + stallRate) {
      stats.stalls++;
      later(stallMs, () => answer(req, res));
    } else {
      later(latencyMs, () => answer(req, res));
    }
  });
  server.keepAliveTimeout = 60_000;
  const loopback = loopbackServer(server);
  const later = loopback.later;

  function windows(): CapacityWindows {
    if (arrivalCount === 0) return { maxSliding: 0, perSecond: [], spanMs: 0 };
    const first = arrivals[0]!;
    const from = first + 1_000;
    let maxSliding = 0;
    // Two pointers over arrival times (in order): the window [arrivals[lo], arrivals[lo] + 1 s).
    let hi = 0;
    for (let lo = 0; lo < arrivalCount; lo++) {
      if (arrivals[lo]! < from) continue;
      if (hi < lo) hi = lo;
      while (hi < arrivalCount && arrivals[hi]! < arrivals[lo]! + 1_000) hi++;
      maxSliding = Math.max(maxSliding, hi - lo);
    }
    const perSecond: number[] = [];
    for (let k = 0; k < arrivalCount; k++) {
      const second = Math.floor((arrivals[k]! - first) / 1_000);
      if (second < 1) continue;
      perSecond[second - 1] = (perSecond[second - 1] ?? 0) + 1;
    }
    for (let s = 0; s < perSecond.length; s++) perSecond[s] ??= 0;
    return { maxSliding, perSecond, spanMs: arrivals[arrivalCount - 1]! - first };
  }

  const { url, close } = await loopback.listen(opts.port);
  return {
    url,
    capacityPerSecond: capacity,
    stats: () => ({ ...stats }),
    windows,
    close,
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const source = await startCapacitySource({
    capacityPerSecond: Number(flagValue(args, '--capacity', '300')),
    port: Number(flagValue(args, '--port', '0')),
    seed: Number(flagValue(args, '--seed', '7')),
    token: flagValue(args, '--token', DEMO_TOKEN),
  });
  console.log(JSON.stringify({ url: source.url }));
  const stop = () => {
    const out = { stats: source.stats(), windows: source.windows() };
    void source.close().then(() => {
      console.log(JSON.stringify({ stats: out.stats, maxSliding: out.windows.maxSliding, spanMs: out.windows.spanMs }));
      process.exit(0);
    });
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (isMain(import.meta.url)) void main();
