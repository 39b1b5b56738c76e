import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { H1Pool, type H1Response } from '../../../batch-jobs/http/h1-pool';
import { HttpClient } from '../../../batch-jobs/http/client';
import { TransientError } from '../../../runtime/errors';

/**
 * A raw TCP server that answers each request (read up to its blank line) with the bytes `answer`
 * returns, written in the pieces given (null: the server closes the socket there), so the framing
 * the pool must parse is exact.
 */
async function rawServer(answer: (head: string, n: number) => (string | null)[] | 'close') {
  const sockets = new Set<Socket>();
  let requests = 0;
  let connections = 0;
  const heads: string[] = [];
  const server: Server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let buffered = '';
    socket.on('data', (data) => {
      buffered += data.toString('latin1');
      for (let end = buffered.indexOf('\r\n\r\n'); end >= 0; end = buffered.indexOf('\r\n\r\n')) {
        const head = buffered.slice(0, end);
        const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        heads.push(buffered.slice(0, end + 4 + length));
        buffered = buffered.slice(end + 4 + length);
        const pieces = answer(head, requests++);
        if (pieces === 'close') {
          socket.destroy();
          return;
        }
        // Each piece in its own write, a tick apart, so the client sees it split.
        let i = 0;
        const next = () => {
          if (i < pieces.length && !socket.destroyed) {
            const piece = pieces[i++]!;
            if (piece === null) socket.destroy();
            else {
              socket.write(piece);
              setImmediate(next);
            }
          }
        };
        next();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: new URL(`http://127.0.0.1:${port}/x?y=1`),
    heads,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function call(pool: H1Pool, url: URL, method = 'GET', body?: string): Promise<H1Response> {
  return new Promise((resolve, reject) =>
    pool.request({ method, url, headers: { accept: 'application/json' }, body }, (err, res) => (err ? reject(err) : resolve(res!))),
  );
}

const newPool = (connections = 1) => new H1Pool({ connections, keepAliveTimeoutMs: 30_000, maxResponseBytes: 1024 });

/** Connections a server answering `ok` with `header` sees for two calls in a row through one pool. */
async function connectionsForTwoCalls(header: string): Promise<number> {
  const server = await rawServer(() => [`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n${header}\r\n\r\nok`]);
  const pool = newPool();
  try {
    await call(pool, server.url);
    await call(pool, server.url);
    return server.connections();
  } finally {
    await pool.close();
    await server.close();
  }
}

describe('H1Pool', () => {
  it('given a Content-Length answer split across packets, reads exactly that body and reuses the socket', async () => {
    const server = await rawServer(() => ['HTTP/1.1 200 OK\r\nContent-Le', 'ngth: 11\r\nX-A: 1\r\n\r\n{"a":', '"bcd"}']);
    const pool = newPool();
    const first = await call(pool, server.url);
    const second = await call(pool, server.url);
    assert.equal(first.status, 200);
    assert.equal(first.body, '{"a":"bcd"}');
    assert.equal(second.body, '{"a":"bcd"}');
    assert.equal(server.connections(), 1, 'the keep-alive socket serves both requests');
    assert.match(server.heads[0]!, /^GET \/x\?y=1 HTTP\/1\.1\r\nhost: 127\.0\.0\.1:\d+\r\naccept: application\/json\r\n\r\n$/);
    await pool.close();
    await server.close();
  });

  it('given a chunked answer with an extension and trailers, joins the chunks', async () => {
    const server = await rawServer(() => [
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n{"a"',
      '\r\n',
      '3\r\n:1}\r\n0\r\nX-Trailer: t\r\n',
      '\r\n',
    ]);
    const pool = newPool();
    assert.equal((await call(pool, server.url)).body, '{"a":1}');
    assert.equal((await call(pool, server.url)).body, '{"a":1}');
    assert.equal(server.connections(), 1);
    await pool.close();
    await server.close();
  });

  it('given an interim 100 Continue, skips it and reads the real answer', async () => {
    const server = await rawServer(() => ['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok']);
    const pool = newPool();
    const res = await call(pool, server.url, 'POST', '{"x":"é"}');
    assert.equal(res.status, 201);
    assert.equal(res.body, 'ok');
    const sent = Buffer.from(server.heads[0]!, 'latin1').toString('utf8');
    assert.match(sent, /content-length: 10\r\n\r\n\{"x":"é"\}$/, 'the body is sent as UTF-8 with its byte length');
    await pool.close();
    await server.close();
  });

  it('given an answer without length, reads to the close and opens a new socket for the next request', async () => {
    const server = await rawServer(() => ['HTTP/1.1 200 OK\r\n\r\nhello ', 'world', null]);
    const pool = newPool();
    assert.equal((await call(pool, server.url)).body, 'hello world');
    assert.equal((await call(pool, server.url)).body, 'hello world');
    assert.equal(server.connections(), 2);
    await pool.close();
    await server.close();
  });

  it('given Connection: close with a length, does not reuse the socket', async () => {
    assert.equal(await connectionsForTwoCalls('Connection: close'), 2);
  });

  it('given a 204 and a HEAD answer, reads no body and keeps the socket', async () => {
    const server = await rawServer((head) =>
      head.startsWith('HEAD') ? ['HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n'] : ['HTTP/1.1 204 No Content\r\n\r\n'],
    );
    const pool = newPool();
    assert.equal((await call(pool, server.url)).status, 204);
    const head = await call(pool, server.url, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    assert.equal(server.connections(), 1);
    await pool.close();
    await server.close();
  });

  it('given a server that closes mid-answer, fails with H1_CLOSED; a body over the limit fails with H1_TOO_LARGE', async () => {
    const server = await rawServer(() => ['HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort', null]);
    const pool = newPool();
    await assert.rejects(call(pool, server.url), (err: Error & { code?: string }) => err.code === 'H1_CLOSED');
    await pool.close();
    await server.close();

    const big = await rawServer(() => ['HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n']);
    const pool2 = newPool();
    await assert.rejects(call(pool2, big.url), (err: Error & { code?: string }) => err.code === 'H1_TOO_LARGE');
    await pool2.close();
    await big.close();
  });

  it('given a garbled answer, fails with H1_PARSE', async () => {
    const server = await rawServer(() => ['SMTP ready\r\n\r\n']);
    const pool = newPool();
    await assert.rejects(call(pool, server.url), (err: Error & { code?: string }) => err.code === 'H1_PARSE');
    await pool.close();
    await server.close();
  });

  it('given more requests than sockets, queues them first come, first served and serves all on `connections` sockets', async () => {
    const server = await rawServer((_h, n) => [`HTTP/1.1 200 OK\r\nContent-Length: ${String(n).length}\r\n\r\n${n}`]);
    const pool = newPool(2);
    const bodies = await Promise.all(Array.from({ length: 10 }, () => call(pool, server.url).then((r) => r.body)));
    assert.equal(bodies.length, 10);
    assert.equal(new Set(bodies).size, 10);
    assert.equal(server.connections(), 2);
    await pool.close();
    await server.close();
  });

  it('given a queued request cancelled, it leaves the queue and the others are still served', async () => {
    const server = await rawServer(() => ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok']);
    const pool = newPool(1);
    const first = call(pool, server.url);
    let cancelledWith: Error | undefined;
    const exchange = pool.request({ method: 'GET', url: server.url, headers: undefined, body: undefined }, (err) => (cancelledWith = err));
    const third = call(pool, server.url);
    exchange.cancel(new Error('caller gave up'));
    assert.equal((await first).body, 'ok');
    assert.equal((await third).body, 'ok');
    assert.equal(cancelledWith?.message, 'caller gave up');
    assert.equal(server.heads.length, 2, 'the cancelled request was never sent');
    await pool.close();
    await server.close();
  });

  it('given a header value with a line break, refuses the request without sending it', async () => {
    const server = await rawServer(() => ['HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n']);
    const pool = newPool();
    await assert.rejects(
      new Promise((resolve, reject) =>
        pool.request({ method: 'GET', url: server.url, headers: { 'x-a': 'a\r\nx-b: b' }, body: undefined }, (err, res) =>
          err ? reject(err) : resolve(res),
        ),
      ),
      (err: Error & { code?: string }) => err.code === 'H1_INVALID',
    );
    assert.equal(server.heads.length, 0);
    await pool.close();
    await server.close();
  });

  it('given a Keep-Alive timeout hint of 1 s, does not reuse the socket (it would be closed by the server)', async () => {
    assert.equal(await connectionsForTwoCalls('Keep-Alive: timeout=1'), 2);
  });
});

describe('HttpClient over TLS', () => {
  let dir: string | undefined;
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  let openssl = true;
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
  } catch {
    openssl = false;
  }

  it('given an https source with a certificate the client trusts, gets the JSON answer', {
    skip: !openssl && 'no openssl to make a certificate',
  }, async () => {
    dir = mkdtempSync(join(tmpdir(), 'h1-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
        '-days',
        '1',
      ].concat(['-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost']),
      { stdio: 'ignore' },
    );
    const cert = readFileSync(join(dir, 'cert.pem'));
    const server = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const trusting = new HttpClient({ connections: 2, ca: cert });
    const untrusting = new HttpClient({ connections: 2 });
    try {
      assert.deepEqual(await trusting.requestJson({ method: 'GET', url: `https://localhost:${port}/a`, timeoutMs: 5_000 }), { ok: true });
      await assert.rejects(
        untrusting.requestJson({ method: 'GET', url: `https://localhost:${port}/a`, timeoutMs: 5_000 }),
        (err: unknown) => err instanceof TransientError && /self-signed|certificate/i.test(err.message),
      );
    } finally {
      await trusting.close();
      await untrusting.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
