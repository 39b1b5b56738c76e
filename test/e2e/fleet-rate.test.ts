/**
 * A whole local run against a data source of fixed capacity (local/sources/capacity-source.ts:
 * 429 + Retry-After above 60 requests/s, 8% 503s, resets, 3-second stalls), with the fleet's
 * rate at 90% of it and the fan-out children coming and going (6 chunks, 3 at once). The
 * fleet-wide rate holds whatever runs at once: the source's own per-second counter never passes
 * its cap by more than 5% (after the first second, the documented exception), and no item the
 * source knows ends failed. Counted by the source's clock; nothing here depends on how long the
 * run takes.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runLocal } from '../../local/local-run';
import { startCapacitySource, type CapacitySource } from '../../local/sources/capacity-source';
import { isKnownCustomer } from '../../local/sources/demo-data-source';
import { customers, readSheets, taxConfig, TOKEN, writeCustomersCsv } from './fixtures';

const CAPACITY = 60;

let dir: string;
let source: CapacitySource;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-fleet-rate-'));
  source = await startCapacitySource({ capacityPerSecond: CAPACITY, token: TOKEN });
});
after(async () => {
  await source.close();
  await rm(dir, { recursive: true, force: true });
});

describe('a fleet-wide rate limit', () => {
  it('holds at the source as children come and go, and no known item fails', async () => {
    // given 600 customers in 6 chunks, 3 children at once, the fleet's rate at 90% of the capacity
    const input = customers(600);
    const file = join(dir, 'customers.csv');
    await writeCustomersCsv(file, input);

    // when
    const result = await runLocal({
      file,
      pipeline: 'tax-due',
      config: taxConfig(source.url, {
        chunkSize: 100,
        concurrency: 'auto',
        rateLimitPerSecond: 0.9 * CAPACITY,
        retry: { maxAttempts: 6, baseDelayMs: 5, maxDelayMs: 50 },
      }),
      outDir: join(dir, 'out'),
      env: { TAX_API_TOKEN: TOKEN },
      maxParallel: 3,
    });

    // then every known customer was looked up
    assert.equal(result.status, 'SUCCEEDED', result.error);
    const rows = (await readSheets(result.resultFile!)).get('Results')!.slice(1);
    assert.equal(rows.length, 600);
    const knownFailed = rows.filter((r) => r[8] === 'failed' && isKnownCustomer(String(r[0])));
    assert.deepEqual(
      knownFailed.map((r) => `${String(r[0])}: ${String(r[9])}`),
      [],
      'no known customer failed',
    );
    assert.equal(result.failed, input.filter((c) => !isKnownCustomer(c.id)).length, 'only the unknown customers failed');

    // and the source never counted more than its cap + 5% in a second, after the first
    const { perSecond, maxSliding } = source.windows();
    const fanout = result.jobs.find((j) => j.request.stage === 'fanout')!;
    assert.ok(fanout.attempts.length >= 6, 'six children ran, three at a time');
    assert.ok(perSecond.length > 3, `the run spanned several seconds at the source (${perSecond.length})`);
    const over = perSecond.map((n, s) => ({ second: s + 1, n })).filter(({ n }) => n > CAPACITY * 1.05);
    assert.deepEqual(over, [], `per-second counts ${perSecond.join(' ')} (max in a sliding second ${maxSliding})`);
  });
});
