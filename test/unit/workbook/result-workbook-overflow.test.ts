import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import ExcelJS from 'exceljs';
import type { Cell } from '../../../runtime/model';
import {
  createResultWorkbook,
  type ResultWorkbook,
  type ResultWorkbookOptions,
  type WorkbookColumn,
} from '../../../batch-jobs/workbook/result-workbook';
import { tempDir } from './temp-dirs';

const RESULTS: WorkbookColumn[] = [
  { name: 'id', type: 'text' },
  { name: 'amount', type: 'number' },
  { name: 'due', type: 'date' },
  { name: 'note', type: 'text' },
];
const ERRORS: WorkbookColumn[] = [
  { name: 'id', type: 'text' },
  { name: 'error', type: 'text' },
];

/** Row limit of the tests' workbooks: a header and 4 data rows. */
const LIMIT = 5;

/** A workbook `run` in a new temp dir with the tests' columns and row limit. */
async function openWorkbook(opts: Partial<ResultWorkbookOptions> = {}): Promise<{ dir: string; wb: ResultWorkbook }> {
  const dir = tempDir();
  const wb = await createResultWorkbook({ dir, baseName: 'run', results: RESULTS, errors: ERRORS, maxRowsPerSheet: LIMIT, ...opts });
  return { dir, wb };
}

function resultRow(i: number): Cell[] {
  return [String(i).padStart(5, '0'), -i - 0.5, '2024-03-01', i === 5 ? '=1+2' : `note, "${i}"`];
}

async function readBook(path: string): Promise<ExcelJS.Workbook> {
  const book = new ExcelJS.Workbook();
  await book.xlsx.readFile(path);
  return book;
}

function csvLines(path: string): string[] {
  const text = readFileSync(path, 'utf8');
  assert.ok(text.startsWith('\ufeff'), 'starts with a UTF-8 BOM');
  assert.ok(text.endsWith('\r\n'), 'lines end with CRLF');
  return text.slice(1, -2).split('\r\n');
}

describe('result workbook past the row limit', () => {
  it('keeps the first rows in the sheet and writes every row to CSV alongside, when not told to expect it', async () => {
    const { dir, wb } = await openWorkbook();
    for (let i = 0; i < 7; i++) await wb.addResult(resultRow(i));
    await wb.addError(['00001', 'HTTP 404']);
    const files = await wb.finish([['Run', 'r-1']]);

    assert.deepEqual(files.truncatedSheets, ['Results']);
    assert.deepEqual(files.csvPaths, [join(dir, 'run.results.csv')]);
    assert.deepEqual(files.rows, { results: 7, errors: 1, items: 0 });
    const book = await readBook(files.workbookPath);
    const results = book.getWorksheet('Results');
    assert.ok(results);
    assert.equal(results.rowCount, LIMIT);
    assert.equal(results.getCell('A5').value, '00003');
    assert.equal(results.autoFilter, 'A1:D5');
    // The Errors sheet fitted: its precautionary CSV copy is gone.
    assert.deepEqual(readdirSync(dir).sort(), ['run.results.csv', 'run.xlsx']);
  });

  it('writes all rows to the CSV copy, neutralising formula-looking text and keeping numbers and dates', async () => {
    const { wb } = await openWorkbook();
    for (let i = 0; i < 7; i++) await wb.addResult(resultRow(i));
    const files = await wb.finish([]);

    const lines = csvLines(files.csvPaths[0]);
    assert.equal(lines.length, 8);
    assert.equal(lines[0], 'id,amount,due,note');
    assert.equal(lines[1], '00000,-0.5,2024-03-01,"note, ""0"""');
    assert.equal(lines[6], "00005,-5.5,2024-03-01,'=1+2");
    assert.equal(lines[7], '00006,-6.5,2024-03-01,"note, ""6"""');
  });

  it('notes the truncated sheet and its CSV file in the Summary', async () => {
    const { wb } = await openWorkbook();
    for (let i = 0; i < 6; i++) await wb.addResult(resultRow(i));
    const files = await wb.finish([['Run', 'r-1']]);

    const summary = (await readBook(files.workbookPath)).getWorksheet('Summary');
    assert.ok(summary);
    assert.equal(summary.getCell('A2').value, 'Results sheet');
    assert.equal(summary.getCell('B2').value, 'shows the first 4 of 6 rows; all rows are in run.results.csv');
  });

  it('writes the CSV from the start for a sheet expected past the limit', async () => {
    const { dir, wb } = await openWorkbook({
      itemSheet: { name: 'Trips', columns: [{ name: 'trip', type: 'text' }] },
      expectedRows: { results: 2, errors: 10, items: 1 },
    });
    await wb.addResult(resultRow(0));
    for (let i = 0; i < 10; i++) await wb.addError([String(i), `boom ${i}`]);
    await wb.addItem(['t1']);
    const files = await wb.finish([]);

    assert.deepEqual(files.truncatedSheets, ['Errors']);
    assert.deepEqual(files.csvPaths, [join(dir, 'run.errors.csv')]);
    assert.equal(csvLines(files.csvPaths[0]).length, 11);
    assert.equal((await readBook(files.workbookPath)).getWorksheet('Errors')?.rowCount, LIMIT);
    assert.deepEqual(readdirSync(dir).sort(), ['run.errors.csv', 'run.xlsx']);
  });

  it('names the CSV after a truncated item sheet', async () => {
    const { dir, wb } = await openWorkbook({ itemSheet: { name: 'GPS Trips', columns: [{ name: 'trip', type: 'text' }] } });
    for (let i = 0; i < 5; i++) await wb.addItem([`t${i}`]);
    const files = await wb.finish([]);

    assert.deepEqual(files.truncatedSheets, ['GPS Trips']);
    assert.deepEqual(files.csvPaths, [join(dir, 'run.gps-trips.csv')]);
  });

  it('refuses a row past the limit of a sheet whose hint said it would fit, rather than lose it', async () => {
    const { dir, wb } = await openWorkbook({ expectedRows: { results: 3 } });
    for (let i = 0; i < 4; i++) await wb.addResult(resultRow(i));
    assert.throws(() => wb.addResult(resultRow(4)), RangeError);
    await wb.abort();
    assert.equal(existsSync(join(dir, 'run.xlsx')), false);
  });

  it('deletes the CSV of a sheet expected past the limit that fitted after all', async () => {
    const { dir, wb } = await openWorkbook({ expectedRows: { results: 100 } });
    await wb.addResult(resultRow(0));
    const files = await wb.finish([]);

    assert.deepEqual(files.csvPaths, []);
    assert.deepEqual(readdirSync(dir), ['run.xlsx']);
  });
});
