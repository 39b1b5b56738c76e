/**
 * End to end, through the emulators: a file uploaded to the intake folder becomes an emailed
 * result workbook. Each run starts S3, DynamoDB and SES emulators on loopback, the demo data
 * source, and runs every stage as a child process through the local job runner.
 */
import assert from 'node:assert/strict';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDemoDataSource, type DemoDataSource } from '../../local/sources/demo-data-source';
import { runLocal, type LocalRunOptions } from '../../local/local-run';
import { requireShape } from '../../runtime/config/schema';
import {
  customers,
  expectedOutcome,
  readSheets,
  taxConfig,
  TOKEN,
  writeCustomersCsv,
  writeCustomersXlsx,
  type Customer,
  type SheetRows,
} from './fixtures';

let dir: string;
let source: DemoDataSource;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-tax-'));
  source = await startDemoDataSource({ port: 0, token: TOKEN, latencyMs: [1, 5], transientFailureRate: 0.1, seed: 7 });
});
after(async () => {
  await source.close();
  await rm(dir, { recursive: true, force: true });
});

/** Writes `input` as CSV and runs the tax-due pipeline on it through the emulators. */
async function runCsv(
  name: string,
  input: Customer[],
  overrides: Parameters<typeof taxConfig>[1] = {},
  extra: Partial<LocalRunOptions> = {},
) {
  const file = join(dir, `${name}.csv`);
  await writeCustomersCsv(file, input);
  return runLocal({
    file,
    pipeline: 'tax-due',
    config: taxConfig(source.url, overrides),
    outDir: join(dir, `out-${name}`),
    ...extra,
    env: { TAX_API_TOKEN: TOKEN, ...extra.env },
  });
}

const RESULT_HEADER = [
  'Customer ID',
  'Name',
  'Tax Year',
  'Postcode',
  'Tax Due',
  'Currency',
  'Assessed On',
  'Tax Status',
  'Status',
  'Error',
  'Attempts',
];

/** Checks the Results sheet cell by cell against the data source's own answers, in input order. */
function checkResults(results: SheetRows, input: Customer[]): void {
  assert.deepEqual(results[0], RESULT_HEADER);
  assert.equal(results.length, input.length + 1, 'one result row per input row');
  input.forEach((c, n) => {
    const row = results[n + 1]!;
    const want = expectedOutcome(c);
    const where = `Results row ${n + 2} (customer ${c.id})`;
    assert.equal(row[0], c.id, `${where}: id kept as text`);
    assert.equal(row[1], c.name, `${where}: name`);
    assert.equal(row[3], c.postcode, `${where}: postcode`);
    assert.equal(row[8], want.status, `${where}: status`);
    if (want.status === 'done') {
      assert.equal(row[2], Number(c.year), `${where}: year as a number`);
      assert.deepEqual(row.slice(4, 8), want.fields, `${where}: looked-up fields`);
      assert.equal(row[9], null, `${where}: no error`);
      assert.ok(Number(row[10]) >= 1, `${where}: attempts`);
    } else {
      assert.match(String(row[9]), want.error!, `${where}: error`);
      assert.deepEqual(row.slice(4, 8), [null, null, null, null], `${where}: no result fields`);
    }
  });
}

