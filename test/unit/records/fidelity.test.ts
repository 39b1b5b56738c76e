/**
 * Input fidelity (issue 9): every value that was uploaded comes back in the result workbook, or its
 * row says why. Inputs are written by an independent program (openpyxl) or as raw bytes; each
 * goes through the reader and the result-workbook writer as consolidate uses them, and the RESULT
 * workbook is read back with openpyxl.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { ColumnConfig } from '../../../runtime/config/schema';
import { InputError } from '../../../runtime/errors';
import { openRecords, type OpenRecordsOptions } from '../../../batch-jobs/records/reader';
import { createResultWorkbook, distinctNames } from '../../../batch-jobs/workbook/result-workbook';
import { col, handMadeXlsx, makeZip, readAll, rejection, streamOf, withTempDir } from './fixtures';
import { openpyxlWorkbook, readWithOpenpyxl, type SheetValues } from './openpyxl';

interface RoundTrip {
  results: SheetValues;
  summary: SheetValues;
  /** Files written beside the workbook (CSV), by name. */
  beside: Record<string, string>;
}

/**
 * Reads the input and writes every row to a result workbook as consolidate does (input columns,
 * then Status, Error, Attempts; a row with problems is failed with them as its error), then reads
 * that workbook back with openpyxl.
 */
async function throughResults(
  input: Buffer | string,
  fileName: string,
  columns: ColumnConfig[],
  opts: Partial<OpenRecordsOptions> = {},
): Promise<RoundTrip> {
  const source = await openRecords(streamOf(input, 4096), { fileName, columns, ...opts });
  const types = new Map(columns.map((c) => [c.name, c.type] as const));
  const [status, error, attempts] = distinctNames(source.columns, ['Status', 'Error', 'Attempts']) as [string, string, string];
  return withTempDir(async (dir) => {
    const wb = await createResultWorkbook({
      dir,
      baseName: 'result',
      results: [
        ...source.columns.map((name) => ({ name, type: types.get(name) ?? ('text' as const) })),
        { name: status, type: 'text' as const },
        { name: error, type: 'text' as const },
        { name: attempts, type: 'integer' as const },
      ],
      errors: [{ name: 'Rows', type: 'text' }],
      expectedRows: { results: 1000, errors: 1000 },
      noteColumns: { results: error },
    });
    for await (const r of source.rows) {
      const failed = r.problems.length > 0;
      await wb.addResult([
        ...source.columns.map((c) => r.row[c] ?? null),
        failed ? 'failed' : 'done',
        failed ? r.problems.join('; ') : null,
        failed ? 0 : 1,
      ]);
    }
    const files = await wb.finish(source.notes.map((n) => ['Input note', n] as const));
    const sheets = await readWithOpenpyxl(files.workbookPath);
    const beside: Record<string, string> = {};
    for (const name of await readdir(dir)) if (name.endsWith('.csv')) beside[name] = await readFile(join(dir, name), 'utf8');
    return { results: sheets.Results!, summary: sheets.Summary!, beside };
  });
}

const notes = (summary: SheetValues) => summary.filter((r) => r[0] === 'Input note').map((r) => r[1]);

