/**
 * End to end, the failures a person can act on: each ends the run FAILED with a message naming
 * the file, sheet, row or column and what to do, sends a failure email, and reports nothing as
 * succeeded.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDemoDataSource, type DemoDataSource } from '../../local/sources/demo-data-source';
import { runLocal, type LocalRunResult } from '../../local/local-run';
import { customers, taxConfig, TOKEN, writeCustomersCsv, writeCustomersXlsx } from './fixtures';

let dir: string;
let source: DemoDataSource;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-fail-'));
  source = await startDemoDataSource({ port: 0, token: TOKEN, latencyMs: [1, 3], transientFailureRate: 0 });
});
after(async () => {
  await source.close();
  await rm(dir, { recursive: true, force: true });
});

async function run(file: string, extra: { intakeKey?: string } = {}): Promise<LocalRunResult> {
  return runLocal({
    file,
    pipeline: 'tax-due',
    config: taxConfig(source.url),
    outDir: join(dir, `out-${Math.random().toString(36).slice(2)}`),
    env: { TAX_API_TOKEN: TOKEN },
    ...extra,
  });
}

function assertFailedRun(r: LocalRunResult, reason: RegExp, to = ['tax-team@example.com']): void {
  assert.equal(r.status, 'FAILED');
  assert.match(r.error ?? '', reason);
  assert.equal(r.succeeded, 0, 'nothing reported as succeeded');
  assert.equal(r.resultFile, undefined, 'no result workbook');
  assert.equal(r.mails.length, 1, 'one failure email');
  const mail = r.mails[0]!;
  assert.deepEqual(mail.to, to);
  assert.match(mail.subject, /FAILED/);
}

describe('failures end to end', () => {
  it('a missing required column names the column and the file', async () => {
    const file = join(dir, 'no-year.csv');
    await writeCustomersCsv(file, customers(5), ['Customer ID', 'Name', 'Year of tax', 'Postcode']);
    const r = await run(file);
    assertFailedRun(r, /Tax Year/);
    assert.match(r.error!, /no-year\.csv/);
    const split = r.jobs.find((j) => j.request.stage === 'split')!;
    assert.equal(split.attempts.length, 1, 'bad input is not retried');
    assert.ok(
      r.jobs.some((j) => j.request.stage === 'cleanup' && j.state === 'SUCCEEDED'),
      'cleanup ran',
    );
    assert.ok(!r.jobs.some((j) => j.request.stage === 'fanout'), 'no fan-out started');
  });

  it('an empty file says it is empty', async () => {
    const file = join(dir, 'empty.csv');
    await writeFile(file, '');
    assertFailedRun(await run(file), /empty/i);
  });

  it('a workbook with a header and no rows says so', async () => {
    const file = join(dir, 'header-only.xlsx');
    await writeCustomersXlsx(file, []);
    assertFailedRun(await run(file), /no (data )?rows/i);
  });

  it('a file that is not what its extension says is named and explained', async () => {
    const file = join(dir, 'fake.xlsx');
    await writeFile(file, 'Customer ID,Name,Tax Year\n000123,A,2020\n');
    assertFailedRun(await run(file), /fake\.xlsx/);
  });

  it('an old .xls workbook is refused with what to do', async () => {
    const file = join(dir, 'old.xls');
    await writeFile(file, Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]));
    const r = await run(file);
    assertFailedRun(r, /Save As.*\.xlsx/);
    assert.equal(r.jobs.length, 0, 'no job started');
  });

  it('an upload to an unknown pipeline folder fails and tells the operators', async () => {
    const file = join(dir, 'stray.csv');
    await writeCustomersCsv(file, customers(3));
    const r = await run(file, { intakeKey: 'intake/no-such-pipeline/stray.csv' });
    assertFailedRun(r, /no pipeline named "no-such-pipeline".*intake\/tax-due\//, ['ops@example.com']);
    assert.equal(r.jobs.length, 0, 'no job started');
  });
});
