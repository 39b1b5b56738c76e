/**
 * A demo tax-office data source for the `tax-due` pipeline: slow, flaky, and strict about its
 * token, so a local run shows retries, back-off, Retry-After and a few permanent misses.
 *
 *   GET /customers/:id/tax-due?year=YYYY   Authorization: Bearer <token>
 *   200 {"customerId","year","taxDue","currency","assessedOn","status"}   (deterministic per id+year)
 *   404 unknown customer (ids not six digits, or starting with 9)
 *   400 missing or out-of-range year (2000-2030)
 *   401 missing or wrong bearer token
 *   and, at `transientFailureRate`, drawn from a seeded generator: 503, 429 with Retry-After: 1,
 *   or a connection reset.
 *   GET /__stats   the counters of `stats()` (no token needed)
 *
 * Listens on 127.0.0.1 only. Standalone:
 *   npx tsx local/sources/demo-data-source.ts [--port 8787] [--latency 50-150]
 *     [--failure-rate 0.08] [--seed 42] [--token demo-token] [--json]
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isMain } from '../../examples/cli';
import { mulberry32 } from '../../examples/seeded-random';
import { loopbackServer, sendJson } from './loopback-server';

/** The token the demo expects unless told otherwise (the `tax-due` pipeline reads it from TAX_API_TOKEN). */
export const DEMO_TOKEN = 'demo-token';

export interface DemoDataSourceOptions {
  /** @default 0 - a free port */
  port?: number;
  /** Answer delay range, uniform. @default [50, 150] */
  latencyMs?: [number, number];
  /** Share of requests that fail transiently (503, 429 or a reset). @default 0.08 */
  transientFailureRate?: number;
  /** Seed of the generator behind latency and failures. @default 42 */
  seed?: number;
  /** Bearer token required. @default DEMO_TOKEN */
  token?: string;
}

export interface DemoDataSourceStats {
  requests: number;
  ok: number;
  notFound: number;
  badRequest: number;
  unauthorized: number;
  unavailable: number;
  throttled: number;
  resets: number;
  /** TCP connections accepted (a client that keeps connections alive opens few). */
  connections: number;
  inFlight: number;
  maxInFlight: number;
}

export interface DemoDataSource {
  url: string;
  close(): Promise<void>;
  stats(): DemoDataSourceStats;
}

export interface TaxDueAnswer {
  customerId: string;
  year: number;
  taxDue: number;
  currency: string;
  assessedOn: string;
  status: 'assessed' | 'paid' | 'overdue' | 'under review';
}

const STATUSES: TaxDueAnswer['status'][] = ['assessed', 'paid', 'overdue', 'under review'];
export const MIN_YEAR = 2000;
export const MAX_YEAR = 2030;

/** Known customers: six-digit ids not starting with 9 (leading zeros kept: "000123"). */
export function isKnownCustomer(id: string): boolean {
  return /^\d{6}$/.test(id) && !id.startsWith('9');
}

/** The answer for a known customer and a valid year; the same every time. */
export function taxDueFor(customerId: string, year: number): TaxDueAnswer {
  const h = fnv1a(`${customerId}:${year}`);
  const h2 = fnv1a(`${year}/${customerId}`);
  const month = 1 + (h2 % 6);
  const day = 1 + ((h2 >>> 8) % 28);
  const status = STATUSES[(h >>> 20) % STATUSES.length];
  return {
    customerId,
    year,
    taxDue: status === 'paid' ? 0 : (h % 500_000) / 100,
    currency: 'GBP',
    assessedOn: `${year + 1}-${String(month).padStart(2, '0')}-${String(day).padStart(2, '0')}`,
    status,
  };
}

