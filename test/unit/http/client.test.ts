import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { PermanentError, TransientError } from '../../../runtime/errors';
import { HttpClient, describeUrl, parseRetryAfter } from '../../../batch-jobs/http/client';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** A loopback server whose answer per path is set by each test; it counts the sockets it accepted. */
async function startServer(routes: Record<string, Handler>) {
  let sockets = 0;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const handler = routes[path];
    if (handler) handler(req, res);
    else {
      res.writeHead(500);
      res.end('no route');
    }
  });
  server.on('connection', () => sockets++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    sockets: () => sockets,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const json =
  (status: number, body: unknown, headers: Record<string, string> = {}): Handler =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };

describe('HttpClient', () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  const client = new HttpClient({ connections: 1 });
  const getJson = (path: string, timeoutMs = 2_000) => client.requestJson({ method: 'GET', url: `${server.url}${path}`, timeoutMs });
  const echoes: { method?: string; headers: IncomingMessage['headers']; body: string }[] = [];

  before(async () => {
    server = await startServer({
      '/ok': json(200, { taxDue: 12.5 }),
      '/throttled-case': (_req, res) => {
        res.writeHead(429, [
          ['Content-Type', 'application/json'],
          ['RETRY-after', '2'],
        ]);
        res.end('{}');
      },
      '/echo': (req, res) => {
        let body = '';
        req.on('data', (c) => (body += c));
        req.on('end', () => {
          echoes.push({ method: req.method, headers: req.headers, body });
          json(200, { got: body })(req, res);
        });
      },
      '/slow': (_req, res) => {
        setTimeout(() => json(200, {})(_req, res), 2_000).unref();
      },
      '/reset': (req) => req.socket.destroy(),
      '/busy': json(429, { error: 'slow down' }, { 'retry-after': '3' }),
      '/unavailable': json(503, { error: 'maintenance' }),
      '/missing': json(404, { error: 'no such customer' }),
      '/forbidden': json(403, { error: 'nope' }),
      '/bad-json': (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"taxDue": 12.5, <html>');
      },
      '/empty': (_req, res) => {
        res.writeHead(204);
        res.end();
      },
      '/moved': (_req, res) => {
        res.writeHead(302, { location: 'http://example.com/' });
        res.end();
      },
    });
  });
  after(async () => {
    await client.close();
    await server.close();
  });

  it('given many sequential and parallel requests, reuses keep-alive sockets up to `connections`', async () => {
    const pooled = new HttpClient({ connections: 4 });
    const before = server.sockets();
    for (let round = 0; round < 10; round++) {
      await Promise.all(Array.from({ length: 4 }, () => pooled.requestJson({ method: 'GET', url: `${server.url}/ok`, timeoutMs: 2_000 })));
    }
    await pooled.close();
    assert.ok(server.sockets() - before <= 4, `opened ${server.sockets() - before} sockets for 40 requests`);
  });

  it('given a 2xx JSON answer, returns the parsed body', async () => {
    const body = await getJson('/ok');
    assert.deepEqual(body, { taxDue: 12.5 });
  });

  it('given a method, headers and a body, sends them as given', async () => {
    await client.requestJson({
      method: 'POST',
      url: `${server.url}/echo`,
      headers: { 'content-type': 'application/json', 'x-api-key': 'k1' },
      body: '{"id":"007"}',
      timeoutMs: 2_000,
    });
    const last = echoes.at(-1)!;
    assert.equal(last.method, 'POST');
    assert.equal(last.headers['x-api-key'], 'k1');
    assert.equal(last.body, '{"id":"007"}');
  });

  it('given a server slower than the timeout, fails with a TransientError saying it timed out', async () => {
    await assert.rejects(
      getJson('/slow', 150),
      (err: unknown) => err instanceof TransientError && /timed out after 150 ms: GET http:\/\/127\.0\.0\.1:\d+\/slow/.test(err.message),
    );
  });

  it('given calls with different timeouts, each times out after its own, the shorter first', async () => {
    const order: string[] = [];
    const call = (timeoutMs: number) =>
      getJson('/slow', timeoutMs).catch((err: unknown) => {
        order.push((err instanceof TransientError && /timed out after (\d+) ms/.exec(err.message)?.[1]) || `not a timeout of ${timeoutMs}`);
      });
    await Promise.all([call(400), call(100), call(250)]);
    assert.deepEqual(order, ['100', '250', '400']);
  });

  it('given a server that resets the connection, fails with a TransientError naming the cause', async () => {
    await assert.rejects(
      getJson('/reset'),
      (err: unknown) => err instanceof TransientError && /(connection reset|closed by the server).*GET .*\/reset/.test(err.message),
    );
  });

  it('given nobody listening on the port, fails with a TransientError saying the connection was refused', async () => {
    const dead = await startServer({});
    const url = `${dead.url}/ok`;
    await dead.close();
    await assert.rejects(
      client.requestJson({ method: 'GET', url, timeoutMs: 2_000 }),
      (err: unknown) => err instanceof TransientError && /connection refused \(ECONNREFUSED\)/.test(err.message),
    );
  });

  it('given a 429 with Retry-After in seconds, fails with a TransientError carrying the delay', async () => {
    await assert.rejects(
      getJson('/busy'),
      (err: unknown) =>
        err instanceof TransientError && err.retryAfterMs === 3_000 && /^HTTP 429 Too Many Requests from GET /.test(err.message),
    );
  });

  it('given a 503, fails with a TransientError', async () => {
    await assert.rejects(
      getJson('/unavailable'),
      (err: unknown) => err instanceof TransientError && err.retryAfterMs === undefined && /HTTP 503 Service Unavailable/.test(err.message),
    );
  });

  it('given a 404, fails with a PermanentError naming status, request and a body excerpt', async () => {
    const url = `${server.url}/missing?year=2023&api_key=s3cr3t`;
    await assert.rejects(
      client.requestJson({ method: 'GET', url, timeoutMs: 2_000 }),
      (err: unknown) =>
        err instanceof PermanentError &&
        err.message === `HTTP 404 Not Found from GET ${server.url}/missing?year=2023&api_key=***: {"error":"no such customer"}`,
    );
  });

  it('given a URL as an origin and a path, a failure names it as describeUrl would, secrets masked', async () => {
    const origin = new URL(`http://user:pw@${server.url.slice('http://'.length)}`);
    await assert.rejects(
      client.requestJson({ method: 'GET', url: { origin, path: '/missing?year=2023&api_key=s3cr3t' }, timeoutMs: 2_000 }),
      (err: unknown) =>
        err instanceof PermanentError &&
        err.message === `HTTP 404 Not Found from GET ${server.url}/missing?year=2023&api_key=***: {"error":"no such customer"}`,
    );
  });

  it('given a 429 whose Retry-After is spelled in another case, reads it', async () => {
    await assert.rejects(
      client.requestJson({ method: 'GET', url: { origin: new URL(server.url), path: '/throttled-case' }, timeoutMs: 2_000 }),
      (err: unknown) => err instanceof TransientError && err.retryAfterMs === 2_000 && err.kind === 'throttled',
    );
  });

  it('given another 4xx, fails with a PermanentError', async () => {
    await assert.rejects(getJson('/forbidden'), (err: unknown) => err instanceof PermanentError && /HTTP 403 Forbidden/.test(err.message));
  });

  it('given a redirect, does not follow it and fails with a PermanentError', async () => {
    await assert.rejects(getJson('/moved'), (err: unknown) => err instanceof PermanentError && /HTTP 302 Found/.test(err.message));
  });

  it('given a 2xx with a body that is not JSON, fails with a TransientError', async () => {
    await assert.rejects(
      getJson('/bad-json'),
      (err: unknown) => err instanceof TransientError && /^unparseable JSON in HTTP 200 OK from GET /.test(err.message),
    );
  });

  it('given a 204 without body, returns null', async () => {
    assert.equal(await getJson('/empty'), null);
  });

  it('given a plain request, returns status, headers and body without classifying the status', async () => {
    const res = await client.request({ method: 'GET', url: `${server.url}/missing`, timeoutMs: 2_000 });
    assert.equal(res.status, 404);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.body, '{"error":"no such customer"}');
  });

  it("given the caller aborts, rejects with the caller's reason rather than a TransientError", async () => {
    const controller = new AbortController();
    const pending = client.request({ method: 'GET', url: `${server.url}/slow`, timeoutMs: 5_000, signal: controller.signal });
    setTimeout(() => controller.abort(new Error('child shutting down')), 20);
    await assert.rejects(pending, (err: unknown) => !(err instanceof TransientError) && /child shutting down/.test(String(err)));
  });
});

describe('parseRetryAfter', () => {
  it('given delta seconds, returns milliseconds', () => {
    assert.equal(parseRetryAfter('120'), 120_000);
  });

  it('given an HTTP date, returns the time until then', () => {
    const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT');
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:30 GMT', now), 30_000);
  });

  it('given an HTTP date in the past, returns 0', () => {
    const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT');
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:00:00 GMT', now), 0);
  });

  it('given nothing or garbage, returns undefined', () => {
    assert.equal(parseRetryAfter(undefined), undefined);
    assert.equal(parseRetryAfter('-5'), undefined);
    assert.equal(parseRetryAfter('soon'), undefined);
  });
});

describe('describeUrl', () => {
  it('given userinfo and secret query values, removes and masks them', () => {
    assert.equal(
      describeUrl('https://user:pw@api.example.com/a/b?year=2023&access_token=abc&apiKey=def#frag'),
      'https://api.example.com/a/b?year=2023&access_token=***&apiKey=***',
    );
  });
});
