import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InputError } from '../../../runtime/errors';
import { openRecords } from '../../../batch-jobs/records/reader';
import { col, collect, handMadeXlsx, makeZip, readAll, rejection, streamOf, workbookBytes } from './fixtures';

const columns = [col('Customer ID'), col('Tax Year', 'integer'), col('Name'), col('Postcode', 'text', false)];

async function inputError(data: string | Buffer, fileName: string, sheet?: string): Promise<InputError> {
  const err = await rejection(readAll(data, { fileName, columns, ...(sheet ? { sheet } : {}) }));
  assert.ok(err instanceof InputError, `expected an InputError, got ${err.name}: ${err.message}`);
  return err;
}

const sheetXml = (rows: string[][]) =>
  rows
    .map(
      (cells, r) =>
        `<row r="${r + 1}">${cells.map((v, c) => `<c r="${String.fromCharCode(65 + c)}${r + 1}" t="inlineStr"><is><t>${v}</t></is></c>`).join('')}</row>`,
    )
    .join('');

describe('reader errors: the file', () => {
  test('an unsupported extension names the supported ones', async () => {
    const err = await inputError('a,b\n1,2\n', 'customers.xls');
    assert.match(err.message, /^customers\.xls: files of type \.xls are not supported/);
    assert.match(err.message, /\.xlsx.*\.csv.*\.tsv/);
    assert.deepEqual(err.location, { file: 'customers.xls' });
  });

  test('a zip (workbook) named .csv says to rename it to .xlsx', async () => {
    const xlsx = await workbookBytes((wb) => wb.addWorksheet('S').addRow(['Customer ID']));
    const err = await inputError(xlsx, 'customers.csv');
    assert.match(err.message, /^customers\.csv is a zip archive \(most likely an Excel workbook\), not CSV text\. Rename it to \.xlsx/);
  });

  test('a legacy .xls (OLE2) named .xlsx says to save it as .xlsx', async () => {
    const ole2 = Buffer.concat([Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]), Buffer.alloc(2048, 1)]);
    const err = await inputError(ole2, 'customers.xlsx');
    assert.match(err.message, /^customers\.xlsx is an Excel 97-2003 workbook \(\.xls\) or a password-protected workbook/);
    assert.match(err.message, /save it as an Excel Workbook \(\.xlsx\)/);
  });

  test('text named .xlsx says it is not a workbook and to rename CSV data to .csv', async () => {
    const err = await inputError('Customer ID,Tax Year\n1,2\n', 'customers.xlsx');
    assert.match(err.message, /^customers\.xlsx is text, not an Excel workbook.*rename it to \.csv/);
  });

  test('binary junk named .csv is refused', async () => {
    const junk = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256));
    const err = await inputError(junk, 'customers.csv');
    assert.match(err.message, /^customers\.csv does not contain text \(it holds binary data\)/);
  });

  test('an empty file, or one of only blank lines, is refused', async () => {
    assert.match((await inputError('', 'customers.csv')).message, /^customers\.csv is empty\./);
    assert.match((await inputError('\ufeff \r\n\r\n', 'customers.csv')).message, /^customers\.csv is empty\./);
    assert.match((await inputError(Buffer.alloc(0), 'customers.xlsx')).message, /^customers\.xlsx is empty\./);
  });

  test('a workbook whose sheet has no rows is empty, naming the sheet', async () => {
    const xlsx = handMadeXlsx({ sheets: [{ name: 'Blank', xml: '' }] });
    const err = await inputError(xlsx, 'customers.xlsx');
    assert.match(err.message, /^customers\.xlsx, sheet "Blank" is empty: there is no header row/);
    assert.deepEqual(err.location, { file: 'customers.xlsx', sheet: 'Blank' });
  });

  test('a truncated workbook is reported as damaged', async () => {
    const xlsx = await workbookBytes((wb) => wb.addWorksheet('S').addRow(['Customer ID']));
    const err = await inputError(xlsx.subarray(0, Math.floor(xlsx.length / 2)), 'customers.xlsx');
    assert.match(err.message, /^customers\.xlsx is not a readable Excel workbook: the file is damaged or incomplete/);
  });

  test('a zip that is not a workbook says what it looks like', async () => {
    const docx = makeZip({ 'word/document.xml': '<w:document/>' });
    const err = await inputError(docx, 'customers.xlsx');
    assert.match(err.message, /^customers\.xlsx is a zip archive but not an Excel workbook.*looks like a Word document/);
  });

  test('a named sheet that does not exist lists the sheets', async () => {
    const xlsx = await workbookBytes((wb) => {
      wb.addWorksheet('January').addRow(['Customer ID']);
      wb.addWorksheet('February').addRow(['Customer ID']);
    });
    const err = await inputError(xlsx, 'customers.xlsx', 'March');
    assert.match(err.message, /^customers\.xlsx has no sheet named "March"\. Its sheets are: "January", "February"\./);
    assert.deepEqual(err.location, { file: 'customers.xlsx', sheet: 'March' });
  });

  test('damage found mid-stream surfaces as an InputError from the rows iterator', async () => {
    // given a deflated sheet whose compressed bytes are corrupted three quarters in
    const rows = [['Customer ID', 'Tax Year', 'Name']];
    for (let i = 0; i < 20_000; i++) rows.push([`C${i}`, '2023', `Name ${i} ${'x'.repeat(i % 17)}`]);
    const xlsx = handMadeXlsx({ deflate: true, sheets: [{ name: 'S', xml: sheetXml(rows) }] });
    const at = Math.floor(xlsx.length * 0.75);
    for (let i = 0; i < 64; i++) xlsx[at + i] = (xlsx[at + i]! ^ 0x5a) & 0xff;
    // when it is opened, the header and the first rows read fine
    const source = await openRecords(streamOf(xlsx), { fileName: 'customers.xlsx', columns });
    let read = 0;
    const err = await rejection(
      (async () => {
        for await (const _ of source.rows) read++;
      })(),
    );
    // then the damage is an InputError naming file and sheet, after some rows
    assert.ok(read > 0 && read < 20_000, `rows read before the damage: ${read}`);
    assert.ok(err instanceof InputError, `${err.name}: ${err.message}`);
    assert.match(err.message, /^customers\.xlsx, sheet "S": the (sheet's XML|workbook) is damaged after row \d+/);
    assert.equal(err.location.sheet, 'S');
  });
});

