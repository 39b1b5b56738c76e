/**
 * Cell normalisation: turns what a reader found in a cell (CSV text, or an xlsx number, string,
 * boolean or date-formatted number) into the `Cell` the pipeline's column type asks for.
 *
 * A value that does not fit its column is not an exception: the normaliser returns a problem
 * text (`"abc" is not a whole number`) that the reader prefixes with the row and column.
 */
import type { ColumnType } from '../../runtime/config/schema';
import type { Cell } from '../../runtime/model';

/** An xlsx number whose cell format is a date format (or a `t="d"` cell): a serial day count. */
export class ExcelDate {
  constructor(
    /** Days since the workbook's epoch, with the time of day as the fraction. */
    readonly serial: number,
    readonly date1904 = false,
  ) {}
}

/**
 * An xlsx formula cell saved without its computed value (what openpyxl and pandas write for any
 * text that starts with `=`, and what many generators write for real formulas).
 */
export class ExcelFormula {
  constructor(
    /** The formula without its leading `=` (empty for a shared-formula reference). */
    readonly formula: string,
  ) {}

  /** What the person typed: `=` and the formula. */
  get text(): string {
    return `=${this.formula}`;
  }
}

/** An xlsx number whose cell format shows it as an id would read: `000123` (format `000000`), `1.23E+15`. */
export class FormattedNumber {
  constructor(
    readonly value: number,
    /** The text the cell's number format shows. */
    readonly shown: string,
  ) {}
}

/** What a reader hands over for one cell before normalisation. */
export type RawCell = string | number | boolean | ExcelDate | ExcelFormula | FormattedNumber | null;

/** Either a normalised value or why the raw value does not fit the column. */
export type Normalised = { ok: true; value: Cell } | { ok: false; problem: string };

const MS_PER_DAY = 86_400_000;
/** Largest serial Excel accepts: 9999-12-31. */
const MAX_EXCEL_SERIAL = 2_958_465.999_99;
/** Numbers from here on in a date column are UNIX seconds (1973-03-03 on), not Excel serials. */
const MIN_UNIX_SECONDS = 100_000_000;
/** Numbers from here on are UNIX milliseconds (5138 and later as seconds is not plausible). */
const MIN_UNIX_MILLIS = 100_000_000_000;

/** Quotes a value for a problem message, cut to a readable length. */
function quoteValue(value: unknown): string {
  let s =
    typeof value === 'string'
      ? value
      : value instanceof ExcelDate
        ? (excelSerialToIso(value) ?? String(value.serial))
        : value instanceof ExcelFormula
          ? value.text
          : value instanceof FormattedNumber
            ? value.shown
            : String(value);
  if (s.length > 60) s = `${s.slice(0, 57)}...`;
  return JSON.stringify(s);
}

/** A number as Excel shows it in a General cell: up to 15 significant digits, never exponent form for integers. */
export function numberToText(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Object.is(n, -0)) return '0';
  if (Number.isInteger(n) && Math.abs(n) >= 1e21) return BigInt(n).toString();
  const rounded = Number(n.toPrecision(15));
  if (Number.isInteger(rounded) && Math.abs(rounded) >= 1e21) return BigInt(rounded).toString();
  const s = String(rounded);
  if (!/e/i.test(s)) return s;
  // Small fractions such as 1e-7: write them out in full, as a person would type them.
  const digits = rounded.toFixed(Math.min(100, 20));
  return digits.replace(/\.?0+$/, '');
}

/** Converts an Excel serial day number to ISO 8601 (date only when there is no time part). */
export function excelSerialToIso(date: ExcelDate): string | null {
  return serialToIso(date.serial, date.date1904);
}

function serialToIso(serial: number, date1904: boolean): string | null {
  if (!Number.isFinite(serial) || serial < 0 || serial > MAX_EXCEL_SERIAL) return null;
  let totalMs = Math.round(serial * MS_PER_DAY);
  let epoch: number;
  if (date1904) {
    epoch = Date.UTC(1904, 0, 1);
  } else {
    // Excel's 1900 system counts the fictitious 1900-02-29 (serial 60), so serials before it are one day off.
    epoch = serial < 61 ? Date.UTC(1899, 11, 31) : Date.UTC(1899, 11, 30);
    // The fictitious 1900-02-29 does not exist: read it as 1900-02-28.
    if (serial >= 60 && serial < 61) totalMs -= MS_PER_DAY;
  }
  return msToIso(epoch + totalMs);
}

const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));