describe('tax-due end to end', () => {
  it('turns an uploaded workbook into an emailed result workbook, checked cell by cell', async () => {
    const input = customers(120);
    input[10]!.year = 'twenty'; // an invalid cell: the item fails with the reason, nothing is dropped
    const file = join(dir, 'customers.xlsx');
    await writeCustomersXlsx(file, input);
    const out = join(dir, 'out-xlsx');
    const result = await runLocal({
      file,
      pipeline: 'tax-due',
      config: taxConfig(source.url, { chunkSize: 50 }),
      outDir: out,
      env: { TAX_API_TOKEN: TOKEN },
    });
    assert.equal(result.status, 'SUCCEEDED', result.error);
    assert.equal(result.iam.denied, 0, 'no call the synthesized IAM policies would deny');
    const failedWant = input.filter((c) => expectedOutcome(c).status === 'failed');
    assert.equal(result.items, 120);
    assert.equal(result.chunks, 3);
    assert.equal(result.failed, failedWant.length);
    assert.equal(result.succeeded, 120 - failedWant.length);

    const sheets = await readSheets(result.resultFile!);
    assert.deepEqual([...sheets.keys()], ['Results', 'Errors', 'Summary']);
    checkResults(sheets.get('Results')!, input);
    // The formula-looking name is text, not a formula.
    assert.equal(sheets.get('Results')![4]![1], input[3]!.name);

    const errors = sheets.get('Errors')!;
    assert.deepEqual(errors[0], ['Rows', 'Customer ID', 'Name', 'Tax Year', 'Postcode', 'Error', 'Attempts']);
    assert.deepEqual(
      errors.slice(1).map((r) => r[1]),
      failedWant.map((c) => c.id),
      'Errors sheet lists the failed items in input order',
    );
    const invalidRow = errors.find((r) => r[1] === input[10]!.id)!;
    assert.equal(invalidRow[0], '12', 'the spreadsheet row of the bad cell');
    assert.match(String(invalidRow[5]), /Tax Year/);

    const summary = new Map(sheets.get('Summary')!.map((r) => [r[0], r[1]]));
    assert.equal(summary.get('Run ID'), result.runId);
    assert.equal(summary.get('Pipeline'), 'tax-due');
    assert.equal(summary.get('Input file'), 'customers.xlsx');
    assert.equal(summary.get('Rows'), 120);
    assert.equal(summary.get('Succeeded'), result.succeeded);
    assert.equal(summary.get('Failed'), result.failed);
    assert.equal(summary.get('Chunks'), 3);
    assert.ok(Number(summary.get('Retried calls')) > 0, 'the flaky source caused retries');

    assert.equal(result.mails.length, 1);
    const mail = result.mails[0]!;
    assert.deepEqual(mail.to, ['tax-team@example.com']);
    assert.match(mail.subject, /tax-due: customers\.xlsx/);
    assert.match(mail.subject, new RegExp(`${result.succeeded.toLocaleString('en-US')} done, ${result.failed} failed`));
    assert.equal(mail.attachments.length, 1);
    assert.match(mail.attachments[0]!.filename, /^customers\..+\.xlsx$/);
    assert.ok(mail.attachments[0]!.content.equals(await readFile(result.resultFile!)), 'attachment is the result workbook');
    assert.match(await readFile(result.emailFile!, 'utf8'), /Subject: .*tax-due/);
    // Cleanup ran after consolidate: four jobs, all succeeded.
    assert.deepEqual(
      result.jobs.map((j) => `${j.request.stage}:${j.state}`),
      ['split:SUCCEEDED', 'fanout:SUCCEEDED', 'consolidate:SUCCEEDED', 'cleanup:SUCCEEDED'],
    );
    assert.ok(result.run?.cleanedAt, 'the run record is kept with its cleanup time');
  });

  it('reads a CSV upload the same way', async () => {
    const input = customers(40);
    const result = await runCsv('customers', input, { chunkSize: 1000 });
    assert.equal(result.status, 'SUCCEEDED', result.error);
    assert.equal(result.iam.denied, 0, 'no call the synthesized IAM policies would deny');
    assert.equal(result.chunks, 1);
    const fanout = result.jobs.find((j) => j.request.stage === 'fanout')!;
    assert.equal(fanout.request.arraySize, undefined, 'one chunk runs as a plain job');
    checkResults((await readSheets(result.resultFile!)).get('Results')!, input);
  });

  it('fans out over many chunks and keeps input order', async () => {
    const input = customers(100);
    const result = await runCsv('many', input, { chunkSize: 7 });
    assert.equal(result.status, 'SUCCEEDED', result.error);
    assert.equal(result.iam.denied, 0, 'no call the synthesized IAM policies would deny');
    assert.equal(result.chunks, 15);
    assert.equal(result.jobs.find((j) => j.request.stage === 'fanout')!.request.arraySize, 15);
    checkResults((await readSheets(result.resultFile!)).get('Results')!, input);
  });

  it('groups rows that share a key into one work item', async () => {
    const base = customers(12)
      .filter((c) => expectedOutcome(c).status === 'done')
      .slice(0, 4);
    // Rows of the same customer are not next to each other.
    const input: Customer[] = [0, 1, 2, 0, 3, 1, 0].map((k, n) => ({ ...base[k]!, name: `row ${n}` }));
    const result = await runCsv('grouped', input, {
      input: { ...requireShape(taxConfig(source.url).pipelines[0]!, 'items').input, groupBy: 'Customer ID' },
      chunkSize: 2,
    });
    assert.equal(result.status, 'SUCCEEDED', result.error);
    assert.equal(result.iam.denied, 0, 'no call the synthesized IAM policies would deny');
    assert.equal(result.items, 4);
    assert.equal(result.chunks, 2);
    const results = (await readSheets(result.resultFile!)).get('Results')!;
    // Items in order of first appearance, each item's rows in input order.
    assert.deepEqual(
      results.slice(1).map((r) => r[1]),
      ['row 0', 'row 3', 'row 6', 'row 1', 'row 5', 'row 2', 'row 4'],
    );
    for (const row of results.slice(1)) {
      const c = base.find((b) => b.id === row[0])!;
      assert.deepEqual(row.slice(4, 9), [...expectedOutcome(c).fields!, 'done']);
    }
  });

  it('sends a link instead of the workbook when it is too large to attach', async () => {
    const input = customers(30);
    const result = await runCsv('big', input, {}, { env: { FANOUT_MAIL_MAX_BYTES: '4096' } });
    assert.equal(result.status, 'SUCCEEDED', result.error);
    assert.equal(result.iam.denied, 0, 'no call the synthesized IAM policies would deny');
    assert.equal(result.mails.length, 1);
    const mail = result.mails[0]!;
    assert.equal(mail.attachments.length, 0);
    assert.match(mail.text ?? '', /too large to attach/);
    const key = result.run!.resultKey!;
    const url = /(http:\/\/\S+)/.exec(mail.text ?? '')?.[1] ?? '';
    assert.ok(decodeURIComponent(url).includes(key), `the link points at ${key}: ${url}`);
    assert.match(url, /X-Amz-Expires=604800/, 'valid for the configured 7 days');
    assert.match(mail.text ?? '', /the link works until \d{4}-\d\d-\d\d/);
  });

  it('starts nothing twice for a duplicated S3 event', async () => {
    const input = customers(20);
    const result = await runCsv('dup', input, {}, { duplicateEvent: true });
    assert.equal(result.status, 'SUCCEEDED', result.error);
    assert.equal(result.iam.denied, 0, 'no call the synthesized IAM policies would deny');
    assert.deepEqual(
      result.intake.map((o) => o.action),
      ['started', 'duplicate'],
    );
    assert.equal(result.jobs.length, 4, 'split, fan-out, consolidate and cleanup once each');
    assert.equal(result.mails.length, 1, 'one email');
  });
});
