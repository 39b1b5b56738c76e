/**
 * How one `Cell` of a typed column becomes an xlsx cell (SpreadsheetML with inline strings) and a
 * CSV field. Both outputs make the same decision about a value (number, date, boolean or text),
 * so the xlsx sheet and its CSV copy never disagree.
 *
 * Text that a spreadsheet would read as a formula (it starts with `=`, `+`, `-`, `@`, tab or CR)
 * is never written as a formula: in xlsx it is a string cell with the quotePrefix style (Excel
 * keeps it text when the cell is edited), in CSV it gets a leading single quote (OWASP).
 */
import type { ColumnType } from '../../runtime/config/schema';
import type { Cell } from '../../runtime/model';
import { digits, validDate } from '../records/normalise';

/** Longest text Excel keeps in one cell; longer text is cut in the xlsx copy (CSV keeps it whole). */
export const XLSX_MAX_CELL_CHARS = 32_767;
/** Excel's column limit (XFD). */
export const XLSX_MAX_COLUMNS = 16_384;

/** Indexes into `cellXfs` of styles.xml (see `ooxml-parts.ts`). */
export const STYLE = {
  normal: 0,
  header: 1,
  date: 2,
  dateTime: 3,
  quotedText: 4,
  label: 5,
} as const;

const FORMULA_START = /^[=+\-@\t\r]/;

/**
 * OWASP CSV-injection defence: text that starts with `=`, `+`, `-`, `@`, tab or CR gets a leading
 * single quote, so a spreadsheet shows it as text instead of evaluating it.
 */
export function neutraliseFormula(text: string): string {
  return FORMULA_START.test(text) ? `'${text}` : text;
}

// Characters XML 1.0 cannot hold or that a reader would alter: markup, CR (XML parsers turn a
// literal CR into LF), control characters (written as Excel's `_xHHHH_` escapes), lone surrogates
// and U+FFFE/U+FFFF (replaced by U+FFFD), and literal `_xHHHH_` text (Excel decodes it, so its
// underscore is escaped as `_x005F_`).
const XML_TEXT_ESCAPE =
  /[&<>\r\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]|_(?=[xX][0-9a-fA-F]{4}_)/g;

function escapeChar(ch: string): string {
  switch (ch) {
    case '&':
      return '&amp;';
    case '<':
      return '&lt;';
    case '>':
      return '&gt;';
    case '_':
      return '_x005F_';
    case '\r':
      return '&#13;'; // a character reference survives XML end-of-line normalisation
    default: {
      const code = ch.charCodeAt(0);
      if (code < 0x20) return `_x${code.toString(16).toUpperCase().padStart(4, '0')}_`;
      return '\ufffd';
    }
  }
}

/** Escapes text for an OOXML `<t>` element (`ST_Xstring`). */
export function escapeXmlText(text: string): string {
  return text.replace(XML_TEXT_ESCAPE, escapeChar);
}

