import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import ExcelJS from 'exceljs';
import type { Cell } from '../../../runtime/model';
import {
  createResultWorkbook,
  EXCEL_MAX_ROWS,
  type ResultWorkbookFiles,
  type ResultWorkbookOptions,
  type WorkbookColumn,
} from '../../../batch-jobs/workbook/result-workbook';
import { tempDir } from './temp-dirs';
import { readZipEntries } from './zip-entries';

const RESULTS: WorkbookColumn[] = [
  { name: 'customer_id', type: 'text' },
  { name: 'amount', type: 'number' },
  { name: 'visits', type: 'integer' },
  { name: 'due', type: 'date' },
  { name: 'active', type: 'boolean' },
  { name: 'note', type: 'text' },
];
const ERRORS: WorkbookColumn[] = [
  { name: 'customer_id', type: 'text' },
  { name: 'row', type: 'integer' },
  { name: 'error', type: 'text' },
];

interface Written {
  files: ResultWorkbookFiles;
  book: ExcelJS.Workbook;
  dir: string;
}

async function write(
  rows: { results?: Cell[][]; errors?: Cell[][]; items?: Cell[][] },
  opts: Partial<ResultWorkbookOptions> = {},
  summary: [string, Cell][] = [['Run', 'r-1']],
): Promise<Written> {
  const dir = tempDir();
  const wb = await createResultWorkbook({ dir, baseName: 'customers.r-1', results: RESULTS, errors: ERRORS, ...opts });
  for (const r of rows.results ?? []) await wb.addResult(r);
  for (const r of rows.errors ?? []) await wb.addError(r);
  for (const r of rows.items ?? []) await wb.addItem(r);
  const files = await wb.finish(summary);
  const book = new ExcelJS.Workbook();
  await book.xlsx.readFile(files.workbookPath);
  return { files, book, dir };
}

/** Cell values of a row, from column A (exceljs puts column A at index 1). */
function rowValues(ws: ExcelJS.Worksheet, r: number): unknown[] {
  return (ws.getRow(r).values as unknown[]).slice(1);
}

function sheet(book: ExcelJS.Workbook, name: string): ExcelJS.Worksheet {
  const ws = book.getWorksheet(name);
  assert.ok(ws, `sheet ${name} exists`);
  return ws;
}

