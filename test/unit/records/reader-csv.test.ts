import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InputError } from '../../../runtime/errors';
import { col, readAll, rejection } from './fixtures';

const customers = [col('Customer ID'), col('Tax Year', 'integer'), col('Postcode', 'text', false)];

describe('CSV reader', () => {
  test('declared columns come out under their schema name, others under their header text, in file order', async () => {
    // given a header whose case and spacing differ from the schema, and an undeclared column
    const csv = 'customer  id ,Notes, TAX YEAR\n00123, hello ,2023\n';
    // when it is read
    const { source, rows } = await readAll(csv, { fileName: 'c.csv', columns: customers });
    // then declared names replace the header text, undeclared ones keep it (trimmed), ids keep leading zeros
    assert.equal(source.kind, 'csv');
    assert.deepEqual(source.columns, ['Customer ID', 'Notes', 'Tax Year']);
    assert.deepEqual(rows, [{ rowNumber: 2, row: { 'Customer ID': '00123', Notes: 'hello', 'Tax Year': 2023 }, problems: [] }]);
  });

  for (const [name, delimiter] of [
    ['semicolon', ';'],
    ['pipe', '|'],
    ['tab', '\t'],
    ['comma', ','],
  ] as const) {
    test(`detects a ${name} delimiter in a .csv from the header line`, async () => {
      // given a .csv separated by the delimiter, with the other candidates inside values
      const other = delimiter === ',' ? ';' : ',';
      const csv = [['Customer ID', 'Tax Year'].join(delimiter), [`A${other}1`, '2023'].join(delimiter)].join('\n');
      // when it is read
      const { rows } = await readAll(csv, { fileName: 'c.csv', columns: customers });
      // then the values are split on that delimiter only
      assert.deepEqual(rows[0]?.row, { 'Customer ID': `A${other}1`, 'Tax Year': 2023 });
    });
  }

  test('a .tsv is split on tabs even when its header holds commas', async () => {
    const tsv = 'Customer ID\tTax Year\tA, B, C\nX1\t2023\ta,b\n';
    const { source, rows } = await readAll(tsv, { fileName: 'c.tsv', columns: customers });
    assert.equal(source.kind, 'tsv');
    assert.deepEqual(rows[0]?.row, { 'Customer ID': 'X1', 'Tax Year': 2023, 'A, B, C': 'a,b' });
  });

  test('handles a BOM, CRLF line ends and quoted newlines; row numbers count records, not lines', async () => {
    // given a UTF-8 BOM, CRLF, and a quoted value spanning two lines in the first record
    const csv = '\ufeffCustomer ID,Tax Year,Note\r\nA1,2023,"two\r\nlines, and ""quotes"""\r\nA2,2024,plain\r\n';
    const { source, rows } = await readAll(csv, { fileName: 'c.csv', columns: customers });
    // then the BOM is not part of the first header, and the second record is row 3
    assert.deepEqual(source.columns, ['Customer ID', 'Tax Year', 'Note']);
    assert.deepEqual(
      rows.map((r) => [r.rowNumber, r.row.Note]),
      [
        [2, 'two\r\nlines, and "quotes"'],
        [3, 'plain'],
      ],
    );
  });

  test('fully empty rows are skipped but still counted in row numbers', async () => {
    const csv = 'Customer ID,Tax Year\n\nA1,2023\n,\n  ,  \nA2,2024\n\n';
    const { rows } = await readAll(csv, { fileName: 'c.csv', columns: customers });
    assert.deepEqual(
      rows.map((r) => [r.rowNumber, r.row['Customer ID']]),
      [
        [3, 'A1'],
        [6, 'A2'],
      ],
    );
  });

  test('reads the same rows whatever the chunk boundaries (mid CRLF, mid quote, mid multi-byte character)', async () => {
    // given tricky records repeated past the 64 KB that are sniffed at once, so later ones arrive in small chunks
    const tricky = '"Ä1";2023;"Zoë\r\nMüller"\r\nÅ2;2024;日本語\r\n';
    const csv = `Customer ID;Tax Year;Name\r\n${tricky.repeat(1600)}`;
    assert.ok(Buffer.byteLength(csv) > 66 * 1024);
    const whole = await readAll(csv, { fileName: 'c.csv', columns: customers });
    assert.equal(whole.rows.length, 3200);
    assert.deepEqual(whole.rows.at(-1), { rowNumber: 3201, row: { 'Customer ID': 'Å2', 'Tax Year': 2024, Name: '日本語' }, problems: [] });
    assert.equal(whole.rows.at(-2)?.row.Name, 'Zoë\r\nMüller');
    for (const size of [1, 3, 7, 4099]) {
      // when the same bytes arrive in chunks of `size`
      const cut = await readAll(csv, { fileName: 'c.csv', columns: customers }, size);
      // then the rows are the same
      assert.deepEqual(cut.rows, whole.rows, `chunks of ${size} bytes`);
    }
  });

  test('reads UTF-16 text with a BOM (Excel "Unicode text") and falls back to Windows-1252 for non-UTF-8 bytes', async () => {
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('Customer ID\tTax Year\r\nMüller\t2023\r\n', 'utf16le')]);
    const a = await readAll(utf16, { fileName: 'c.tsv', columns: customers });
    assert.equal(a.rows[0]?.row['Customer ID'], 'Müller');
    const latin1 = Buffer.from('Customer ID,Tax Year\nM\xfcller,2023\n', 'latin1');
    const b = await readAll(latin1, { fileName: 'c.csv', columns: customers });
    assert.equal(b.rows[0]?.row['Customer ID'], 'Müller');
  });

  test('a row with more values than the header has columns carries a problem naming the row', async () => {
    const csv = 'Customer ID,Tax Year\nA1,2023,oops\nA2,2024,\n';
    const { rows } = await readAll(csv, { fileName: 'c.csv', columns: customers });
    assert.equal(rows[0]?.problems.length, 1);
    assert.match(rows[0]!.problems[0]!, /^row 2: 3 values but the header has 2 columns; the extra values \("oops"\)/);
    // a trailing empty value is not a problem
    assert.deepEqual(rows[1]?.problems, []);
  });

  test('a quoted value that is never closed is an InputError naming the file and row', async () => {
    const csv = 'Customer ID,Tax Year\nA1,2023\n"A2,2024\nA3,2025\n';
    const err = await rejection(readAll(csv, { fileName: 'broken.csv', columns: customers }));
    assert.ok(err instanceof InputError);
    assert.match(err.message, /^broken\.csv, row 3: a quoted value is never closed/);
    assert.match(err.message, /closing quote/);
    assert.deepEqual(err.location, { file: 'broken.csv', row: 3 });
  });

  test('honours Excel\'s "sep=" first line, which is not counted as a row', async () => {
    const csv = 'sep=|\r\nCustomer ID|Tax Year|Note\r\nA1|2023|a;b,c\r\n';
    const { source, rows } = await readAll(csv, { fileName: 'c.csv', columns: customers });
    assert.deepEqual(source.columns, ['Customer ID', 'Tax Year', 'Note']);
    assert.deepEqual(rows, [{ rowNumber: 2, row: { 'Customer ID': 'A1', 'Tax Year': 2023, Note: 'a;b,c' }, problems: [] }]);
  });

  test('bytes that are not UTF-8 after a UTF-8 start are an InputError naming the row, not silent replacement characters', async () => {
    const good = `Customer ID,Tax Year\n${'A1,2023\n'.repeat(10_000)}`;
    const bytes = Buffer.concat([Buffer.from(good, 'utf8'), Buffer.from('M\xfcller,2024\n', 'latin1')]);
    const err = await rejection(readAll(bytes, { fileName: 'mixed.csv', columns: customers }));
    assert.ok(err instanceof InputError);
    assert.match(err.message, /^mixed\.csv, row 10002: the text is not valid utf-8/);
    assert.match(err.message, /Save the file as "CSV UTF-8"/);
    assert.deepEqual(err.location, { file: 'mixed.csv', row: 10_002 });
  });

  test('a blank header between named columns becomes "Column X"; blank trailing headers are dropped', async () => {
    const csv = 'Customer ID,,Tax Year,,\nA1,x,2023,,\n';
    const { source, rows } = await readAll(csv, { fileName: 'c.csv', columns: customers });
    assert.deepEqual(source.columns, ['Customer ID', 'Column B', 'Tax Year']);
    assert.deepEqual(rows[0]?.row, { 'Customer ID': 'A1', 'Column B': 'x', 'Tax Year': 2023 });
  });
});