describe('input fidelity: workbooks written by openpyxl', () => {
  test('1. a formula without a computed value keeps its text; a typed column says what to do', async () => {
    // given what openpyxl writes for text that starts with "=" and for a formula: no cached value
    const xlsx = await openpyxlWorkbook(`
ws.append(['Name', 'Amount'])
ws.append(['=HYPERLINK("http://evil.example","click")', 10])
ws.append(['Ann', '=B2*2'])
`);
    const { results } = await throughResults(xlsx, 'formulas.xlsx', [col('Name'), col('Amount', 'number')]);
    // then the text comes back exactly, as text (not a formula), and the number column's row fails saying why
    assert.deepEqual(results, [
      ['Name', 'Amount', 'Status', 'Error', 'Attempts'],
      ['=HYPERLINK("http://evil.example","click")', 10, 'done', null, 1],
      [
        'Ann',
        '=B2*2',
        'failed',
        'row 3, column "Amount": holds the formula =B2*2 with no computed value (the file was saved by a program that does not calculate); open and save it in Excel, or export the values',
        0,
      ],
    ]);
  });

  test('5. data on a later sheet when the first is empty: that sheet is read, and the Summary says so', async () => {
    const xlsx = await openpyxlWorkbook(`
ws.title = 'Cover'
data = wb.create_sheet('Customers')
data.append(['Customer ID', 'Name'])
data.append(['A1', 'Zoë'])
`);
    const { results, summary } = await throughResults(xlsx, 'later.xlsx', [col('Customer ID'), col('Name')]);
    assert.deepEqual(results.slice(1), [['A1', 'Zoë', 'done', null, 1]]);
    assert.deepEqual(notes(summary), [
      'Read sheet "Customers": the sheet before it ("Cover") has no header row with the pipeline\'s columns.',
    ]);
  });

  test('5. when no sheet has a header row, each sheet is listed with its first non-empty row', async () => {
    const xlsx = await openpyxlWorkbook(`
ws.title = 'Cover'
ws['B2'] = 'Quarterly report'
data = wb.create_sheet('Data')
data.append(['Id', 'Nom'])
data.append(['A1', 'x'])
wb.create_sheet('Empty')
`);
    const err = await rejection(throughResults(xlsx, 'none.xlsx', [col('Customer ID'), col('Name')]));
    assert.ok(err instanceof InputError);
    assert.equal(
      err.message,
      'none.xlsx: no sheet has a header row with the pipeline\'s columns ("Customer ID", "Name" are required) among its first 10 non-empty rows. Sheets: "Cover" (first non-empty row 2: "Quarterly report"); "Data" (first non-empty row 1: "Id", "Nom"); "Empty" (empty). Put the headers on the sheet with the data, or set the pipeline\'s input.sheet.',
    );
  });

  test('6. ids stored as numbers with a zero-padding or scientific format come back as shown', async () => {
    const xlsx = await openpyxlWorkbook(`
ws.append(['Customer ID', 'Long ID', 'Amount'])
ws.append([123, 1234567890123456, 123])
ws['A2'].number_format = '000000'
ws['B2'].number_format = '0.00E+00'
ws['C2'].number_format = '000000'
ws.append([42, 7, 5])
ws['A3'].number_format = '"ID-"00000'
`);
    const { results } = await throughResults(xlsx, 'ids.xlsx', [col('Customer ID'), col('Long ID'), col('Amount', 'number')]);
    // text columns show what Excel shows; a number column keeps the number
    assert.deepEqual(results.slice(1), [
      ['000123', '1.23E+15', 123, 'done', null, 1],
      ['ID-00042', '7', 5, 'done', null, 1],
    ]);
  });

  test('7. _xHHHH_ escapes in inline strings (openpyxl) and shared strings are decoded', async () => {
    const inline = await openpyxlWorkbook(`
ws.append(['Name'])
ws.append(['Tab_x0009_Esc'])
`);
    const a = await throughResults(inline, 'inline.xlsx', [col('Name')]);
    assert.deepEqual(a.results.slice(1), [['Tab\tEsc', 'done', null, 1]]);
    const shared = handMadeXlsx({
      sheets: [{ name: 'S', xml: '<row r="1"><c r="A1" t="s"><v>0</v></c></row><row r="2"><c r="A2" t="s"><v>1</v></c></row>' }],
      sharedStrings: ['Name', 'Line_x000A_two'],
    });
    const b = await throughResults(shared, 'shared.xlsx', [col('Name')]);
    assert.deepEqual(b.results.slice(1), [['Line\ntwo', 'done', null, 1]]);
    // an escaped underscore is a literal one: the text _x0041_ (the writer escapes it again; openpyxl shows escapes as they are)
    const literal = handMadeXlsx({
      sheets: [{ name: 'S', xml: '<row r="1"><c r="A1" t="s"><v>0</v></c></row><row r="2"><c r="A2" t="s"><v>1</v></c></row>' }],
      sharedStrings: ['Name', '_x005F_x0041_'],
    });
    const { rows } = await readAll(literal, { fileName: 'literal.xlsx', columns: [col('Name')] });
    assert.equal(rows[0]!.row.Name, '_x0041_');
  });

  test('11. title rows above the header: the header row is found and noted; otherwise the closest row is named', async () => {
    const xlsx = await openpyxlWorkbook(`
ws.append(['Tax run 2026'])
ws.append([])
ws.append(['Customer ID', 'Tax Year'])
ws.append(['A1', 2024])
`);
    const { results, summary } = await throughResults(xlsx, 'title.xlsx', [col('Customer ID'), col('Tax Year', 'integer')]);
    assert.deepEqual(results.slice(1), [['A1', 2024, 'done', null, 1]]);
    assert.deepEqual(notes(summary), [
      'title.xlsx, sheet "Sheet": the header is on row 3; the 1 non-empty row above it (row 1: "Tax run 2026") was not read as data.',
    ]);
    const noHeader = await openpyxlWorkbook(`
ws.append(['Tax run 2026'])
ws.append(['Customer', 'Tax Year'])
ws.append(['A1', 2024])
`);
    const err = await rejection(
      throughResults(noHeader, 'closest.xlsx', [col('Customer ID'), col('Tax Year', 'integer')], { headerSearchRows: 3 }),
    );
    assert.equal(
      err.message,
      'closest.xlsx, sheet "Sheet": required column "Customer ID" is missing from the header row (row 2, the closest match among the first 3 non-empty rows). Headers found: "Customer", "Tax Year". Add the missing column (header matching ignores case and extra spaces) and upload the file again.',
    );
  });
});