/** Escapes text for an XML attribute value in double quotes. */
export function escapeXmlAttr(text: string): string {
  return escapeXmlText(text).replace(/"/g, '&quot;');
}

function cutForExcel(text: string): string {
  if (text.length <= XLSX_MAX_CELL_CHARS) return text;
  let end = XLSX_MAX_CELL_CHARS;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1; // do not split a surrogate pair
  return text.slice(0, end);
}

function isSpace(code: number): boolean {
  return code === 32 || code === 9 || code === 10 || code === 13;
}

/** An inline-string cell; formula-looking text gets the quotePrefix style. */
export function textCellXml(ref: string, value: string, style?: number): string {
  const text = cutForExcel(value);
  const s = style ?? (FORMULA_START.test(text) ? STYLE.quotedText : STYLE.normal);
  const styleAttr = s === STYLE.normal ? '' : ` s="${s}"`;
  const preserve =
    text.length > 0 && (isSpace(text.charCodeAt(0)) || isSpace(text.charCodeAt(text.length - 1))) ? ' xml:space="preserve"' : '';
  return `<c r="${ref}"${styleAttr} t="inlineStr"><is><t${preserve}>${escapeXmlText(text)}</t></is></c>`;
}

const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$/;
const MS_PER_DAY = 86_400_000;
/** Days between Excel's serial-number epoch (1899-12-30, given its 1900 leap-year bug) and 1970-01-01. */
const EXCEL_EPOCH_OFFSET_DAYS = 25_569;

export interface ExcelDate {
  /** Excel serial number (days since 1899-12-30, fraction = time of day). */
  serial: number;
  /** The text had a time part. */
  hasTime: boolean;
}

/**
 * Parses ISO 8601 date or date-time text (`2024-03-01`, `2024-03-01T10:20:30.5Z`) into an Excel
 * serial number. The wall-clock time written in the text is kept and any UTC offset is ignored,
 * because an Excel date has no time zone and a reader expects to see the time the text shows.
 * Returns undefined for anything else, for impossible dates (2024-02-30) and for dates before
 * 1900-03-01 or after 9999-12-31, which are then written as text.
 */
export function parseIsoDate(text: string): ExcelDate | undefined {
  const len = text.length;
  if (len < 10 || len > 40 || text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45) return undefined;
  const year = digits(text, 0, 4);
  const month = digits(text, 5, 7);
  const day = digits(text, 8, 10);
  if (year < 1900 || !validDate(year, month, day)) return undefined;
  if (year === 1900 && month < 3) return undefined;
  let timeMs = 0;
  if (len > 10) {
    const m = ISO_DATE.exec(text);
    if (!m) return undefined;
    const hour = Number(m[4]);
    const minute = Number(m[5]);
    const second = m[6] === undefined ? 0 : Number(m[6]);
    if (hour > 23 || minute > 59 || second > 59) return undefined;
    const ms = m[7] === undefined ? 0 : Math.round(Number(`0.${m[7]}`) * 1000);
    timeMs = ((hour * 60 + minute) * 60 + second) * 1000 + ms;
  }
  const serial = (Date.UTC(year, month - 1, day) + timeMs) / MS_PER_DAY + EXCEL_EPOCH_OFFSET_DAYS;
  return { serial, hasTime: len > 10 };
}

/**
 * The same pattern as normalise.ts's PLAIN_NUMBER. Kept as its own RegExp: importing that one
 * measured about 10% slower on cellXml/csvField (the consolidate hot path).
 */
const NUMERIC_TEXT = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** What a cell is written as, decided once for both outputs. */
type CellKind = 'empty' | 'number' | 'boolean' | 'date' | 'text';

/**
 * Decides how a value of a typed column is written. The value's own type wins (a number is a
 * number in any column); text is converted only where the column's type says so and the text is
 * unambiguous: ISO dates in date columns, plain decimal numbers in number/integer columns,
 * true/false in boolean columns. Everything else stays text.
 */
function classify(value: Cell | undefined, type: ColumnType): CellKind {
  if (value === null || value === undefined || value === '') return 'empty';
  switch (typeof value) {
    case 'number':
      return Number.isFinite(value) ? 'number' : 'text';
    case 'boolean':
      return 'boolean';
    default:
      break;
  }
  switch (type) {
    case 'date':
      return parseIsoDate(value) ? 'date' : 'text';
    case 'number':
    case 'integer':
      return NUMERIC_TEXT.test(value) && Number.isFinite(Number(value)) ? 'number' : 'text';
    case 'boolean': {
      const l = value.toLowerCase();
      return l === 'true' || l === 'false' ? 'boolean' : 'text';
    }
    default:
      return 'text';
  }
}

/** The `<c>` element of a value of a typed column, or '' for an empty cell. */
export function cellXml(ref: string, value: Cell | undefined, type: ColumnType): string {
  if (value === null || value === undefined || value === '') return '';
  if (typeof value === 'number') {
    return Number.isFinite(value) ? `<c r="${ref}"><v>${value}</v></c>` : textCellXml(ref, String(value));
  }
  if (typeof value === 'boolean') return `<c r="${ref}" t="b"><v>${value ? 1 : 0}</v></c>`;
  if (type === 'date') {
    const d = parseIsoDate(value);
    if (d) return `<c r="${ref}" s="${d.hasTime ? STYLE.dateTime : STYLE.date}"><v>${d.serial}</v></c>`;
  } else if (type !== 'text') {
    switch (classify(value, type)) {
      case 'number':
        return `<c r="${ref}"><v>${Number(value)}</v></c>`;
      case 'boolean':
        return `<c r="${ref}" t="b"><v>${value.toLowerCase() === 'true' ? 1 : 0}</v></c>`;
      default:
        break;
    }
  }
  return textCellXml(ref, value);
}

/** Characters a value takes on screen, to size its column. */
export function displayLength(value: Cell | undefined, type: ColumnType): number {
  switch (classify(value, type)) {
    case 'empty':
      return 0;
    case 'boolean':
      return 5;
    case 'date':
      // classify() found ISO date text: it has a time part when it is longer than YYYY-MM-DD.
      return (value as string).length > 10 ? 19 : 10;
    case 'number':
      return String(typeof value === 'number' ? value : Number(value)).length;
    default: {
      const text = String(value);
      const nl = text.indexOf('\n');
      return nl === -1 ? text.length : nl;
    }
  }
}

const CSV_NEEDS_QUOTES = /[",\r\n]/;

function quoteCsv(text: string): string {
  return CSV_NEEDS_QUOTES.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/**
 * One CSV field (RFC 4180 quoting). Numbers, dates and booleans are written plainly; text is
 * neutralised (see `neutraliseFormula`) and quoted when it holds a comma, quote or line break.
 */
export function csvField(value: Cell | undefined, type: ColumnType): string {
  if (value === null || value === undefined || value === '') return '';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : quoteCsv(String(value));
  if (typeof value === 'boolean') return value ? 'TRUE' : 'FALSE';
  if (type !== 'text') {
    switch (classify(value, type)) {
      case 'date':
      case 'number':
        return value;
      case 'boolean':
        return value.toLowerCase() === 'true' ? 'TRUE' : 'FALSE';
      default:
        break;
    }
  }
  return quoteCsv(neutraliseFormula(value));
}

/** A header or label: always text, neutralised in CSV. */
export function csvText(text: string): string {
  return quoteCsv(neutraliseFormula(text));
}