export async function startDemoDataSource(opts: DemoDataSourceOptions = {}): Promise<DemoDataSource> {
  const [minLatency, maxLatency] = opts.latencyMs ?? [50, 150];
  if (!(minLatency >= 0 && maxLatency >= minLatency)) {
    throw new RangeError(`latencyMs must be [min, max] with 0 <= min <= max, got [${minLatency}, ${maxLatency}]`);
  }
  const failureRate = opts.transientFailureRate ?? 0.08;
  if (!(failureRate >= 0 && failureRate <= 1)) throw new RangeError(`transientFailureRate must be in [0, 1], got ${failureRate}`);
  const token = opts.token ?? DEMO_TOKEN;
  const random = mulberry32(opts.seed ?? 42);

  const stats: DemoDataSourceStats = {
    requests: 0,
    ok: 0,
    notFound: 0,
    badRequest: 0,
    unauthorized: 0,
    unavailable: 0,
    throttled: 0,
    resets: 0,
    connections: 0,
    inFlight: 0,
    maxInFlight: 0,
  };

  const send = sendJson;

  const answer = (req: IncomingMessage, res: ServerResponse, failure: number, kind: number) => {
    if (failure < failureRate) {
      if (kind < 0.5) {
        stats.unavailable++;
        send(res, 503, { error: 'service temporarily unavailable' });
      } else if (kind < 0.8) {
        stats.throttled++;
        send(res, 429, { error: 'too many requests' }, { 'retry-after': '1' });
      } else {
        stats.resets++;
        req.socket.destroy();
      }
      return;
    }
    if (req.headers.authorization !== `Bearer ${token}`) {
      stats.unauthorized++;
      send(res, 401, { error: 'missing or invalid bearer token' }, { 'www-authenticate': 'Bearer' });
      return;
    }
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const m = /^\/customers\/([^/]+)\/tax-due$/.exec(url.pathname);
    if (!m) {
      stats.notFound++;
      send(res, 404, { error: `no such resource ${url.pathname}` });
      return;
    }
    if (req.method !== 'GET') {
      stats.badRequest++;
      send(res, 405, { error: 'only GET is supported' }, { allow: 'GET' });
      return;
    }
    let id: string;
    try {
      id = decodeURIComponent(m[1]);
    } catch {
      stats.badRequest++;
      send(res, 400, { error: 'malformed customer id' });
      return;
    }
    const yearText = url.searchParams.get('year') ?? '';
    const year = Number(yearText);
    if (!/^\d{4}$/.test(yearText) || year < MIN_YEAR || year > MAX_YEAR) {
      stats.badRequest++;
      send(res, 400, { error: `year must be a tax year from ${MIN_YEAR} to ${MAX_YEAR}, got "${yearText}"` });
      return;
    }
    if (!isKnownCustomer(id)) {
      stats.notFound++;
      send(res, 404, { error: `unknown customer ${JSON.stringify(id)}` });
      return;
    }
    stats.ok++;
    send(res, 200, taxDueFor(id, year));
  };

  const server = createServer((req, res) => {
    if (req.url === '/__stats') {
      // Counters for benchmarks and curious people; not counted, no auth, no latency.
      send(res, 200, stats);
      return;
    }
    stats.requests++;
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        stats.inFlight--;
      }
    };
    res.on('close', finish);
    // Draw everything now, in arrival order, so a given seed and order give the same answers.
    const latency = minLatency + random() * (maxLatency - minLatency);
    const failure = random();
    const kind = random();
    req.resume();
    loopback.later(latency, () => answer(req, res, failure, kind));
  });
  const loopback = loopbackServer(server);
  server.on('connection', () => {
    stats.connections++;
  });

  const { url, close } = await loopback.listen(opts.port);

  return {
    url,
    stats: () => ({ ...stats }),
    close,
  };
}

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Standalone

function parseArgs(argv: string[]): { options: DemoDataSourceOptions; json: boolean } {
  const options: DemoDataSourceOptions = { port: 8787 };
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--port':
        options.port = Number(value());
        break;
      case '--latency': {
        const [min, max] = value().split('-').map(Number);
        options.latencyMs = [min, max ?? min];
        break;
      }
      case '--failure-rate':
        options.transientFailureRate = Number(value());
        break;
      case '--seed':
        options.seed = Number(value());
        break;
      case '--token':
        options.token = value();
        break;
      case '--json':
        json = true;
        break;
      default:
        throw new Error(
          `unknown option ${flag}; usage: demo-data-source.ts [--port N] [--latency MIN-MAX] [--failure-rate R] [--seed N] [--token T] [--json]`,
        );
    }
  }
  return { options, json };
}

async function main(): Promise<void> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(2);
  }
  const source = await startDemoDataSource(parsed.options);
  const token = parsed.options.token ?? DEMO_TOKEN;
  if (parsed.json) console.log(JSON.stringify({ url: source.url, token }));
  else {
    console.log(`demo tax data source on ${source.url} (token "${token}")`);
    console.log(`try: curl -H 'authorization: Bearer ${token}' '${source.url}/customers/000123/tax-due?year=2023'`);
  }
  const stop = () => {
    void source.close().then(() => {
      console.log(JSON.stringify({ stats: source.stats() }));
      process.exit(0);
    });
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (isMain(import.meta.url)) void main();
