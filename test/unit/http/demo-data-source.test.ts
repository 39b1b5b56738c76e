import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { DEMO_TOKEN, isKnownCustomer, startDemoDataSource, taxDueFor, type DemoDataSource } from '../../../local/sources/demo-data-source';
import { customerRows, customersCsv, specialRows } from '../../../examples/tax-due/make-customers';
import { HttpClient } from '../../../batch-jobs/http/client';

const auth = { authorization: `Bearer ${DEMO_TOKEN}` };

describe('demo data source', () => {
  let source: DemoDataSource;
  const client = new HttpClient({ connections: 2 });
  before(async () => {
    source = await startDemoDataSource({ latencyMs: [0, 1], transientFailureRate: 0 });
  });
  after(async () => {
    await client.close();
    await source.close();
  });

  const get = (path: string, headers: Record<string, string> = auth) =>
    client.request({ method: 'GET', url: `${source.url}${path}`, headers, timeoutMs: 2_000 });

  it('given a known customer and year, answers the same tax due every time', async () => {
    const first = await get('/customers/000123/tax-due?year=2023');
    const second = await get('/customers/000123/tax-due?year=2023');
    assert.equal(first.status, 200);
    assert.equal(first.body, second.body);
    assert.deepEqual(JSON.parse(first.body), taxDueFor('000123', 2023));
  });

  it('given an answer, carries the fields the tax-due pipeline maps', () => {
    const answer = taxDueFor('004215', 2021);
    assert.equal(typeof answer.taxDue, 'number');
    assert.equal(answer.currency, 'GBP');
    assert.match(answer.assessedOn, /^2022-0[1-6]-\d{2}$/);
    assert.ok(['assessed', 'paid', 'overdue', 'under review'].includes(answer.status));
  });

  it('given an unknown customer, answers 404', async () => {
    const res = await get('/customers/912345/tax-due?year=2023');
    assert.equal(res.status, 404);
    assert.equal(isKnownCustomer('912345'), false);
  });

  it('given a missing or wrong token, answers 401', async () => {
    assert.equal((await get('/customers/000123/tax-due?year=2023', {})).status, 401);
    assert.equal((await get('/customers/000123/tax-due?year=2023', { authorization: 'Bearer nope' })).status, 401);
  });

  it('given a year outside 2000-2030, answers 400', async () => {
    assert.equal((await get('/customers/000123/tax-due?year=1999')).status, 400);
  });

  it('counts what it answered', () => {
    const stats = source.stats();
    assert.ok(stats.ok >= 2 && stats.notFound >= 1 && stats.unauthorized >= 2 && stats.badRequest >= 1);
  });
});

describe('demo data source failures', () => {
  async function outcomes(seed: number): Promise<string[]> {
    const source = await startDemoDataSource({ latencyMs: [0, 0], transientFailureRate: 0.5, seed });
    const client = new HttpClient({ connections: 1 });
    const seen: string[] = [];
    try {
      for (let i = 0; i < 40; i++) {
        try {
          const res = await client.request({
            method: 'GET',
            url: `${source.url}/customers/000123/tax-due?year=2023`,
            headers: auth,
            timeoutMs: 2_000,
          });
          seen.push(res.status === 429 ? `429 retry-after ${res.headers['retry-after']}` : String(res.status));
        } catch {
          seen.push('reset');
        }
      }
    } finally {
      await client.close();
      await source.close();
    }
    return seen;
  }

  it('given a seed, fails the same requests the same way', async () => {
    const a = await outcomes(7);
    const b = await outcomes(7);
    assert.deepEqual(a, b);
  });

  it('given a failure rate, answers 503s, 429s with Retry-After 1 and resets', async () => {
    const seen = new Set(await outcomes(7));
    assert.deepEqual([...seen].sort(), ['200', '429 retry-after 1', '503', 'reset']);
  });
});

describe('demo customers', () => {
  it('given the generator, makes the same rows every time', () => {
    assert.deepEqual(customerRows(300), customerRows(300));
  });

  it('given the committed CSV, matches the generator (run make-customers.ts after changing it)', () => {
    const committed = readFileSync(new URL('../../../examples/tax-due/customers.csv', import.meta.url), 'utf8');
    assert.equal(committed, `${customersCsv(customerRows(200, 7))}\r\n`);
  });

  it('given 2,400 rows, holds the special cases on their rows', () => {
    const rows = customerRows(2_400);
    const special = specialRows(2_400);
    assert.equal(special.unknownIds.filter((r) => !isKnownCustomer(rows[r][0])).length, 4);
    assert.deepEqual(
      special.invalidYears.map((r) => rows[r][2]),
      ['20x3', 'last year', '2O22'],
    );
    assert.ok(rows[special.formulaName][1].startsWith('='));
    const known = rows.filter((r) => isKnownCustomer(r[0].trim())).length;
    assert.equal(known, 2_400 - 4);
  });
});
