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

  test('a row with more values than the header has columns carries a problem saying it is not processed', async () => {
    const csv = 'Customer ID,Tax Year\nA1,2023,oops\nA2,2024,\n';
    const { rows } = await readAll(csv, { fileName: 'c.csv', columns: customers });
    assert.equal(rows[0]?.problems.length, 1);
    // the message says what happens: the row fails (its item is reported, not sent), nothing is "ignored"
    assert.equal(
      rows[0]!.problems[0],
      'row 2: 3 values but the header has 2 columns, so the values may have shifted and the row is not processed (the extra values: "oops"). A value containing the delimiter must be quoted; fix the row and upload it again.',
    );
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

  test('bytes that are not UTF-8 fail only their row, naming row, column and byte; the other rows stay exact', async () => {
    // given a UTF-8 file (Zoë, 李雷) with one Latin-1 row far down, past the sniffed head and across chunks
    const good = `Customer ID,Tax Year\n${'Zoë 李雷,2023\n'.repeat(10_000)}`;
    const bytes = Buffer.concat([Buffer.from(good, 'utf8'), Buffer.from('M\xfcller,2024\n', 'latin1'), Buffer.from('Zoë,2025\n', 'utf8')]);
    const { source, rows } = await readAll(bytes, { fileName: 'mixed.csv', columns: customers }, 4096);
    assert.equal(rows.length, 10_002);
    assert.ok(rows.slice(0, 10_000).every((r) => r.row['Customer ID'] === 'Zoë 李雷' && r.problems.length === 0));
    assert.deepEqual(rows[10_001], { rowNumber: 10_003, row: { 'Customer ID': 'Zoë', 'Tax Year': 2025 }, problems: [] });
    const bad = rows[10_000]!;
    assert.equal(bad.rowNumber, 10_002);
    assert.equal(bad.row['Customer ID'], 'M\ufffdller');
    assert.deepEqual(bad.problems, [
      'row 10002, column "Customer ID": byte 2 of the value is 0xFC, which is not UTF-8 (in Windows-1252 it would be "ü"); the row is not processed. Save the file as "CSV UTF-8" and upload it again',
    ]);
    assert.deepEqual(source.notes, [], 'a UTF-8 file is never reinterpreted');
  });

  test('a file that is plainly Windows-1252 throughout is decoded as such, and the notes say so', async () => {
    const bytes = Buffer.from('Customer ID,Tax Year\nM\xfcller,2023\nCaf\xe9,2024\n', 'latin1');
    const { source, rows } = await readAll(bytes, { fileName: 'legacy.csv', columns: customers });
    assert.deepEqual(
      rows.map((r) => [r.row['Customer ID'], r.problems]),
      [
        ['Müller', []],
        ['Café', []],
      ],
    );
    assert.deepEqual(source.notes, [
      'legacy.csv: decoded as Windows-1252: the file is not UTF-8 (its first bytes hold no UTF-8 sequence, and other bytes).',
    ]);
  });

  test('a NUL byte fails its row, naming row, column and byte, instead of the whole file', async () => {
    const csv = 'Customer ID,Tax Year\nA1,2023\nA\u00002,2024\nA3,2025\n';
    const { rows } = await readAll(csv, { fileName: 'nul.csv', columns: customers });
    assert.deepEqual(
      rows.map((r) => r.problems.length),
      [0, 1, 0],
    );
    assert.equal(rows[1]!.row['Customer ID'], 'A\ufffd2');
    assert.equal(
      rows[1]!.problems[0],
      'row 3, column "Customer ID": holds a NUL character (byte 0) at byte 2 of the value; the row is not processed. Remove it (it is usually left over from a binary export) and upload the file again',
    );
  });

  test('a blank header between named columns becomes "Column X"; blank trailing headers are dropped', async () => {
    const csv = 'Customer ID,,Tax Year,,\nA1,x,2023,,\n';
    const { source, rows } = await readAll(csv, { fileName: 'c.csv', columns: customers });
    assert.deepEqual(source.columns, ['Customer ID', 'Column B', 'Tax Year']);
    assert.deepEqual(rows[0]?.row, { 'Customer ID': 'A1', 'Column B': 'x', 'Tax Year': 2023 });
  });
});