describe('reader errors: the header', () => {
  test('a header with no data rows names the header row', async () => {
    const err = await inputError('Customer ID,Tax Year,Name\n\n,,\n', 'customers.csv');
    assert.equal(
      err.message,
      'customers.csv has a header row (row 1) but no data rows. Add the records below the header and upload the file again.',
    );
    assert.deepEqual(err.location, { file: 'customers.csv', row: 1 });
  });

  test('missing required columns are all listed, with the headers found', async () => {
    const err = await inputError('customer id,Postcode,Notes\nA1,X,Y\n', 'customers.csv');
    assert.equal(
      err.message,
      'customers.csv: required columns "Tax Year", "Name" are missing from the header row (row 1, the closest match among the first 2 non-empty rows). Headers found: "customer id", "Postcode", "Notes". Add the missing columns (header matching ignores case and extra spaces) and upload the file again.',
    );
    assert.deepEqual(err.location, { file: 'customers.csv', row: 1, column: 'Tax Year' });
  });

  test('a missing optional column is not an error', async () => {
    const { source } = await readAll('Customer ID,Tax Year,Name\nA1,2023,N\n', { fileName: 'c.csv', columns });
    assert.deepEqual(source.columns, ['Customer ID', 'Tax Year', 'Name']);
  });

  test('duplicate headers (ignoring case and spaces) name the columns, in a workbook with the sheet', async () => {
    const xlsx = handMadeXlsx({
      sheets: [
        {
          name: 'Data',
          xml: sheetXml([
            ['Customer ID', 'Tax Year', 'Name', 'customer  id'],
            ['1', '2', '3', '4'],
          ]),
        },
      ],
    });
    const err = await inputError(xlsx, 'customers.xlsx');
    assert.equal(
      err.message,
      'customers.xlsx, sheet "Data", row 1: the header has the same column name more than once (case and spaces are ignored): "Customer ID" (columns A, D). Rename or remove the extra columns and upload the file again.',
    );
    assert.deepEqual(err.location, { file: 'customers.xlsx', sheet: 'Data', row: 1, column: 'Customer ID' });
  });

  test('cell problems do not throw: every row is handed out with its problems', async () => {
    const { rows } = await readAll('Customer ID,Tax Year,Name\nA1,abc,\n', { fileName: 'c.csv', columns });
    assert.deepEqual(rows[0]?.problems, [
      'row 2, column "Tax Year": "abc" is not a whole number',
      'row 2, column "Name": empty, but the column is required',
    ]);
  });

  test('rows can be read once only (single pass)', async () => {
    const source = await openRecords(streamOf('Customer ID,Tax Year,Name\nA1,1,N\n'), { fileName: 'c.csv', columns });
    assert.equal((await collect(source.rows)).length, 1);
    assert.equal((await collect(source.rows)).length, 0);
  });
});
