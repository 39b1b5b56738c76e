import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ColumnConfig } from '../../../runtime/config/schema';
import { ExcelDate, excelSerialToIso, numberToText } from '../../../batch-jobs/records/normalise';
import { col, readAll } from './fixtures';

/** Reads one value through a one-column CSV of the given type; returns the cell and its problems. */
async function one(value: string, type: ColumnConfig['type'], required = true) {
  const csv = `Id,Value\nx,"${value.replace(/"/g, '""')}"\n`;
  const { rows } = await readAll(csv, { fileName: 'v.csv', columns: [col('Id'), col('Value', type, required)] });
  return { value: rows[0]!.row.Value, problems: rows[0]!.problems };
}

describe('cell normalisation', () => {
  test('text is trimmed and empty text is null', async () => {
    assert.deepEqual(await one('  00042  ', 'text'), { value: '00042', problems: [] });
    assert.deepEqual(await one('   ', 'text', false), { value: null, problems: [] });
  });

  test('an empty required cell is a problem naming row and column; an empty optional one is not', async () => {
    assert.deepEqual(await one('', 'integer'), { value: null, problems: ['row 2, column "Value": empty, but the column is required'] });
    assert.deepEqual(await one('', 'integer', false), { value: null, problems: [] });
  });

  for (const [text, expected] of [
    ['42', 42],
    ['-3.5', -3.5],
    ['1e3', 1000],
    ['1,234.50', 1234.5],
    ['1,234,567', 1234567],
    [' 12 ', 12],
  ] as const) {
    test(`number: "${text}" reads as ${expected}`, async () => {
      assert.deepEqual(await one(text, 'number'), { value: expected, problems: [] });
    });
  }

  for (const [text, problem] of [
    ['abc', '"abc" is not a number'],
    ['1,234', '"1,234" is ambiguous (thousands separator or decimal comma?): write 1234 or 1.234'],
    ['1,5', '"1,5" is not a number (use a decimal point: 1.5)'],
    ['12,34.5', '"12,34.5" is not a number'],
  ] as const) {
    test(`number: "${text}" is a problem, and the cell keeps its text`, async () => {
      assert.deepEqual(await one(text, 'number'), { value: text, problems: [`row 2, column "Value": ${problem}`] });
    });
  }

  test('integer: whole numbers read, fractions and unsafe sizes are problems', async () => {
    assert.deepEqual(await one('2023', 'integer'), { value: 2023, problems: [] });
    assert.deepEqual(await one('1,000,000', 'integer'), { value: 1_000_000, problems: [] });
    assert.deepEqual((await one('abc', 'integer')).problems, ['row 2, column "Value": "abc" is not a whole number']);
    assert.deepEqual((await one('12.5', 'integer')).problems, ['row 2, column "Value": "12.5" is not a whole number']);
    assert.match((await one('123456789012345678', 'integer')).problems[0]!, /too large to be kept exactly.*declare the column as text/);
  });

  for (const [text, iso] of [
    ['2024-02-29', '2024-02-29'],
    ['2024-03-01T10:15:30Z', '2024-03-01T10:15:30.000Z'],
    ['2024-03-01T10:15:30.25+01:00', '2024-03-01T09:15:30.250Z'],
    ['2024-03-01 10:15', '2024-03-01T10:15:00.000Z'],
    ['45000', '2023-03-15'],
    ['45000.75', '2023-03-15T18:00:00.000Z'],
    ['1700000000', '2023-11-14T22:13:20.000Z'],
    ['1700000000123', '2023-11-14T22:13:20.123Z'],
    ['1700006400', '2023-11-15T00:00:00.000Z'],
  ] as const) {
    test(`date: "${text}" reads as ${iso}`, async () => {
      assert.deepEqual(await one(text, 'date'), { value: iso, problems: [] });
    });
  }

  for (const text of ['2023-02-29', '31/12/2023', 'yesterday', '2024-13-01', '5000000']) {
    test(`date: "${text}" is a problem that says how to write a date`, async () => {
      const { problems } = await one(text, 'date');
      assert.deepEqual(problems, [`row 2, column "Value": "${text}" is not a date (write it as YYYY-MM-DD, or YYYY-MM-DDTHH:MM:SSZ)`]);
    });
  }

  test('boolean: true/false/yes/no/1/0 in any case; anything else is a problem', async () => {
    for (const [text, value] of [
      ['TRUE', true],
      ['yes', true],
      ['1', true],
      ['False', false],
      ['NO', false],
      ['0', false],
    ] as const) {
      assert.deepEqual(await one(text, 'boolean'), { value, problems: [] }, text);
    }
    assert.deepEqual((await one('maybe', 'boolean')).problems, [
      'row 2, column "Value": "maybe" is not true/false (use true, false, yes, no, 1 or 0)',
    ]);
  });

  test('numbers as text read the way Excel shows them: 15 significant digits, no exponent for big ids', () => {
    assert.equal(numberToText(123), '123');
    assert.equal(numberToText(123456789012), '123456789012');
    assert.equal(numberToText(0.1 + 0.2), '0.3');
    assert.equal(numberToText(1e21), '1000000000000000000000');
    assert.equal(numberToText(-0), '0');
    assert.equal(numberToText(1e-7), '0.0000001');
  });

  test('Excel serials: the 1900 leap-year bug, times, and the 1904 system', () => {
    assert.equal(excelSerialToIso(new ExcelDate(1)), '1900-01-01');
    assert.equal(excelSerialToIso(new ExcelDate(59)), '1900-02-28');
    assert.equal(excelSerialToIso(new ExcelDate(61)), '1900-03-01');
    assert.equal(excelSerialToIso(new ExcelDate(45000.5)), '2023-03-15T12:00:00.000Z');
    assert.equal(excelSerialToIso(new ExcelDate(0, true)), '1904-01-01');
    assert.equal(excelSerialToIso(new ExcelDate(43538, true)), '2023-03-15');
  });
});