/** Epoch milliseconds to ISO 8601 (date only at midnight). Hand-written: Date#toISOString was the hot spot. */
function msToIso(ms: number, alwaysTime = false): string | null {
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) return null;
  const days = Math.floor(ms / MS_PER_DAY);
  const tod = ms - days * MS_PER_DAY;
  // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  if (y < 0 || y > 9999) return new Date(ms).toISOString();
  const date = `${String(y).padStart(4, '0')}-${pad2(m)}-${pad2(d)}`;
  if (tod === 0 && !alwaysTime) return date;
  const h = Math.floor(tod / 3_600_000);
  const mi = Math.floor((tod % 3_600_000) / 60_000);
  const sec = Math.floor((tod % 60_000) / 1000);
  const milli = tod % 1000;
  return `${date}T${pad2(h)}:${pad2(mi)}:${pad2(sec)}.${String(milli).padStart(3, '0')}Z`;
}

/** A number in a date column: an Excel serial, or UNIX seconds/milliseconds (unambiguous ranges). */
function numberToIso(n: number, date1904: boolean): string | null {
  // A UNIX time is an instant: always written with its time, even at midnight.
  if (n >= MIN_UNIX_MILLIS) return msToIso(Math.round(n), true);
  if (n >= MIN_UNIX_SECONDS) return msToIso(Math.round(n * 1000), true);
  return serialToIso(n, date1904);
}

const PLAIN_NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
/** 1,234 or 1,234,567.50: comma groups of three. */
const COMMA_GROUPED = /^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$/;

/**
 * Parses number text. Thousands separators are accepted only where they cannot be a decimal
 * comma: "1,234.50" and "1,234,567" are read, "1,234" alone is ambiguous and "1,5" is refused.
 */
function parseNumberText(text: string): { ok: true; value: number } | { ok: false; problem: string } {
  const s = text.trim();
  if (PLAIN_NUMBER.test(s)) {
    const n = Number(s);
    if (Number.isFinite(n)) return { ok: true, value: n };
    return { ok: false, problem: `${quoteValue(text)} is out of range for a number` };
  }
  if (COMMA_GROUPED.test(s)) {
    const groups = s.split(',').length - 1;
    if (s.includes('.') || groups >= 2) return { ok: true, value: Number(s.replace(/,/g, '')) };
    const plain = s.replace(/,/g, '');
    const decimal = s.replace(',', '.');
    return {
      ok: false,
      problem: `${quoteValue(text)} is ambiguous (thousands separator or decimal comma?): write ${plain} or ${decimal}`,
    };
  }
  if (/^[+-]?\d+,\d+$/.test(s)) {
    return { ok: false, problem: `${quoteValue(text)} is not a number (use a decimal point: ${s.replace(',', '.')})` };
  }
  return { ok: false, problem: `${quoteValue(text)} is not a number` };
}

const ISO_DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Whether year-month-day (month 1-12) is a day of the Gregorian calendar. */
export function validDate(y: number, m: number, d: number): boolean {
  if (m < 1 || m > 12 || d < 1) return false;
  const leap = m === 2 && y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  return d <= DAYS_IN_MONTH[m - 1]! + (leap ? 1 : 0);
}

/** Digits of s[from..to) as a number, or -1 when one is not a digit. */
export function digits(s: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    n = n * 10 + c;
  }
  return n;
}

/** Parses date text: ISO 8601 forms, or a number (Excel serial, UNIX seconds or milliseconds). */
function parseDateText(text: string, date1904 = false): string | null {
  const s = text.trim();
  if (s.length === 10 && s.charCodeAt(4) === 45 && s.charCodeAt(7) === 45) {
    // YYYY-MM-DD, the common case, without a regular expression.
    const y = digits(s, 0, 4);
    const mo = digits(s, 5, 7);
    const d = digits(s, 8, 10);
    if (y >= 0 && mo >= 0 && d >= 0) return validDate(y, mo, d) ? s : null;
  }
  const m = ISO_DATE_TIME.exec(s);
  if (m) {
    const [y, mo, d, h, mi] = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])];
    const sec = m[6] === undefined ? 0 : Number(m[6]);
    if (!validDate(y, mo, d) || h > 24 || mi > 59 || sec > 60) return null;
    if (h === 24 && (mi > 0 || sec > 0)) return null;
    const ms = m[7] === undefined ? 0 : Math.round(Number(`0.${m[7]}`) * 1000);
    let offsetMin = 0;
    const zone = m[8];
    if (zone && zone.toUpperCase() !== 'Z') {
      const sign = zone.startsWith('-') ? -1 : 1;
      const digits = zone.slice(1).replace(':', '');
      const oh = Number(digits.slice(0, 2));
      const om = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
      if (oh > 23 || om > 59) return null;
      offsetMin = sign * (oh * 60 + om);
    }
    const t = Date.UTC(y, mo - 1, d, h, mi, sec === 60 ? 59 : sec, ms) - offsetMin * 60_000;
    const iso = new Date(t).toISOString();
    return iso;
  }
  if (PLAIN_NUMBER.test(s)) return numberToIso(Number(s), date1904);
  return null;
}

