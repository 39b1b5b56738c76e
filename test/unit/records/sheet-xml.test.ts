import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InputError } from '../../../runtime/errors';
import { ExcelDate } from '../../../batch-jobs/records/normalise';
import type { RawRow } from '../../../batch-jobs/records/raw';
import { decodeEntities, SheetXmlError, SheetXmlScanner, type SheetContext } from '../../../batch-jobs/records/sheet-xml';
import { col, collect, handMadeXlsx, rejection, readAll, streamOf } from './fixtures';
import { openRecords } from '../../../batch-jobs/records/reader';

const ctx: SheetContext = {
  sharedString: (i) => ['zero', 'one & two'][i],
  isDateStyle: (s) => s === 1,
  date1904: false,
};

/** Scans the XML fed in pieces of `size` characters. */
function scan(xml: string, size = xml.length): RawRow[] {
  const scanner = new SheetXmlScanner(ctx);
  const rows: RawRow[] = [];
  for (let i = 0; i < xml.length && !scanner.done; i += size) {
    scanner.write(xml.slice(i, i + size));
    rows.push(...scanner.take());
  }
  scanner.end();
  return rows;
}

const wrap = (inner: string) =>
  `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><dimension ref="A1:C3"/><sheetData>${inner}</sheetData><pageMargins left="0.7"/></worksheet>`;

describe('worksheet XML scanner', () => {
  const tricky = wrap(
    '<!-- a comment with <c> inside -->' +
      '<row r="1" spans="1:3"><c r="A1" t="s"><v>1</v></c><c r="B1" t="inlineStr"><is><t xml:space="preserve"> a &lt;b&gt; &#x41;&#66; </t></is></c><c r="C1" t="str"><f>A1&amp;"x"</f><v>one &amp; twox</v></c></row>' +
      '<?pi something?>' +
      '<row r="2"><c r="A2" s="1"><v>45000</v></c><c r="C2" t="b"><v>1</v></c><c r="D2" t="e"><v>#N/A</v></c></row>' +
      '<row r=\'3\'><c r=\'B3\' t=\'inlineStr\'><is><t><![CDATA[<not a tag> & raw]]></t></is></c><c r="C3" t="s" /><c r="E3"><v>-1.5E-3</v></c></row>' +
      '<row r="4"/>',
  );
  const expected: RawRow[] = [
    { rowNumber: 1, cells: ['one & two', ' a <b> AB ', 'one & twox'] },
    { rowNumber: 2, cells: [new ExcelDate(45000), undefined as never, true, '#N/A'] },
    { rowNumber: 3, cells: [undefined as never, '<not a tag> & raw', undefined as never, undefined as never, -0.0015] },
    { rowNumber: 4, cells: [] },
  ];

  test('reads shared, inline, formula, date, boolean, error and number cells past comments, PIs and CDATA', () => {
    const rows = scan(tricky);
    assert.equal(rows.length, 4);
    rows.forEach((r, i) => {
      assert.equal(r.rowNumber, expected[i]!.rowNumber);
      assert.deepEqual([...r.cells], [...expected[i]!.cells], `row ${r.rowNumber}`);
    });
  });

  test('gives the same rows whatever the chunk boundaries', () => {
    const whole = scan(tricky);
    for (let size = 1; size <= 40; size++) assert.deepEqual(scan(tricky, size), whole, `pieces of ${size}`);
  });

  test('inline rich text is joined and phonetic runs (rPh) are left out', () => {
    const rows = scan(
      wrap(
        '<row r="1"><c r="A1" t="inlineStr"><is><r><t>東</t></r><r><rPr><b/></rPr><t>京</t></r><rPh sb="0" eb="2"><t>トウキョウ</t></rPh></is></c></row>',
      ),
    );
    assert.deepEqual(rows, [{ rowNumber: 1, cells: ['東京'] }]);
  });

  test('stops at </sheetData>: what follows is not read', () => {
    const scanner = new SheetXmlScanner(ctx);
    scanner.write(`${wrap('<row r="1"><c r="A1"><v>1</v></c></row>')}<garbage`);
    assert.equal(scanner.done, true);
    assert.equal(scanner.take().length, 1);
  });

  for (const [what, xml, message] of [
    ['a mismatched close tag', wrap('<row r="1"><c r="A1"><v>1</c></row>'), /<\/c> where <\/v> was expected/],
    ['an unknown entity', wrap('<row r="1"><c r="A1" t="inlineStr"><is><t>&nbsp;</t></is></c></row>'), /unknown entity &nbsp;/],
    ['a DOCTYPE', `<!DOCTYPE x [<!ENTITY a "b">]>${wrap('')}`, /DOCTYPEs and entity declarations are not allowed/],
    ['an unquoted attribute', wrap('<row r=1></row>'), /attribute r has no quoted value/],
    ['"<" inside a tag', wrap('<row r="1"<c></row>'), /"<" inside a tag/],
    ['a missing shared string', wrap('<row r="1"><c r="A1" t="s"><v>7</v></c></row>'), /refers to shared string 7/],
    ['an early end', '<worksheet><sheetData><row r="1"><c r="A1"><v>1</v></c></row>', /the XML ends before <\/sheetData>/],
    ['an end inside a tag', '<worksheet><sheetData><row r="1"><c r="A1"><v>1</v', /the XML ends inside "<\/v"/],
  ] as const) {
    test(`refuses ${what}`, () => {
      assert.throws(
        () => scan(xml),
        (err: Error) => err instanceof SheetXmlError && message.test(err.message),
      );
    });
  }

  test('decodes XML entities and character references', () => {
    assert.equal(decodeEntities('a &amp; b &lt;&gt; &quot;&apos; &#233;&#x1F600;'), 'a & b <> "\' é😀');
  });

  test('a workbook whose sheet bytes were altered (CRC mismatch) is an InputError, not data', async () => {
    // given a stored (uncompressed) sheet with one digit changed after zipping
    const xlsx = handMadeXlsx({
      sheets: [
        { name: 'S', xml: '<row r="1"><c r="A1" t="inlineStr"><is><t>Id</t></is></c></row><row r="2"><c r="A2"><v>12345</v></c></row>' },
      ],
    });
    const at = xlsx.indexOf('12345');
    xlsx[at] = '9'.charCodeAt(0);
    // when it is read, the rows are handed out but the end of the sheet reports the damage
    const source = await openRecords(streamOf(xlsx), { fileName: 'crc.xlsx', columns: [col('Id')] });
    const err = await rejection(collect(source.rows));
    assert.ok(err instanceof InputError);
    assert.match(err.message, /^crc\.xlsx, sheet "S": the workbook is damaged after row 2 \(CRC-32 check failed/);
  });

  test('the reader reads a sheet with comments, CDATA and single-quoted attributes end to end', async () => {
    const xlsx = handMadeXlsx({
      sheets: [
        {
          name: 'S',
          xml: "<!-- c --><row r='1'><c r='A1' t='inlineStr'><is><t>Id</t></is></c></row><row r='2'><c r='A2' t='inlineStr'><is><t><![CDATA[a<b]]></t></is></c></row>",
        },
      ],
    });
    const { rows } = await readAll(xlsx, { fileName: 'x.xlsx', columns: [col('Id')] });
    assert.deepEqual(rows, [{ rowNumber: 2, row: { Id: 'a<b' }, problems: [] }]);
  });
});