describe('result workbook: cell values and types', () => {
  it('keeps text ids as text, numbers (negative too) as numbers, integers, booleans and empty cells', async () => {
    const { book } = await write({
      results: [
        ['00123', -12.5, 3, null, true, null],
        ['00124', 0, -2, null, false, ''],
      ],
    });
    const ws = sheet(book, 'Results');
    const id = ws.getCell('A2');
    assert.equal(id.type, ExcelJS.ValueType.String);
    assert.equal(id.value, '00123');
    assert.equal(ws.getCell('B2').type, ExcelJS.ValueType.Number);
    assert.equal(ws.getCell('B2').value, -12.5);
    assert.equal(ws.getCell('C3').value, -2);
    assert.equal(ws.getCell('E2').type, ExcelJS.ValueType.Boolean);
    assert.equal(ws.getCell('E2').value, true);
    assert.equal(ws.getCell('E3').value, false);
    assert.equal(ws.getCell('D2').type, ExcelJS.ValueType.Null);
    assert.equal(ws.getCell('F3').type, ExcelJS.ValueType.Null);
  });

  it('writes ISO dates as real dates with a date format, and date-times with a date-time format', async () => {
    const { book } = await write({
      results: [
        ['1', 1, 1, '2024-03-01', true, 'x'],
        ['2', 1, 1, '2024-03-01T10:20:30Z', true, 'x'],
      ],
    });
    const ws = sheet(book, 'Results');
    const date = ws.getCell('D2');
    assert.equal(date.type, ExcelJS.ValueType.Date);
    assert.deepEqual(date.value, new Date('2024-03-01T00:00:00Z'));
    assert.equal(date.numFmt, 'yyyy-mm-dd');
    const dateTime = ws.getCell('D3');
    assert.equal(dateTime.type, ExcelJS.ValueType.Date);
    assert.deepEqual(dateTime.value, new Date('2024-03-01T10:20:30Z'));
    assert.equal(dateTime.numFmt, 'yyyy-mm-dd hh:mm:ss');
  });

  it('keeps text that is not a date in a date column, and numeric text of a number column as a number', async () => {
    const { book } = await write({ results: [['1', '-4.25', '17', 'not a date', 'TRUE', 'x']] });
    const ws = sheet(book, 'Results');
    assert.equal(ws.getCell('B2').value, -4.25);
    assert.equal(ws.getCell('C2').value, 17);
    assert.equal(ws.getCell('D2').type, ExcelJS.ValueType.String);
    assert.equal(ws.getCell('D2').value, 'not a date');
    assert.equal(ws.getCell('E2').value, true);
  });

  it('stores formula-looking text as text with the same characters, never as a formula', async () => {
    const risky = ['=SUM(A1:A2)', '+1+1', '-2+3', '@SUM(1)', '\tcmd', '\rcmd', '=cmd|" /C calc"!A0'];
    const { book, files } = await write({ results: risky.map((t, i) => [String(i), null, null, null, null, t]) });
    const ws = sheet(book, 'Results');
    risky.forEach((text, i) => {
      const cell = ws.getCell(`F${i + 2}`);
      assert.equal(cell.type, ExcelJS.ValueType.String, JSON.stringify(text));
      assert.equal(cell.value, text);
      assert.equal(cell.formula, undefined);
    });
    // The cells carry a quotePrefix style, so Excel keeps them text when edited.
    const parts = readZipEntries(files.workbookPath);
    const sheetXml = parts.get('xl/worksheets/sheet1.xml') ?? '';
    assert.doesNotMatch(sheetXml, /<f>/);
    const style = /<c r="F2" s="(\d+)" t="inlineStr">/.exec(sheetXml)?.[1];
    assert.ok(style, 'F2 has a style');
    const xfs = /<cellXfs[^>]*>(.*)<\/cellXfs>/.exec(parts.get('xl/styles.xml') ?? '')?.[1].match(/<xf [^>]*\/>/g) ?? [];
    assert.match(xfs[Number(style)], /quotePrefix="1"/);
    assert.match(sheetXml, /<c r="F3" t="inlineStr">|<c r="F3" s="\d+" t="inlineStr">/);
  });

  it('keeps markup characters, line breaks and surrounding spaces of text', async () => {
    const text = '  a <b> & "c"\nline 2  ';
    const { book } = await write({ results: [['1', null, null, null, null, text]] });
    assert.equal(sheet(book, 'Results').getCell('F2').value, text);
  });

  it('cuts text longer than Excel allows in the xlsx copy', async () => {
    const { book } = await write({ results: [['1', null, null, null, null, 'x'.repeat(40_000)]] });
    assert.equal((sheet(book, 'Results').getCell('F2').value as string).length, 32_767);
  });
});

