/**
 * A loopback tax-due data source for the operating-command tests: it answers as the demo source
 * does (taxDueFor), with a fixed latency, no transient failures, a switch that makes chosen
 * customers fail (404) until it is turned off, and its own per-second request counts.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { taxDueFor } from '../../local/sources/demo-data-source';

export interface OpsSource {
  url: string;
  /** Requests seen, in total. */
  readonly requests: number;
  /** Requests per second of the source's own clock: epoch second -> count. */
  perSecond(): Map<number, number>;
  /** Customers answered 404 while `failing` is on. */
  failIds: Set<string>;
  failing: boolean;
  /** Resolves once the source has seen `n` requests. */
  seen(n: number): Promise<void>;
  close(): Promise<void>;
}

export async function startOpsSource(opts: { latencyMs: number }): Promise<OpsSource> {
  const counts = new Map<number, number>();
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  let requests = 0;
  const source = {
    failIds: new Set<string>(),
    failing: true,
  };
  const server = createServer((req, res) => {
    requests++;
    const second = Math.floor(Date.now() / 1000);
    counts.set(second, (counts.get(second) ?? 0) + 1);
    for (const w of waiters.filter((w) => requests >= w.n)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
    const m = /^\/customers\/([^/]+)\/tax-due\?year=(\d+)/.exec(req.url ?? '');
    setTimeout(() => {
      if (!m || (source.failing && source.failIds.has(decodeURIComponent(m[1]!)))) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"unknown customer"}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(taxDueFor(decodeURIComponent(m[1]!), Number(m[2]))));
    }, opts.latencyMs);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    // A getter here, not a copy: Object.assign would copy the count once.
    get requests() {
      return requests;
    },
    get failIds() {
      return source.failIds;
    },
    set failIds(v: Set<string>) {
      source.failIds = v;
    },
    get failing() {
      return source.failing;
    },
    set failing(v: boolean) {
      source.failing = v;
    },
    perSecond: () => new Map(counts),
    seen: (n: number) => new Promise<void>((resolve) => (requests >= n ? resolve() : waiters.push({ n, resolve }))),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
