import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createHttpLookupTask, describeHttpLookupOutput, parseJsonPath } from '../../../batch-jobs/tasks/http-lookup';
import { createTask, describeTaskOutput } from '../../../batch-jobs/tasks/index';
import type { Task } from '../../../batch-jobs/tasks/task';
import { ConfigError, httpLookupTaskSchema, type HttpLookupTaskConfig } from '../../../runtime/config/schema';
import { EnvironmentError, PermanentError, TransientError } from '../../../runtime/errors';
import { HttpClient } from '../../../batch-jobs/http/client';
import type { Row, WorkItem } from '../../../runtime/model';

const TOKEN = 'tok-3f9a!secret/+=';

interface Seen {
  method: string;
  rawUrl: string;
  headers: IncomingMessage['headers'];
  body: string;
}

describe('http-lookup task', () => {
  const seen: Seen[] = [];
  let reply: (req: Seen, res: ServerResponse) => void = (_req, res) => send(res, 200, {});
  let base = '';
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const s = { method: req.method ?? '', rawUrl: req.url ?? '', headers: req.headers, body };
      seen.push(s);
      reply(s, res);
    });
  });
  const client = new HttpClient({ connections: 4 });

  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await client.close();
    server.closeAllConnections();
    server.close();
  });

  function send(res: ServerResponse, status: number, body: unknown) {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
  }

  function config(overrides: Partial<Record<keyof HttpLookupTaskConfig, unknown>> = {}): HttpLookupTaskConfig {
    return httpLookupTaskSchema.parse({
      type: 'http-lookup',
      url: `${base}/customers/{Customer ID}/tax-due?year={Tax Year}`,
      headers: { authorization: 'Bearer {credential}' },
      credential: { env: 'TAX_API_TOKEN' },
      timeoutMs: 2_000,
      results: [{ column: 'Tax Due', path: 'taxDue', type: 'number' }],
      ...overrides,
    });
  }

  function item(row: Row): WorkItem {
    return { i: 0, r: [2], d: [row] };
  }

  const lookupTask = (cfg: HttpLookupTaskConfig = config()) => createHttpLookupTask(cfg, { client, credential: TOKEN });

  const ctx = { attempt: 1, signal: new AbortController().signal };
  const customer = (id: string, extra: Row = {}): WorkItem => item({ 'Customer ID': id, 'Tax Year': 2023, ...extra });

  async function runOnce(task: Task, work: WorkItem) {
    seen.length = 0;
    return task.run(work, ctx);
  }

  it('given an id with leading zeros, puts it in the path and the year in the query', async () => {
    reply = (_r, res) => send(res, 200, { taxDue: 10 });
    const task = lookupTask();
    await runOnce(task, customer('000123'));
    assert.equal(seen[0].rawUrl, '/customers/000123/tax-due?year=2023');
  });

  it('given a value with "../" and "?", encodes it so it stays one path segment', async () => {
    reply = (_r, res) => send(res, 200, { taxDue: 10 });
    const task = lookupTask();
    await runOnce(task, customer('../admin?drop=1#x'));
    assert.equal(seen[0].rawUrl, '/customers/..%2Fadmin%3Fdrop%3D1%23x/tax-due?year=2023');
  });

  it('given a value that is exactly "..", fails the item without calling', async () => {
    const task = lookupTask();
    await assert.rejects(
      runOnce(task, customer('..')),
      (err: unknown) => err instanceof PermanentError && /would change the URL path/.test(err.message),
    );
    assert.equal(seen.length, 0);
  });

  it('given an empty value for a path placeholder, fails the item without calling', async () => {
    const task = lookupTask();
    await assert.rejects(
      runOnce(task, customer('')),
      (err: unknown) => err instanceof PermanentError && /"Customer ID" is empty/.test(err.message),
    );
    assert.equal(seen.length, 0);
  });

  it('given a template whose host is a placeholder, refuses it at creation', () => {
    const bad = { ...config(), url: 'http://{Customer ID}/x' };
    assert.throws(
      () => lookupTask(bad),
      (err: unknown) => err instanceof ConfigError && /fixed host/.test(err.message),
    );
  });

  it('given a placeholder glued to the port, refuses it at creation', () => {
    const bad = { ...config(), url: `${base}{Customer ID}/x` };
    assert.throws(() => lookupTask(bad), ConfigError);
  });

  it('given values of any kind, the request never leaves the template origin', async () => {
    reply = (_r, res) => send(res, 200, { taxDue: 1 });
    const task = lookupTask({ ...config(), url: `${base}/x/{Customer ID}` });
    for (const id of ['@evil.example.com', '//evil.example.com/', '\\\\evil.example.com', 'http://evil.example.com', '%2e%2e']) {
      await runOnce(task, customer(id));
      assert.equal(seen.length, 1, `value ${id} reached the configured server`);
      assert.ok(seen[0].rawUrl.startsWith('/x/') && seen[0].rawUrl.split('/').length === 3, seen[0].rawUrl);
    }
  });

  it('given templates and values of many kinds, sends the path and query that URL parsing of the filled template gives', async () => {
    reply = (_r, res) => send(res, 200, { taxDue: 1 });
    const templates = [
      '/x/{Customer ID}?q={Name}',
      '?q={Name}&id={Customer ID}',
      "/a b/{Customer ID}?q='{Name}'",
      '/x;v=1/{Customer ID}/y@z:w!$&()*+,~?q={Name}&r=%zz?s',
      '/x/{Customer ID}#frag',
    ];
    const values = ["x'y", 'a b', 'é€', '100%', 'a/b', '?&=#', "~!*()'", '.e', 'x%2e'];
    for (const template of templates) {
      const task = lookupTask({ ...config(), url: `${base}${template}` });
      for (const id of values) {
        const name = values[(values.indexOf(id) + 1) % values.length]!;
        await runOnce(task, customer(id, { Name: name }));
        const filled = `${base}${template}`.replace('{Customer ID}', encodeURIComponent(id)).replace('{Name}', encodeURIComponent(name));
        const expected = new URL(filled);
        assert.equal(seen[0].rawUrl, expected.pathname + expected.search, `${template} with ${id} and ${name}`);
      }
    }
  });

  it('given a {credential} header, sends the credential in it', async () => {
    reply = (_r, res) => send(res, 200, { taxDue: 1 });
    const task = lookupTask();
    await runOnce(task, customer('1'));
    assert.equal(seen[0].headers.authorization, `Bearer ${TOKEN}`);
    assert.equal(seen[0].headers.accept, 'application/json');
  });

  it('given a header needing the credential and none given, fails at creation naming the variable', () => {
    assert.throws(
      () => createHttpLookupTask(config(), { client }),
      (err: unknown) => err instanceof EnvironmentError && /TAX_API_TOKEN/.test(err.message),
    );
  });

  it('given an error answer that echoes the credential, keeps the credential out of the message', async () => {
    reply = (r, res) => send(res, 401, { error: `token ${String(r.headers.authorization)} is not valid`, hint: encodeURIComponent(TOKEN) });
    const task = lookupTask();
    await assert.rejects(runOnce(task, customer('1')), (err: unknown) => {
      assert.ok(err instanceof PermanentError);
      assert.match(err.message, /^HTTP 401 Unauthorized from GET /);
      assert.ok(!err.message.includes(TOKEN) && !err.message.includes(encodeURIComponent(TOKEN)), err.message);
      assert.match(err.message, /Bearer \*\*\*/);
      return true;
    });
  });

  it('given a transient answer that echoes the credential, keeps it out and keeps Retry-After', async () => {
    reply = (r, res) => {
      res.writeHead(429, { 'retry-after': '2' });
      res.end(`slow down ${String(r.headers.authorization)}`);
    };
    const task = lookupTask();
    await assert.rejects(runOnce(task, customer('1')), (err: unknown) => {
      assert.ok(err instanceof TransientError);
      assert.equal(err.retryAfterMs, 2_000);
      assert.ok(!err.message.includes(TOKEN), err.message);
      return true;
    });
  });

  it('given a body template, sends JSON with string values escaped and bare values as JSON', async () => {
    reply = (_r, res) => send(res, 200, { taxDue: 1 });
    const cfg = config({
      method: 'POST',
      url: `${base}/lookup`,
      body: '{"customer": {"id": "{Customer ID}", "year": {Tax Year}}, "note": "for {Name}", "postcode": {Postcode}}',
    });
    const task = lookupTask(cfg);
    await runOnce(task, customer('007', { Name: 'O"Brien\\ \n =1+1', Postcode: null }));
    assert.equal(seen[0].method, 'POST');
    assert.equal(seen[0].headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(seen[0].body), {
      customer: { id: '007', year: 2023 },
      note: 'for O"Brien\\ \n =1+1',
      postcode: null,
    });
  });

  it('given a body template that is not JSON, refuses it at creation', () => {
    const cfg = config({ method: 'POST', url: `${base}/lookup`, body: '{"id": {Customer ID}' });
    assert.throws(
      () => lookupTask(cfg),
      (err: unknown) => err instanceof ConfigError && /body/.test(err.message),
    );
  });

  it('given result paths, reads nested fields and coerces them to their column types', async () => {
    reply = (_r, res) =>
      send(res, 200, {
        data: {
          amounts: [{ value: 1 }, { value: '12.50' }],
          count: '3',
          assessed: '2024-03-31T10:15:00+02:00',
          day: '2024-02-29',
          paid: 'yes',
          code: 42,
          'odd key': { x: true },
        },
      });
    const cfg = config({
      results: [
        { column: 'Amount', path: '$.data.amounts[1].value', type: 'number' },
        { column: 'Count', path: 'data.count', type: 'integer' },
        { column: 'Assessed', path: 'data.assessed', type: 'date' },
        { column: 'Day', path: 'data.day', type: 'date' },
        { column: 'Paid', path: 'data.paid', type: 'boolean' },
        { column: 'Code', path: 'data.code', type: 'text' },
        { column: 'Odd', path: 'data["odd key"]', type: 'text' },
        { column: 'Missing', path: 'data.amounts[7].value', type: 'number' },
        { column: 'Not an object', path: 'data.code.x', type: 'text' },
      ],
    });
    const task = lookupTask(cfg);
    const result = await runOnce(task, customer('1'));
    assert.deepEqual(result, {
      fields: {
        Amount: 12.5,
        Count: 3,
        Assessed: '2024-03-31T08:15:00.000Z',
        Day: '2024-02-29',
        Paid: true,
        Code: '42',
        Odd: '{"x":true}',
        Missing: null,
        'Not an object': null,
      },
    });
  });

  it('given a value that cannot be coerced, fails the item naming the field', async () => {
    reply = (_r, res) => send(res, 200, { taxDue: 'n/a' });
    const task = lookupTask();
    await assert.rejects(
      runOnce(task, customer('1')),
      (err: unknown) =>
        err instanceof PermanentError && err.message === 'response field "taxDue" (column "Tax Due"): expected a number, got "n/a"',
    );
  });

  it('given a malformed result path, refuses it at creation', () => {
    const cfg = config({ results: [{ column: 'X', path: 'a..b', type: 'text' }] });
    assert.throws(
      () => lookupTask(cfg),
      (err: unknown) => err instanceof ConfigError && /results\[0\]\.path/.test(err.message),
    );
  });

  it('given paths in every accepted form, parses them into steps', () => {
    assert.deepEqual(parseJsonPath('a.b[0].c'), ['a', 'b', 0, 'c']);
    assert.deepEqual(parseJsonPath('$.a'), ['a']);
    assert.deepEqual(parseJsonPath("$['a b'][2]"), ['a b', 2]);
  });

  it('given the config, describes one row column per result, in order', () => {
    const shape = describeHttpLookupOutput(
      config({
        results: [
          { column: 'B', path: 'b', type: 'date' },
          { column: 'A', path: 'a' },
        ],
      }),
    );
    assert.deepEqual(shape, {
      rowColumns: [
        { name: 'B', type: 'date' },
        { name: 'A', type: 'text' },
      ],
    });
  });
});

describe('createTask', () => {
  const taskConfig = httpLookupTaskSchema.parse({
    type: 'http-lookup',
    url: 'http://127.0.0.1:9/customers/{Customer ID}',
    headers: { authorization: 'Bearer {credential}' },
    credential: { env: 'TAX_API_TOKEN', secretName: 'batch-fanout/tax-due/api-token' },
    results: [{ column: 'Tax Due', path: 'taxDue', type: 'number' }],
  });

  it('given the credential variable is not set, throws an EnvironmentError naming it', () => {
    assert.throws(
      () => createTask(taskConfig, { env: {}, concurrency: 4 }),
      (err: unknown) =>
        err instanceof EnvironmentError && /TAX_API_TOKEN/.test(err.message) && /batch-fanout\/tax-due\/api-token/.test(err.message),
    );
  });

  it('given the credential variable, builds a task with the lookup output shape that can be closed', async () => {
    const task = createTask(taskConfig, { env: { TAX_API_TOKEN: 'x' }, concurrency: 4 });
    assert.deepEqual(task.output, describeTaskOutput(taskConfig));
    await task.close?.();
  });
});