describe('input fidelity: CSV and long cells', () => {
  test('2. bytes that are not UTF-8 fail their row; Zoë and 李雷 come back exactly', async () => {
    const bytes = Buffer.concat([
      Buffer.from('\ufeffCustomer ID,Name\r\nA1,Zoë\r\nA2,李雷\r\n', 'utf8'),
      Buffer.from('A3,Caf\xe9\r\n', 'latin1'),
      Buffer.from('A4,Ünal\r\n', 'utf8'),
    ]);
    const { results } = await throughResults(bytes, 'names.csv', [col('Customer ID'), col('Name')]);
    assert.deepEqual(results.slice(1), [
      ['A1', 'Zoë', 'done', null, 1],
      ['A2', '李雷', 'done', null, 1],
      [
        'A3',
        'Caf\ufffd',
        'failed',
        'row 4, column "Name": byte 4 of the value is 0xE9, which is not UTF-8 (in Windows-1252 it would be "é"); the row is not processed. Save the file as "CSV UTF-8" and upload it again',
        0,
      ],
      ['A4', 'Ünal', 'done', null, 1],
    ]);
  });

  test('8. a NUL byte fails its row with the row, column and byte', async () => {
    const { results } = await throughResults('Customer ID,Name\nA1,ok\nA2,b\u0000d\n', 'nul.csv', [col('Customer ID'), col('Name')]);
    assert.deepEqual(results.slice(1), [
      ['A1', 'ok', 'done', null, 1],
      [
        'A2',
        'b\ufffdd',
        'failed',
        'row 3, column "Name": holds a NUL character (byte 0) at byte 2 of the value; the row is not processed. Remove it (it is usually left over from a binary export) and upload the file again',
        0,
      ],
    ]);
  });

  test("4. a cell past Excel's 32,767 characters is cut in the workbook, whole in a CSV beside it, and its row says so", async () => {
    const long = `${'a'.repeat(40_000)}z`;
    const { results, summary, beside } = await throughResults(`Customer ID,Notes\nA1,${long}\nA2,short\n`, 'long.csv', [
      col('Customer ID'),
      col('Notes'),
    ]);
    assert.equal(results[1]![1], long.slice(0, 32_767));
    assert.equal(
      results[1]![3],
      'column "Notes" is cut to Excel\'s 32,767 characters (of 40,001); the whole value is in result.results.long-cells.csv',
    );
    assert.deepEqual(results[2], ['A2', 'short', 'done', null, 1]);
    assert.equal(beside['result.results.long-cells.csv'], `\ufeffRow,Column,Characters,Value\r\n2,Notes,40001,${long}\r\n`);
    assert.deepEqual(
      summary.find((r) => r[0] === 'Results sheet, long cells'),
      [
        'Results sheet, long cells',
        "1 cell longer than Excel's 32,767 characters is cut here; the whole values are in result.results.long-cells.csv",
      ],
    );
  });

  test('3. input columns named like result columns: the result columns get distinct names', async () => {
    const { results } = await throughResults('Customer ID,status,ERROR\nA1,open,none\n', 'names.csv', [col('Customer ID')]);
    assert.deepEqual(results, [
      ['Customer ID', 'status', 'ERROR', 'Status (result)', 'Error (result)', 'Attempts'],
      ['A1', 'open', 'none', 'done', null, 1],
    ]);
  });

  test('11. a CSV with a title line above the header', async () => {
    const { results, summary } = await throughResults('Export of 2026-11-30\n\nCustomer ID,Name\nA1,Ann\n', 'title.csv', [
      col('Customer ID'),
      col('Name'),
    ]);
    assert.deepEqual(results.slice(1), [['A1', 'Ann', 'done', null, 1]]);
    assert.deepEqual(notes(summary), [
      'title.csv: the header is on row 3; the 1 non-empty row above it (row 1: "Export of 2026-11-30") was not read as data.',
    ]);
  });
});