const TRUE_WORDS = new Set(['true', 'yes', '1']);
const FALSE_WORDS = new Set(['false', 'no', '0']);

/** An empty cell: none at all, null, or only whitespace. */
export function isBlank(raw: RawCell | undefined): boolean {
  return raw === null || raw === undefined || (typeof raw === 'string' && raw.trim() === '');
}

/** The cell as text, the way it reads in the file (used for `text` columns and header cells). */
export function rawToText(raw: RawCell): string | null {
  if (raw === null) return null;
  if (typeof raw === 'string') {
    const s = raw.trim();
    return s === '' ? null : s;
  }
  if (typeof raw === 'number') return numberToText(raw);
  if (typeof raw === 'boolean') return raw ? 'TRUE' : 'FALSE';
  if (raw instanceof ExcelFormula) return raw.text;
  if (raw instanceof FormattedNumber) return raw.shown;
  return excelSerialToIso(raw) ?? numberToText(raw.serial);
}

/** Why a formula without a computed value cannot stand for a value of a typed column. */
function formulaProblem(raw: ExcelFormula): string {
  const what = raw.formula === '' ? 'a formula' : `the formula ${raw.text.length > 60 ? `${raw.text.slice(0, 57)}...` : raw.text}`;
  return `holds ${what} with no computed value (the file was saved by a program that does not calculate); open and save it in Excel, or export the values`;
}

/** Normalises one raw cell for a column type. Empty cells become null (the caller checks `required`). */
export function normaliseCell(raw: RawCell, type: ColumnType, date1904 = false): Normalised {
  if (isBlank(raw)) return { ok: true, value: null };
  if (raw instanceof ExcelFormula) {
    // Text columns keep what was typed (written back as text, never as a formula); other types needed the result.
    return type === 'text' && raw.formula !== '' ? { ok: true, value: raw.text } : { ok: false, problem: formulaProblem(raw) };
  }
  if (raw instanceof FormattedNumber) {
    if (type === 'text') return { ok: true, value: raw.shown };
    raw = raw.value;
  }
  switch (type) {
    case 'text':
      return { ok: true, value: rawToText(raw) };
    case 'number':
    case 'integer': {
      let n: number;
      if (typeof raw === 'number') n = raw;
      else if (raw instanceof ExcelDate) n = raw.serial;
      else if (typeof raw === 'string') {
        const parsed = parseNumberText(raw);
        if (!parsed.ok) {
          return type === 'integer' && !parsed.problem.includes('ambiguous')
            ? { ok: false, problem: `${quoteValue(raw.trim())} is not a whole number` }
            : parsed;
        }
        n = parsed.value;
      } else {
        return { ok: false, problem: `${quoteValue(rawToText(raw))} is not a ${type === 'integer' ? 'whole number' : 'number'}` };
      }
      if (type === 'integer') {
        if (!Number.isInteger(n)) return { ok: false, problem: `${quoteValue(rawToText(raw))} is not a whole number` };
        if (!Number.isSafeInteger(n)) {
          return {
            ok: false,
            problem: `${quoteValue(rawToText(raw))} is too large to be kept exactly as a whole number (declare the column as text if it is an id)`,
          };
        }
      }
      return { ok: true, value: Object.is(n, -0) ? 0 : n };
    }
    case 'date': {
      let iso: string | null;
      if (raw instanceof ExcelDate) iso = excelSerialToIso(raw);
      else if (typeof raw === 'number') iso = numberToIso(raw, date1904);
      else if (typeof raw === 'string') iso = parseDateText(raw, date1904);
      else iso = null;
      if (iso === null) {
        return { ok: false, problem: `${quoteValue(rawToText(raw))} is not a date (write it as YYYY-MM-DD, or YYYY-MM-DDTHH:MM:SSZ)` };
      }
      return { ok: true, value: iso };
    }
    case 'boolean': {
      if (typeof raw === 'boolean') return { ok: true, value: raw };
      const word = (rawToText(raw) ?? '').toLowerCase();
      if (TRUE_WORDS.has(word)) return { ok: true, value: true };
      if (FALSE_WORDS.has(word)) return { ok: true, value: false };
      return { ok: false, problem: `${quoteValue(rawToText(raw))} is not true/false (use true, false, yes, no, 1 or 0)` };
    }
  }
}