describe('result workbook: layout', () => {
  it('names the sheets Results, Errors, the item sheet, then Summary, and opens on Results', async () => {
    const { book, files } = await write(
      { items: [['t1', 12.5]] },
      {
        itemSheet: {
          name: 'Trips',
          columns: [
            { name: 'trip', type: 'text' },
            { name: 'km', type: 'number' },
          ],
        },
      },
    );
    assert.deepEqual(
      book.worksheets.map((w) => w.name),
      ['Results', 'Errors', 'Trips', 'Summary'],
    );
    assert.match(readZipEntries(files.workbookPath).get('xl/workbook.xml') ?? '', /activeTab="0"/);
  });

  it('has no item sheet unless asked for one', async () => {
    const { book } = await write({});
    assert.deepEqual(
      book.worksheets.map((w) => w.name),
      ['Results', 'Errors', 'Summary'],
    );
  });

  it('writes a bold header row of the column names, frozen', async () => {
    const { book } = await write({ results: [['1', 2, 3, null, null, 'x']] });
    const ws = sheet(book, 'Results');
    assert.deepEqual(
      rowValues(ws, 1),
      RESULTS.map((c) => c.name),
    );
    assert.equal(ws.getCell('A1').font?.bold, true);
    assert.equal(ws.views[0]?.state, 'frozen');
    assert.equal((ws.views[0] as ExcelJS.WorksheetViewFrozen).ySplit, 1);
    assert.equal(sheet(book, 'Errors').views[0]?.state, 'frozen');
  });

  it('puts an autofilter over the header and data rows, with the defined name Excel and LibreOffice use', async () => {
    const { book, files } = await write({ results: [['1'], ['2'], ['3']], errors: [['1', 2, 'boom']] });
    assert.equal(sheet(book, 'Results').autoFilter, 'A1:F4');
    assert.equal(sheet(book, 'Errors').autoFilter, 'A1:C2');
    const workbookXml = readZipEntries(files.workbookPath).get('xl/workbook.xml') ?? '';
    assert.match(
      workbookXml,
      /<definedName name="_xlnm._FilterDatabase" localSheetId="0" hidden="1">'Results'!\$A\$1:\$F\$4<\/definedName>/,
    );
    assert.match(workbookXml, /localSheetId="1" hidden="1">'Errors'!\$A\$1:\$C\$2</);
  });

  it('sizes columns from the header and the values, within limits', async () => {
    const { book } = await write({ results: [['1', 123456789012, 1, '2024-03-01T10:00:00Z', true, 'y'.repeat(500)]] });
    const ws = sheet(book, 'Results');
    const widths = RESULTS.map((_, i) => ws.getColumn(i + 1).width ?? 0);
    assert.ok(widths[0] >= 'customer_id'.length, `header fits: ${widths[0]}`);
    assert.ok(widths[1] >= 12, `number fits: ${widths[1]}`);
    assert.ok(widths[3] >= 19, `date-time fits: ${widths[3]}`);
    assert.equal(widths[5], 60, 'long text is capped');
    assert.ok(widths.every((w) => w >= 8));
  });

  it('writes the Summary as label/value rows, keeping numbers and turning ISO times into dates', async () => {
    const { book } = await write({}, {}, [
      ['Run id', 'r-1'],
      ['Started', '2024-03-01T10:00:00Z'],
      ['Items', 3],
      ['Formula-looking', '=1+1'],
    ]);
    const ws = sheet(book, 'Summary');
    assert.equal(ws.rowCount, 4);
    assert.deepEqual(rowValues(ws, 1), ['Run id', 'r-1']);
    assert.deepEqual(ws.getCell('B2').value, new Date('2024-03-01T10:00:00Z'));
    assert.equal(ws.getCell('B3').value, 3);
    assert.equal(ws.getCell('B4').value, '=1+1');
    assert.equal(ws.getCell('B4').formula, undefined);
    assert.equal(ws.getCell('A1').font?.bold, true);
  });

  it('writes the Errors rows and the item sheet rows in the order added', async () => {
    const { book } = await write(
      {
        errors: [
          ['00007', 8, 'HTTP 404'],
          ['00009', 10, 'timeout after 5 attempts'],
        ],
        items: [
          ['t1', 1.5],
          ['t2', 2.5],
        ],
      },
      {
        itemSheet: {
          name: 'Trips',
          columns: [
            { name: 'trip', type: 'text' },
            { name: 'km', type: 'number' },
          ],
        },
      },
    );
    const errors = sheet(book, 'Errors');
    assert.equal(errors.rowCount, 3);
    assert.deepEqual(rowValues(errors, 2), ['00007', 8, 'HTTP 404']);
    assert.deepEqual(rowValues(errors, 3), ['00009', 10, 'timeout after 5 attempts']);
    const trips = sheet(book, 'Trips');
    assert.deepEqual(rowValues(trips, 1), ['trip', 'km']);
    assert.deepEqual(rowValues(trips, 3), ['t2', 2.5]);
  });

  it('holds every row of a larger sheet in order, with backpressure', async () => {
    const dir = tempDir();
    const wb = await createResultWorkbook({
      dir,
      baseName: 'big',
      results: RESULTS,
      errors: ERRORS,
      expectedRows: { results: 12_000, errors: 0 },
    });
    let promises = 0;
    for (let i = 0; i < 12_000; i++) {
      const p = wb.addResult([String(i).padStart(6, '0'), i, i, '2024-01-01', i % 2 === 0, `note ${i} `.repeat(10)]);
      if (p) {
        promises++;
        await p;
      }
    }
    const files = await wb.finish([]);
    assert.ok(promises > 0, 'the writer asked to wait at least once');
    const book = new ExcelJS.Workbook();
    await book.xlsx.readFile(files.workbookPath);
    const ws = sheet(book, 'Results');
    assert.equal(ws.rowCount, 12_001);
    assert.equal(ws.getCell('A2').value, '000000');
    assert.equal(ws.getCell('A12001').value, '011999');
    assert.equal(ws.getCell('B12001').value, 11_999);
    assert.deepEqual(files.rows, { results: 12_000, errors: 0, items: 0 });
  });
});