describe('input fidelity: decompression bombs are refused before they inflate', () => {
  const NS = 'http://schemas.openxmlformats.org/spreadsheetml/2006/main';
  const REL = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships';
  /** A one-sheet workbook whose sheet XML is `sheetXml`, deflated. */
  const bomb = (sheetXml: string | Buffer) =>
    makeZip(
      {
        '_rels/.rels': `<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="r1" Type="${REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>`,
        'xl/workbook.xml': `<workbook xmlns="${NS}" xmlns:r="${REL}"><sheets><sheet name="Data" sheetId="1" r:id="r1"/></sheets></workbook>`,
        'xl/_rels/workbook.xml.rels': `<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="r1" Type="${REL}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>`,
        'xl/worksheets/sheet1.xml': sheetXml,
      },
      true,
    );
  const header = '<row r="1"><c r="A1" t="inlineStr"><is><t>Customer ID</t></is></c></row>';
  const open = (xlsx: Buffer, limits?: OpenRecordsOptions['limits']) =>
    openRecords(streamOf(xlsx), { fileName: 'bomb.xlsx', columns: [col('Customer ID')], limits }).then(async (s) => {
      for await (const _ of s.rows);
    });

  test("a cell far past Excel's limit is refused, naming the cell and what the file claims", async () => {
    const xlsx = bomb(
      `<worksheet xmlns="${NS}"><sheetData>${header}<row r="2"><c r="A2" t="inlineStr"><is><t>${'x'.repeat(2_000_000)}</t></is></c></row></sheetData></worksheet>`,
    );
    const err = await rejection(open(xlsx));
    assert.ok(err instanceof InputError);
    assert.match(
      err.message,
      /^bomb\.xlsx, sheet "Data" was refused: the cell A2 holds more than 1,048,576 characters \(Excel's own limit is 32,767\), and the sheet part claims to inflate from [\d.]+ KB to 1\.9 MB \(\d+:1\)\./,
    );
    assert.deepEqual(err.location, { file: 'bomb.xlsx', sheet: 'Data', row: 2, column: 'A' });
  });

  test("a row past Excel's last row is refused at once", async () => {
    const xlsx = bomb(
      `<worksheet xmlns="${NS}"><sheetData>${header}<row r="2"><c r="A2"><v>1</v></c></row><row r="1048577"><c r="A1048577"><v>1</v></c></row></sheetData></worksheet>`,
    );
    const err = await rejection(open(xlsx));
    assert.match(
      err.message,
      /sheet "Data" was refused: the sheet has a row 1,048,577, past Excel's last row 1,048,576: no Excel file holds it/,
    );
    assert.match(err.message, /Split the data into files of at most 1,048,575 rows, or upload it as CSV\.$/);
  });

  test('a sheet that claims to inflate past the size or ratio limit is refused before a byte is inflated', async () => {
    const rows = Buffer.from(
      `<worksheet xmlns="${NS}"><sheetData>${header}${'<row><c><v>1</v></c></row>'.repeat(100_000)}</sheetData></worksheet>`,
    );
    const err = await rejection(open(bomb(rows), { maxInflatedMB: 1 }));
    assert.match(
      err.message,
      /^bomb\.xlsx was refused before reading: its sheet "Data" \(xl\/worksheets\/sheet1\.xml\) claims to inflate from [\d.]+ KB to 2\.5 MB \(\d+:1\), more than the 1 MB this pipeline accepts \(input\.limits\.maxInflatedMB\)/,
    );
    const big = Buffer.alloc(70 * 1024 * 1024, '<row><c><v>1</v></c></row>');
    const ratio = await rejection(open(bomb(Buffer.concat([Buffer.from(`<worksheet xmlns="${NS}"><sheetData>${header}`), big]))));
    assert.match(ratio.message, /claims to inflate from [\d.]+ KB to 70 MB \(\d{3,}:1\), a ratio past the 100:1 this pipeline accepts/);
  });
});
