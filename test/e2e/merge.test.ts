/**
 * The merge pipeline end to end through the local run (emulators, the intake handler, the merge
 * stage as a child process, cleanup): the example checked row for row against the data scientist's
 * own script run by pandas, the email (counts, first rows, the workbook read back with exceljs),
 * bad input with file, row and column, an extra file ignored and named, a batch waiting for an input.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import ExcelJS from 'exceljs';
import { loadConfigFile, requireShape } from '../../runtime/config/schema';
import { datasetUploads } from '../../local/merge-run';
import { PROJECT_ROOT, runLocal } from '../../local/local-run';
import { readDelimited } from '../unit/engines/merge-reference';
import type { RunDetail } from '../../bin/ops/runs';
import { fanoutInProcess } from './ops-helpers';

const EXAMPLE = join(PROJECT_ROOT, 'examples', 'merge');
const config = loadConfigFile(join(EXAMPLE, 'pipelines.json'));
const pipeline = requireShape(config.pipelines[0]!, 'dataset');

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-merge-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** analysis.py's own logic (cross product, keep ID_x == ID_y, drop ID_y) in pandas, with ids read as text and empty ids never matching. */
function scriptReference(x: string, y: string): string[][] {
  const py = [
    'import sys, pandas as pd',
    'x = pd.read_csv(sys.argv[1], sep="\\t", dtype=str, keep_default_na=False)',
    'y = pd.read_csv(sys.argv[2], sep="\\t", dtype=str, keep_default_na=False)',
    'res = x.merge(y, how="cross")',
    'out = res[(res["ID_x"] == res["ID_y"]) & (res["ID_x"] != "")].drop(columns="ID_y")',
    'print(out.to_csv(index=False), end="")',
  ].join('\n');
  const r = spawnSync('/usr/bin/python3', ['-c', py, x, y], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const [header, ...rows] = r.stdout
    .trimEnd()
    .split('\n')
    .map((l) => l.split(','));
  assert.deepEqual(header, ['ID_x', 'value_x', 'value_y']);
  return rows;
}

const files = (...names: string[]) => names.map((n) => (n.includes('/') ? n : join(EXAMPLE, n)));

describe('merge pipeline, local run', () => {
  it('reproduces analysis.py row for row, emails counts, the first rows and the workbook', async () => {
    const batch = 'b-example';
    const r = await runLocal({
      file: '',
      uploads: datasetUploads(pipeline, files('x_list.txt', 'y_list.txt'), batch),
      pipeline: pipeline.name,
      config,
      outDir: join(dir, 'example'),
    });
    assert.equal(r.status, 'SUCCEEDED', r.error);
    assert.equal(r.iam.denied, 0, 'no call the synthesized IAM policies would deny');
    assert.ok(r.iam.calls > 0, 'the calls were checked');
    assert.equal(r.run?.resultKey, `results/merge-xy/${batch}/merged.csv`);
    const out = await readDelimited(r.resultFile!);
    assert.deepEqual(out.header, ['ID_x', 'value_x', 'value_y']);
    assert.deepEqual(out.rows, scriptReference(join(EXAMPLE, 'x_list.txt'), join(EXAMPLE, 'y_list.txt')));
    assert.deepEqual(r.run?.dataset?.counts, {
      leftRows: 8,
      rightRows: 8,
      outputRows: 7,
      leftUnmatched: 3,
      rightUnmatched: 3,
      keysDuplicatedBothSides: 1,
      leftEmptyKeys: 1,
      rightEmptyKeys: 1,
    });
    // the email: counts, the rows as a table, the link, the workbook
    assert.equal(r.mails.length, 1);
    const mail = r.mails[0]!;
    assert.equal(mail.subject, `[batch-fanout] merge-xy: batch ${batch} merged - 7 rows`);
    assert.match(mail.text ?? '', /x_list\.txt \(left\): {2}8 rows/);
    assert.match(mail.text ?? '', /Output rows: 7 \(inner join\)/);
    assert.match(mail.text ?? '', /Left rows without a match: 3, of which 1 with an empty key/);
    assert.match(mail.text ?? '', /Keys duplicated on both sides: 1 \(each gives every pair of its rows\)/);
    assert.match(mail.text ?? '', /The first 7 \(all\) rows of 7:\n {2}ID_x +\| value_x +\| value_y/);
    assert.match(mail.text ?? '', /Download the output here: http/);
    assert.match(mail.html ?? '', /<th[^>]*>ID_x<\/th>/);
    const xlsx = mail.attachments.find((a) => a.filename === 'merged.xlsx');
    assert.ok(xlsx, 'the workbook is attached');
    const wb = new ExcelJS.Workbook();
    await wb.xlsx.load(xlsx.content as unknown as ArrayBuffer);
    const sheet = wb.getWorksheet('Results')!;
    const rows: string[][] = [];
    sheet.eachRow((row) => rows.push((row.values as unknown[]).slice(1).map((v) => String(v ?? ''))));
    assert.deepEqual(rows, [out.header, ...out.rows]);
    assert.equal(typeof sheet.getCell('A2').value, 'string', 'ids stay text (0042 keeps its zeros)');
  });

  it('fails with the file, row and column of a missing key column, and names an extra file it ignored', async () => {
    const x = join(dir, 'x_list.txt');
    await writeFile(x, 'Id2\tvalue\n1\ta\n');
    const extra = join(dir, 'notes.txt');
    await writeFile(extra, 'hello');
    const batch = 'b-bad';
    const uploads = [
      ...datasetUploads(pipeline, [x, join(EXAMPLE, 'y_list.txt')], batch),
      { key: `intake/merge-xy/${batch}/notes.txt`, file: extra },
    ];
    // the extra file arrives first: it is ignored, the batch waits for both inputs
    uploads.unshift(uploads.pop()!);
    const r = await runLocal({ file: '', uploads, pipeline: pipeline.name, config, outDir: join(dir, 'bad') });
    assert.equal(r.status, 'FAILED');
    assert.equal(r.iam.denied, 0, 'the input failed the run, not IAM');
    assert.match(
      r.error ?? '',
      /x_list\.txt \(left input\): key column "ID" is missing; row 1 \(the header row\) has 2 columns: "Id2", "value"/,
    );
    assert.deepEqual(r.run?.dataset?.ignored, [`intake/merge-xy/${batch}/notes.txt`]);
    const mail = r.mails.at(-1)!;
    assert.match(mail.subject, /FAILED merge-xy/);
    assert.match(mail.text ?? '', /key column "ID" is missing/);
    assert.match(mail.text ?? '', /notes\.txt/);
    assert.equal(r.jobs.find((j) => j.request.stage === 'merge')?.attempts.length, 1, 'bad input is not retried');
  });

  it('a batch with one input waits, says which input it lacks (fanout status), and fails at its deadline (fanout sweep)', async () => {
    const keep = join(dir, 'waiting-kept');
    const r = await runLocal({
      file: '',
      uploads: datasetUploads(pipeline, files('x_list.txt'), 'b-waiting'),
      pipeline: pipeline.name,
      config,
      outDir: join(dir, 'waiting'),
      keepDir: keep,
    });
    assert.equal(r.status, 'WAITING_FOR_INPUTS');
    assert.equal(r.iam.denied, 0, r.error);
    assert.deepEqual(r.run?.dataset?.waitingFor, ['right input y_list.txt']);
    assert.equal(r.jobs.length, 0, 'no job runs before the last input');
    assert.equal(r.mails.length, 0);
    const deadline = r.run?.dataset?.deadlineAt ?? 0;
    assert.equal(deadline, (r.run?.createdAt ?? 0) + 24 * 3_600_000, 'the default deadline: 24 hours after the first file');

    // fanout status lists the waiting batch with what it lacks and when it fails
    const listed = await fanoutInProcess(['status', '--local', keep]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(
      listed.stdout,
      new RegExp(`${r.runId} waiting for right input y_list\\.txt \\(fails at ${new Date(deadline).toISOString().replace(/\.\d+Z$/, 'Z')}`),
    );
    const detail = JSON.parse((await fanoutInProcess(['status', r.runId, '--local', keep, '--json'])).stdout) as RunDetail;
    assert.deepEqual(
      [detail.status, detail.waitingFor, detail.deadline],
      ['WAITING_FOR_INPUTS', ['right input y_list.txt'], new Date(deadline).toISOString()],
    );

    // fanout sweep before the deadline leaves it; at the deadline it fails it, naming the input
    const early = await fanoutInProcess([
      'sweep',
      '--local',
      keep,
      '--config',
      join(EXAMPLE, 'pipelines.json'),
      '--now',
      new Date(deadline - 60_000).toISOString(),
    ]);
    assert.equal(early.code, 0, early.stderr);
    assert.match(early.stdout, new RegExp(`${r.runId}: waiting, fails at`));
    const due = await fanoutInProcess([
      'sweep',
      '--local',
      keep,
      '--config',
      join(EXAMPLE, 'pipelines.json'),
      '--now',
      new Date(deadline).toISOString(),
    ]);
    assert.equal(due.code, 0, due.stderr);
    assert.match(due.stdout, new RegExp(`${r.runId}: FAILED, still lacking right input y_list\\.txt`));
    const failed = JSON.parse((await fanoutInProcess(['status', r.runId, '--local', keep, '--json'])).stdout) as RunDetail;
    assert.equal(failed.status, 'FAILED');
    assert.match(failed.error ?? '', /did not get all its inputs within 24 hours .*still lacks right input y_list\.txt/s);
    assert.equal(failed.waitingFor, null);
  });
});

describe('merge pipeline, CLI', () => {
  it('`fanout run x y --pipeline merge-xy --json` prints the usual line with the merged output', async () => {
    const out = join(dir, 'cli');
    const r = spawnSync(
      process.execPath,
      [
        join(PROJECT_ROOT, 'bin', 'fanout.mjs'),
        'run',
        ...files('x_list.txt', 'y_list.txt'),
        '--pipeline',
        'merge-xy',
        '--config',
        join(EXAMPLE, 'pipelines.json'),
        '--out',
        out,
        '--json',
      ],
      {
        encoding: 'utf8',
        cwd: dir,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const line = JSON.parse(r.stdout.trim()) as Record<string, unknown>;
    assert.equal(line.status, 'SUCCEEDED');
    assert.equal(line.resultFile, join(out, 'merged.csv'));
    assert.equal((await readFile(join(out, 'merged.csv'), 'utf8')).split('\n')[0], 'ID_x,value_x,value_y');
  });
});
