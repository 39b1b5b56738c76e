import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { csvField, escapeXmlText, neutraliseFormula, parseIsoDate } from '../../../batch-jobs/workbook/cells';

describe('neutraliseFormula', () => {
  it('prefixes a single quote to text that starts with a formula or DDE character', () => {
    for (const text of ['=SUM(A1:A2)', '+1', '-1+2', '@SUM(1)', '\tcmd', '\rcmd', '=cmd|" /C calc"!A0']) {
      assert.equal(neutraliseFormula(text), `'${text}`, JSON.stringify(text));
    }
  });

  it('leaves other text alone, including formula characters after the first', () => {
    for (const text of ['00123', 'a=b', 'x+1', 'mail@example.com', ' =1', '', "'quoted"]) {
      assert.equal(neutraliseFormula(text), text, JSON.stringify(text));
    }
  });
});

describe('csvField', () => {
  it('writes a negative number of a number column plainly, without the quote prefix', () => {
    assert.equal(csvField(-12.5, 'number'), '-12.5');
    assert.equal(csvField('-7', 'integer'), '-7');
  });

  it('neutralises formula-looking text and quotes text holding a comma, quote or line break', () => {
    assert.equal(csvField('=1+2', 'text'), "'=1+2");
    assert.equal(csvField('-7', 'text'), "'-7");
    assert.equal(csvField('a,"b"\nc', 'text'), '"a,""b""\nc"');
    assert.equal(csvField('=HYPERLINK("x")', 'text'), `"'=HYPERLINK(""x"")"`);
  });

  it('writes empty, boolean and date cells plainly', () => {
    assert.equal(csvField(null, 'text'), '');
    assert.equal(csvField(true, 'boolean'), 'TRUE');
    assert.equal(csvField('2024-03-01', 'date'), '2024-03-01');
  });
});

describe('parseIsoDate', () => {
  it('turns an ISO date into its Excel serial number', () => {
    assert.deepEqual(parseIsoDate('2024-03-01'), { serial: 45352, hasTime: false });
    assert.deepEqual(parseIsoDate('1900-03-01'), { serial: 61, hasTime: false });
  });

  it('keeps the time of day as the fraction, ignoring a UTC offset', () => {
    assert.deepEqual(parseIsoDate('2024-03-01T18:00:00Z'), { serial: 45352.75, hasTime: true });
    assert.deepEqual(parseIsoDate('2024-03-01T18:00:00+02:00'), { serial: 45352.75, hasTime: true });
  });

  it('refuses impossible dates, other formats and dates Excel numbers differently', () => {
    for (const text of ['2024-02-30', '2023-02-29', '2024-13-01', '01/03/2024', '2024-03-01T25:00', '1899-12-31', '1900-02-28', 'abc']) {
      assert.equal(parseIsoDate(text), undefined, text);
    }
  });
});

describe('escapeXmlText', () => {
  it('escapes markup, keeps CR as a character reference and escapes literal _xHHHH_ text', () => {
    assert.equal(escapeXmlText('a<b>&c'), 'a&lt;b&gt;&amp;c');
    assert.equal(escapeXmlText('a\r\nb'), 'a&#13;\nb');
    assert.equal(escapeXmlText('_x0041_'), '_x005F_x0041_');
  });

  it('writes control characters as _xHHHH_ and replaces lone surrogates', () => {
    assert.equal(escapeXmlText('a\u0001b'), 'a_x0001_b');
    assert.equal(escapeXmlText('a\ud800b'), 'a\ufffdb');
    assert.equal(escapeXmlText('emoji \ud83d\ude00'), 'emoji \ud83d\ude00');
  });
});
