import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { openRecords } from '../../../batch-jobs/records/reader';
import { col, handMadeXlsx, readAll, streamedWorkbookBytes, streamOf, workbookBytes } from './fixtures';

describe('xlsx reader', () => {
  test('reads shared-string workbooks: ids stay text, numbers, whole numbers, dates, booleans', async () => {
    // given a workbook as exceljs writes it (shared strings, styles with date formats)
    const xlsx = await workbookBytes((wb) => {
      const ws = wb.addWorksheet('Customers');
      ws.addRow(['Customer ID', 'Tax Year', 'Since', 'Seen At', 'Active', 'Amount']);
      ws.addRow([123, 2023, new Date(Date.UTC(2021, 4, 17)), new Date(Date.UTC(2021, 4, 17, 9, 30, 15)), true, 1234.5]);
      ws.addRow(['00124', '2024', '2022-01-31', '2022-01-31T10:00:00Z', 'no', '1,234.50']);
      ws.addRow([12345678901234, 2025.5, 45000, 45000.25, 1, 7]);
      ws.getColumn(3).numFmt = 'yyyy-mm-dd';
      ws.getColumn(4).numFmt = 'yyyy-mm-dd hh:mm:ss';
    });
    const columns = [
      col('Customer ID'),
      col('Tax Year', 'integer'),
      col('Since', 'date'),
      col('Seen At', 'date'),
      col('Active', 'boolean'),
      col('Amount', 'number'),
    ];
    // when it is read
    const { source, rows } = await readAll(xlsx, { fileName: 'customers.xlsx', columns });
    // then each cell is normalised for its column
    assert.equal(source.kind, 'xlsx');
    assert.equal(source.sheet, 'Customers');
    assert.deepEqual(
      rows.map((r) => r.row),
      [
        {
          'Customer ID': '123',
          'Tax Year': 2023,
          Since: '2021-05-17',
          'Seen At': '2021-05-17T09:30:15.000Z',
          Active: true,
          Amount: 1234.5,
        },
        {
          'Customer ID': '00124',
          'Tax Year': 2024,
          Since: '2022-01-31',
          'Seen At': '2022-01-31T10:00:00.000Z',
          Active: false,
          Amount: 1234.5,
        },
        {
          'Customer ID': '12345678901234',
          'Tax Year': '2025.5',
          Since: '2023-03-15',
          'Seen At': '2023-03-15T06:00:00.000Z',
          Active: true,
          Amount: 7,
        },
      ],
    );
    assert.deepEqual(rows[2]!.problems, ['row 4, column "Tax Year": "2025.5" is not a whole number']);
  });

  test('reads inline strings (exceljs streaming writer without shared strings)', async () => {
    const xlsx = await streamedWorkbookBytes(
      [
        ['Customer ID', 'Name'],
        ['007', '  Zoë Müller  '],
        [8, 'B & <C>'],
      ],
      false,
    );
    const { rows } = await readAll(xlsx, { fileName: 'inline.xlsx', columns: [col('Customer ID'), col('Name')] });
    assert.deepEqual(
      rows.map((r) => r.row),
      [
        { 'Customer ID': '007', Name: 'Zoë Müller' },
        { 'Customer ID': '8', Name: 'B & <C>' },
      ],
    );
  });

  test('rich text, hyperlink and formula cells are reduced to their text or value', async () => {
    const xlsx = await workbookBytes((wb) => {
      const ws = wb.addWorksheet('S');
      ws.addRow(['Name', 'Link', 'Total', 'Label']);
      ws.addRow([
        { richText: [{ text: 'Zo' }, { font: { bold: true }, text: 'ë' }, { text: ' M' }] },
        { text: 'Example site', hyperlink: 'https://example.com/' },
        { formula: 'C3*2', result: 246 },
        { formula: 'CONCAT("a","b")', result: 'ab' },
      ]);
    });
    const { rows } = await readAll(xlsx, {
      fileName: 'rich.xlsx',
      columns: [col('Name'), col('Link'), col('Total', 'number'), col('Label')],
    });
    assert.deepEqual(rows[0]?.row, { Name: 'Zoë M', Link: 'Example site', Total: 246, Label: 'ab' });
  });

  test('sparse rows: missing cells are empty, fully empty rows are skipped, row numbers are the sheet rows', async () => {
    const xlsx = await workbookBytes((wb) => {
      const ws = wb.addWorksheet('S');
      ws.getCell('A1').value = 'Id';
      ws.getCell('B1').value = 'Middle';
      ws.getCell('C1').value = 'Last';
      ws.getCell('A2').value = 'a';
      ws.getCell('C2').value = 'c';
      ws.getCell('B6').value = 'only b';
    });
    const { rows } = await readAll(xlsx, { fileName: 's.xlsx', columns: [col('Id', 'text', false)] });
    assert.deepEqual(rows, [
      { rowNumber: 2, row: { Id: 'a', Middle: null, Last: 'c' }, problems: [] },
      { rowNumber: 6, row: { Id: null, Middle: 'only b', Last: null }, problems: [] },
    ]);
  });

  test('reads the first visible sheet by default, or the named one (case-insensitive)', async () => {
    const xlsx = await workbookBytes((wb) => {
      const hidden = wb.addWorksheet('Hidden', { state: 'hidden' });
      hidden.addRow(['Id']);
      hidden.addRow(['from hidden']);
      const first = wb.addWorksheet('First');
      first.addRow(['Id']);
      first.addRow(['from first']);
      const second = wb.addWorksheet('Second Sheet');
      second.addRow(['Id']);
      second.addRow(['from second']);
    });
    const byDefault = await readAll(xlsx, { fileName: 'b.xlsx', columns: [col('Id')] });
    assert.equal(byDefault.source.sheet, 'First');
    assert.equal(byDefault.rows[0]?.row.Id, 'from first');
    const named = await readAll(xlsx, { fileName: 'b.xlsx', columns: [col('Id')], sheet: 'second sheet' });
    assert.equal(named.source.sheet, 'Second Sheet');
    assert.equal(named.rows[0]?.row.Id, 'from second');
  });

  test('hand-made XML: prefixed elements, cells and rows without r, t="d", error cells, phonetic runs skipped', async () => {
    // given the shapes other producers write (Open XML SDK prefixes, no r attributes, ...)
    const xlsx = handMadeXlsx({
      prefix: 'x',
      sharedStrings:
        '<x:si><x:t>Id</x:t></x:si><x:si><x:r><x:t>東</x:t></x:r><x:r><x:t>京</x:t></x:r><x:rPh sb="0" eb="2"><x:t>トウキョウ</x:t></x:rPh></x:si>',
      sheets: [
        {
          name: 'S',
          xml:
            '<x:row><x:c t="s"><x:v>0</x:v></x:c><x:c t="inlineStr"><x:is><x:t>When</x:t></x:is></x:c><x:c t="inlineStr"><x:is><x:t>Check</x:t></x:is></x:c></x:row>' +
            '<x:row><x:c t="s"><x:v>1</x:v></x:c><x:c t="d"><x:v>2024-05-06T07:08:09Z</x:v></x:c><x:c t="e"><x:v>#N/A</x:v></x:c></x:row>',
        },
      ],
    });
    const { rows } = await readAll(xlsx, { fileName: 'h.xlsx', columns: [col('Id'), col('When', 'date'), col('Check', 'number')] });
    assert.deepEqual(rows, [
      {
        rowNumber: 2,
        row: { Id: '東京', When: '2024-05-06T07:08:09.000Z', Check: '#N/A' },
        problems: ['row 2, column "Check": "#N/A" is not a number'],
      },
    ]);
  });

  test('dates: custom and built-in date formats, the 1904 system, serials in date columns without a date format', async () => {
    // given style 1 = custom "dd/mm/yyyy", style 2 = built-in 14, style 3 = a number format with "E" and "#"
    const styles =
      '<numFmts count="2"><numFmt numFmtId="164" formatCode="dd/mm/yyyy"/><numFmt numFmtId="165" formatCode="#,##0.00&quot; days&quot;"/></numFmts>' +
      '<cellXfs count="4"><xf numFmtId="0"/><xf numFmtId="164"/><xf numFmtId="14"/><xf numFmtId="165"/></cellXfs>';
    const sheet = (prefix: string) =>
      `<row r="1"><c r="A1" t="inlineStr"><is><t>A</t></is></c><c r="B1" t="inlineStr"><is><t>B</t></is></c><c r="C1" t="inlineStr"><is><t>C</t></is></c><c r="D1" t="inlineStr"><is><t>D</t></is></c></row>` +
      `<row r="2"><c r="A2" s="1"><v>${prefix}</v></c><c r="B2" s="2"><v>${prefix}</v></c><c r="C2" s="3"><v>${prefix}</v></c><c r="D2"><v>${prefix}</v></c></row>`;
    const columns = [col('A'), col('B'), col('C'), col('D', 'date')];
    const system1900 = await readAll(handMadeXlsx({ styles, sheets: [{ name: 'S', xml: sheet('45000') }] }), {
      fileName: 'd.xlsx',
      columns,
    });
    // then date-formatted cells read as dates even in text columns, the "days" format stays a number
    assert.deepEqual(system1900.rows[0]?.row, { A: '2023-03-15', B: '2023-03-15', C: '45000', D: '2023-03-15' });
    const system1904 = await readAll(handMadeXlsx({ styles, date1904: true, sheets: [{ name: 'S', xml: sheet('43538') }] }), {
      fileName: 'd.xlsx',
      columns,
    });
    assert.deepEqual(system1904.rows[0]?.row, { A: '2023-03-15', B: '2023-03-15', C: '43538', D: '2023-03-15' });
  });

  test('the header is the first non-empty row; data rows keep their sheet numbers', async () => {
    const xlsx = handMadeXlsx({
      sheets: [
        {
          name: 'S',
          xml: '<row r="3"><c r="B3" t="inlineStr"><is><t>Id</t></is></c></row><row r="4"><c r="B4"><v>1</v></c></row><row r="9"><c r="B9"><v>2</v></c></row>',
        },
      ],
    });
    const { rows } = await readAll(xlsx, { fileName: 'h.xlsx', columns: [col('Id')] });
    assert.deepEqual(
      rows.map((r) => [r.rowNumber, r.row.Id]),
      [
        [4, '1'],
        [9, '2'],
      ],
    );
  });

  test('reads a workbook larger than one chunk, deflated, with every row in order', async () => {
    const rowsXml = ['<row r="1"><c r="A1" t="inlineStr"><is><t>Id</t></is></c><c r="B1" t="inlineStr"><is><t>N</t></is></c></row>'];
    for (let r = 2; r <= 20_001; r++)
      rowsXml.push(`<row r="${r}"><c r="A${r}" t="inlineStr"><is><t>id-${r}</t></is></c><c r="B${r}"><v>${r * 3}</v></c></row>`);
    const xlsx = handMadeXlsx({ deflate: true, sheets: [{ name: 'S', xml: rowsXml.join('') }] });
    const { rows } = await readAll(xlsx, { fileName: 'big.xlsx', columns: [col('Id'), col('N', 'integer')] }, 1000);
    assert.equal(rows.length, 20_000);
    assert.ok(rows.every((r, i) => r.rowNumber === i + 2 && r.row.Id === `id-${i + 2}` && r.row.N === (i + 2) * 3));
  });

  test('temp files are removed after the rows are read, and after the reader stops early', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'records-tmp-'));
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = dir;
    try {
      const xlsx = await workbookBytes((wb) => {
        const ws = wb.addWorksheet('S');
        ws.addRow(['Id']);
        for (let i = 0; i < 10; i++) ws.addRow([i]);
      });
      const full = await openRecords(streamOf(xlsx), { fileName: 't.xlsx', columns: [col('Id')] });
      assert.equal((await readdir(dir)).length, 1, 'the upload is spooled while reading');
      for await (const _ of full.rows);
      assert.deepEqual(await readdir(dir), []);
      const early = await openRecords(streamOf(xlsx), { fileName: 't.xlsx', columns: [col('Id')] });
      for await (const _ of early.rows) break;
      assert.deepEqual(await readdir(dir), []);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
      await rm(dir, { recursive: true, force: true });
    }
  });
});