describe('result workbook: package', () => {
  it('declares a content type for every part and every relationship points at a part in the package', async () => {
    const { files } = await write({ results: [['1']] }, { itemSheet: { name: 'Trips', columns: [{ name: 'trip', type: 'text' }] } });
    const parts = readZipEntries(files.workbookPath);
    const types = parts.get('[Content_Types].xml') ?? '';
    for (const name of parts.keys()) {
      if (name === '[Content_Types].xml' || name.endsWith('.rels')) continue;
      assert.match(types, new RegExp(`PartName="/${name.replace(/[.[\]]/g, '\\$&')}"`), `content type of ${name}`);
    }
    const targets = (name: string) => {
      assert.ok(parts.has(name), `${name} is in the package`);
      const found = [...parts.get(name)!.matchAll(/Target="([^"]+)"/g)].map((m) => m[1]!);
      assert.ok(found.length > 0, `${name} names its targets`);
      return found;
    };
    for (const t of targets('_rels/.rels')) assert.ok(parts.has(t), `root relationship ${t}`);
    const fromWorkbook = targets('xl/_rels/workbook.xml.rels');
    assert.ok(fromWorkbook.filter((t) => t.startsWith('worksheets/')).length >= 4, 'the four sheets are related');
    for (const t of fromWorkbook) assert.ok(parts.has(`xl/${t}`), `workbook relationship ${t}`);
    assert.equal([...(parts.get('xl/workbook.xml') ?? '').matchAll(/<sheet /g)].length, 4);
  });

  it('declares the date formats its date cells use', async () => {
    const { files } = await write({ results: [['1', null, null, '2024-03-01']] });
    const styles = readZipEntries(files.workbookPath).get('xl/styles.xml') ?? '';
    assert.match(styles, /<numFmt numFmtId="164" formatCode="yyyy-mm-dd"\/>/);
    assert.match(styles, /<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm:ss"\/>/);
  });
});

describe('result workbook: files', () => {
  it('writes <baseName>.xlsx and leaves no other file when no sheet passes the limit', async () => {
    const { files, dir } = await write({ results: [['1']], errors: [['1', 2, 'x']] });
    assert.equal(files.workbookPath, join(dir, 'customers.r-1.xlsx'));
    assert.deepEqual(readdirSync(dir), ['customers.r-1.xlsx']);
    assert.deepEqual(files.csvPaths, []);
    assert.deepEqual(files.truncatedSheets, []);
  });

  it('abort() removes everything written so far', async () => {
    const dir = tempDir();
    const wb = await createResultWorkbook({ dir, baseName: 'gone', results: RESULTS, errors: ERRORS });
    await wb.addResult(['1']);
    await wb.addError(['1', 2, 'x']);
    await wb.abort();
    assert.deepEqual(readdirSync(dir), []);
    assert.throws(() => wb.addResult(['2']), /closed/);
  });

  it('refuses an item sheet name Excel would reject, and rows for a sheet it does not have', async () => {
    const dir = tempDir();
    await assert.rejects(
      createResultWorkbook({ dir, baseName: 'x', results: RESULTS, errors: ERRORS, itemSheet: { name: 'Trips/2024', columns: [] } }),
      /item sheet name "Trips\/2024"/,
    );
    await assert.rejects(
      createResultWorkbook({ dir, baseName: 'x', results: RESULTS, errors: ERRORS, itemSheet: { name: 'errors', columns: [] } }),
      /already used/,
    );
    const wb = await createResultWorkbook({ dir, baseName: 'x', results: RESULTS, errors: ERRORS });
    assert.throws(() => wb.addItem(['t1']), /no item sheet/);
    await wb.abort();
    assert.equal(existsSync(join(dir, 'x.xlsx')), false);
  });

  it('says Excel allows 1,048,576 rows, header included', () => {
    assert.equal(EXCEL_MAX_ROWS, 1_048_576);
  });
});
