/**
 * End to end, input fidelity (issue 9): files written by other programs go through a full local
 * run (emulators, every stage a child process) and every value comes back in the result workbook,
 * read with openpyxl, or its row says why.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { startDemoDataSource, type DemoDataSource } from '../../local/sources/demo-data-source';
import { runLocal } from '../../local/local-run';
import { PYTHON, readWithOpenpyxl } from '../unit/records/openpyxl';
import { customers, expectedOutcome, taxConfig, TOKEN } from './fixtures';

let dir: string;
let source: DemoDataSource;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-fidelity-'));
  source = await startDemoDataSource({ port: 0, token: TOKEN, latencyMs: [1, 3], transientFailureRate: 0 });
});
after(async () => {
  await source.close();
  await rm(dir, { recursive: true, force: true });
});

/** The run id in a result file name `<input>.<runId>.xlsx`. */
const runIdOf = (path: string) => /\.([^.]+)\.xlsx$/.exec(path)![1]!;

const run = (file: string) =>
  runLocal({
    file,
    pipeline: 'tax-due',
    config: taxConfig(source.url),
    outDir: join(dir, `out-${Math.random().toString(36).slice(2)}`),
    env: { TAX_API_TOKEN: TOKEN },
  });

describe('input fidelity end to end', () => {
  it('an openpyxl workbook: empty first sheet, title rows, formula text, padded ids, escapes, columns named like results', async () => {
    const people = customers(5);
    // given a workbook written by openpyxl: an empty "Cover" sheet, then the data under a title
    const file = join(dir, 'openpyxl.xlsx');
    const script = `
import sys, json, openpyxl
people = json.loads(sys.argv[2])
wb = openpyxl.Workbook()
wb.active.title = 'Cover'
ws = wb.create_sheet('Customers')
ws.append(['Tax run 2026'])
ws.append([])
ws.append(['Customer ID', 'Name', 'Tax Year', 'Postcode', 'Currency', 'Status'])
for i, p in enumerate(people):
    ws.append([p['id'], p['name'], p['year'], p['postcode'], 'GBP', 'open'])
ws['A5'] = int(people[1]['id'])          # the id 007919 stored as the number 7919 ...
ws['A5'].number_format = '000000'        # ... shown through a zero-padding format
ws['B6'] = 'Tab_x0009_Esc'                # an _xHHHH_ escape (a tab)
wb.save(sys.argv[1])
`;
    await promisify(execFile)(PYTHON, ['-c', script, file, JSON.stringify(people)]);
    // when it runs
    const r = await run(file);
    // then the run succeeds and the Results sheet holds every value as it was meant
    assert.equal(r.status, 'SUCCEEDED', r.error);
    const sheets = await readWithOpenpyxl(r.resultFile!);
    const results = sheets.Results!;
    assert.deepEqual(results[0], [
      'Customer ID',
      'Name',
      'Tax Year',
      'Postcode',
      'Currency',
      'Status',
      'Tax Due',
      'Currency (result)',
      'Assessed On',
      'Tax Status',
      'Status (result)',
      'Error',
      'Attempts',
    ]);
    assert.deepEqual(
      results.slice(1).map((row) => row.slice(0, 6)),
      [
        [people[0]!.id, 'Customer 0', people[0]!.year, null, 'GBP', 'open'],
        ['007919', 'Customer 1', people[1]!.year, people[1]!.postcode, 'GBP', 'open'],
        [people[2]!.id, 'Tab\tEsc', people[2]!.year, people[2]!.postcode, 'GBP', 'open'],
        [people[3]!.id, '=HYPERLINK("http://evil.example","click")', people[3]!.year, people[3]!.postcode, 'GBP', 'open'],
        [people[4]!.id, 'Customer 4', people[4]!.year, people[4]!.postcode, 'GBP', 'open'],
      ],
    );
    // each customer got the data source's own answer (the padded id too)
    results.slice(1).forEach((row, i) => {
      const want = expectedOutcome({ ...people[i]!, name: String(row[1]) });
      assert.equal(row[10], want.status, `row ${i + 4}`);
      if (want.fields) assert.equal(row[6], want.fields[0], `row ${i + 4} tax due`);
    });
    const notes = sheets.Summary!.filter((row) => row[0] === 'Input note').map((row) => row[1]);
    assert.deepEqual(notes, [
      'Read sheet "Customers": the sheet before it ("Cover") has no header row with the pipeline\'s columns.',
      'openpyxl.xlsx, sheet "Customers": the header is on row 3; the 1 non-empty row above it (row 1: "Tax run 2026") was not read as data.',
    ]);
  });

  it('a CSV with a Latin-1 row, a NUL, a long row and a long cell: those rows say why, the others come back exactly', async () => {
    // (openpyxl itself cuts cells at 32,767 characters, so the long cell comes in a CSV)
    const longPostcode = 'P'.repeat(40_000);
    const file = join(dir, 'mixed.csv');
    const lines = (s: string) => Buffer.from(s, 'utf8');
    await writeFile(
      file,
      Buffer.concat([
        lines('Customer ID,Name,Tax Year,Postcode\n000000,Zoë 李雷,2020,AB1\n'),
        Buffer.from('007919,M\xfcller,2021,AB2\n', 'latin1'),
        lines(`015838,N\u0000L,2022,AB3\n023757,Four,2023,AB4,extra\n031676,Ünal,2020,${longPostcode}\n`),
      ]),
    );
    const r = await run(file);
    assert.equal(r.status, 'SUCCEEDED', r.error);
    const results = (await readWithOpenpyxl(r.resultFile!)).Results!;
    assert.deepEqual(
      results.slice(1).map((row) => [row[0], row[1], row[3] === longPostcode.slice(0, 32_767) ? 'cut' : row[3], row[8], row[9]]),
      [
        ['000000', 'Zoë 李雷', 'AB1', 'done', null],
        [
          '007919',
          'M\ufffdller',
          'AB2',
          'failed',
          'invalid input: row 3, column "Name": byte 2 of the value is 0xFC, which is not UTF-8 (in Windows-1252 it would be "ü"); the row is not processed. Save the file as "CSV UTF-8" and upload it again',
        ],
        [
          '015838',
          'N\ufffdL',
          'AB3',
          'failed',
          'invalid input: row 4, column "Name": holds a NUL character (byte 0) at byte 2 of the value; the row is not processed. Remove it (it is usually left over from a binary export) and upload the file again',
        ],
        [
          '023757',
          'Four',
          'AB4',
          'failed',
          'invalid input: row 5: 5 values but the header has 4 columns, so the values may have shifted and the row is not processed (the extra values: "extra"). A value containing the delimiter must be quoted; fix the row and upload it again.',
        ],
        [
          '031676',
          'Ünal',
          'cut',
          'done',
          `column "Postcode" is cut to Excel's 32,767 characters (of 40,000); the whole value is in mixed.${runIdOf(r.resultFile!)}.results.long-cells.csv`,
        ],
      ],
    );
    const longCells = r.resultFile!.replace(/\.xlsx$/, '.results.long-cells.csv');
    assert.equal(await readFile(longCells, 'utf8'), `\ufeffRow,Column,Characters,Value\r\n6,Postcode,40000,${longPostcode}\r\n`);
  });
});
