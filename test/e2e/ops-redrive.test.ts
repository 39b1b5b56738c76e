/**
 * `fanout redrive` on a kept local run whose data source failed some items: the redrive runs only
 * those items again (the source now answers them), as a new run linked to the first, and mails one
 * workbook with the first run's successes and the new outcomes in input order, checked cell by
 * cell with exceljs; its Summary names the first run. Status after the run, and a redrive with
 * nothing to redo (it says so and starts nothing), are checked on the same kept folder.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { taxDueFor } from '../../local/sources/demo-data-source';
import type { RunDetail, RunSummary } from '../../bin/ops/runs';
import { customers, readSheets, taxConfig, TOKEN, writeCustomersCsv } from './fixtures';
import { fanoutInProcess, fanoutProcess, jsonOf } from './ops-helpers';
import { startOpsSource, type OpsSource } from './ops-source';

let dir: string;
let source: OpsSource;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-redrive-'));
  source = await startOpsSource({ latencyMs: 5 });
});
after(async () => {
  await source.close();
  await rm(dir, { recursive: true, force: true });
});

interface LocalJson {
  runId: string;
  status: string;
  items: number;
  succeeded: number;
  failed: number;
  redriveOf: string | null;
  resultFile: string | null;
  iam: { calls: number; denied: number };
}

describe('redrive of a kept local run', () => {
  it('runs the failed items again and mails one merged workbook in input order', async () => {
    const keep = join(dir, 'kept');
    const file = join(dir, 'customers.csv');
    const people = customers(120).map((c, k) => ({ ...c, id: String(100000 + k * 37), year: 2021 }));
    // An invalid year on one row: an input failure, which a redrive does not call again.
    people[7] = { ...people[7]!, year: 'soon' as unknown as number };
    await writeCustomersCsv(file, people);
    const failing = people.filter((_, k) => k % 9 === 4).map((p) => p.id);
    for (const id of failing) source.failIds.add(id);
    const config = taxConfig(source.url, { chunkSize: 50, concurrency: 8 });
    await writeFile(join(dir, 'pipelines.json'), JSON.stringify(config));

    // The first run, kept, from the command line as a person runs it.
    const first = await fanoutProcess(
      [
        'submit',
        file,
        '--pipeline',
        'tax-due',
        '--config',
        join(dir, 'pipelines.json'),
        '--local',
        keep,
        '--json',
        '--out',
        join(dir, 'out1'),
      ],
      dir,
      { TAX_API_TOKEN: TOKEN },
    );
    assert.equal(first.code, 0, first.stderr);
    const run1 = jsonOf<LocalJson>(first);
    assert.equal(run1.status, 'SUCCEEDED');
    assert.equal(run1.iam.denied, 0, 'no call the synthesized IAM policies would deny');
    assert.equal(run1.failed, failing.length + 1);

    // Status after the run.
    const listed = jsonOf<{ runs: RunSummary[] }>(await fanoutInProcess(['status', '--local', keep, '--json']));
    assert.deepEqual(
      listed.runs.map((r) => [r.runId, r.status, r.items, r.succeeded, r.failed]),
      [[run1.runId, 'SUCCEEDED', 120, 120 - failing.length - 1, failing.length + 1]],
    );
    const ended = jsonOf<RunDetail>(await fanoutInProcess(['status', run1.runId, '--local', keep, '--json']));
    assert.deepEqual(ended.stages, { split: 'done', fanout: 'done', consolidate: 'done', cleanup: 'done' });

    // The source is fixed; the redrive calls only the failed items.
    source.failing = false;
    const requestsBefore = source.requests;
    const redriven = await fanoutProcess(['redrive', run1.runId, '--local', keep, '--json', '--out', join(dir, 'out2')], dir, {
      TAX_API_TOKEN: TOKEN,
    });
    assert.equal(redriven.code, 0, redriven.stderr);
    const run2 = jsonOf<LocalJson>(redriven);
    assert.equal(run2.status, 'SUCCEEDED');
    assert.equal(run2.iam.denied, 0, "no call the synthesized IAM policies would deny (consolidate reads the first run's outcomes)");
    assert.equal(run2.redriveOf, run1.runId);
    assert.notEqual(run2.runId, run1.runId);
    assert.equal(source.requests - requestsBefore, failing.length, 'only the failed items were called again');
    assert.match(redriven.stderr, /1 item\(s\) failed on their own input cells and are not run again/);

    // One workbook: every row in input order, the invalid year still failed, everything else done.
    const sheets = await readSheets(run2.resultFile!);
    const rows = sheets.get('Results')!;
    const header = rows[0] as string[];
    assert.deepEqual(header, [
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
    ]);
    assert.equal(rows.length, 1 + people.length);
    for (const [k, p] of people.entries()) {
      const row = rows[k + 1]!;
      const where = `Results row ${k + 2}`;
      assert.equal(row[0], p.id, where);
      assert.equal(row[1], p.name, where);
      if (k === 7) {
        assert.equal(row[2], 'soon', where);
        assert.equal(row[8], 'failed', where);
        assert.match(String(row[9]), /invalid input/, where);
        continue;
      }
      const a = taxDueFor(p.id, 2021);
      assert.equal(row[2], 2021, where);
      assert.equal(row[3], p.postcode, where);
      assert.deepEqual([row[4], row[5], row[6], row[7]], [a.taxDue, a.currency, a.assessedOn, a.status], where);
      assert.equal(row[8], 'done', where);
      assert.equal(row[9], null, where);
      assert.equal(row[10], 1, where);
    }
    const summary = new Map((sheets.get('Summary') ?? []).map((r) => [r[0], r[1]]));
    assert.equal(summary.get('Run ID'), run2.runId);
    assert.match(String(summary.get('Redrive of')), new RegExp(`run ${run1.runId}`));
    assert.equal(summary.get('Succeeded'), 119);
    assert.equal(summary.get('Failed'), 1);
    const errors = sheets.get('Errors')!;
    assert.equal(errors.length, 2, 'only the invalid row is an error');

    // The redrive's status, and a redrive with nothing to redo.
    const list2 = jsonOf<{ runs: RunSummary[] }>(await fanoutInProcess(['status', '--local', keep, '--json']));
    assert.deepEqual(
      list2.runs.map((r) => [r.runId, r.redriveOf]),
      [
        [run2.runId, run1.runId],
        [run1.runId, null],
      ],
    );
    const nothing = await fanoutInProcess(['redrive', run2.runId, '--local', keep]);
    assert.equal(nothing.code, 0, nothing.stderr);
    assert.match(
      nothing.stdout,
      /has nothing to redo: no item failed or was left unprocessed; 1 item\(s\) failed on their own input cells/,
    );
    const list3 = jsonOf<{ runs: RunSummary[] }>(await fanoutInProcess(['status', '--local', keep, '--json']));
    assert.equal(list3.runs.length, 2, 'nothing was started');
    const unknown = await fanoutInProcess(['redrive', 'no-such-run', '--local', keep]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /no run no-such-run in local run kept in/);
  });
});
