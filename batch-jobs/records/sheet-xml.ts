/**
 * A scanner for worksheet XML (`xl/worksheets/sheetN.xml`), written for speed: it looks only at
 * the elements that carry cells (`row`, `c`, `v`, `f`, `is`/`t`, `rPh`) and skips everything else,
 * where a general SAX parser builds every tag and attribute. Replacing saxes with it for the sheet
 * took the 200k-row benchmark workbook from about 3.7 s to 1.8 s (bench/split-records.ts).
 *
 * It still checks what keeps a damaged file from passing as data: tags must nest and close, names
 * must be names, entities must be XML's own or character references, and DOCTYPEs are refused.
 * Comments, processing instructions and CDATA are handled; element prefixes (`x:c`) are ignored.
 * Text is taken into a cell as it arrives (linear in its length), and a cell past `maxCellChars` or
 * a row past Excel's last row is a SheetLimitError, so a decompression bomb is refused early.
 */
import { ExcelDate, ExcelFormula, FormattedNumber, type RawCell } from './normalise';
import type { RawRow } from './raw';

/** Excel's row limit: no Excel file holds a row past it. */
export const EXCEL_MAX_ROWS = 1_048_576;
/** Excel's limit on the characters of one cell. */
export const EXCEL_MAX_CELL_CHARS = 32_767;

export interface SheetContext {
  /** Shared string `i`, or undefined when there is no such string. */
  sharedString: (i: number) => string | undefined;
  /** Whether cell style `s` shows a date. */
  isDateStyle: (s: number) => boolean;
  /**
   * The text style `s` shows number `n` as, when the style's number format is one that makes an id
   * (zero padding such as `000000`, or scientific notation of a whole number); undefined otherwise.
   * @default - numbers are handed over as numbers
   */
  shownNumber?: (s: number, n: number) => string | undefined;
  date1904: boolean;
  /** Longest cell text accepted, in characters. @default 1_048_576 */
  maxCellChars?: number;
}

/** The worksheet XML is not well-formed, or refers to something the workbook does not have. */
export class SheetXmlError extends Error {
  override readonly name = 'SheetXmlError';
}

/** The sheet holds more than a workbook can: a cell past `maxCellChars`, or a row past Excel's last row. */
export class SheetLimitError extends Error {
  override readonly name = 'SheetLimitError';
  constructor(
    message: string,
    readonly row: number,
    /** Column letter, for a cell. */
    readonly column?: string,
  ) {
    super(message);
  }
}

const X_ESCAPE = /_x([0-9A-Fa-f]{4})_/g;

/**
 * Decodes the `_xHHHH_` escapes of OOXML string text (ECMA-376 22.9.2.19 ST_Xstring): `Tab_x0009_Esc`
 * holds a tab, and `_x005F_` is a literal underscore (so `_x005F_x0009_` is the text `_x0009_`).
 */
export function decodeXEscapes(text: string): string {
  if (!text.includes('_x')) return text;
  return text.replace(X_ESCAPE, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** Decodes XML's five entities and character references. */
export function decodeEntities(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(/&([^;&\s]{0,12});/g, (whole, name: string) => {
    if (name.startsWith('#')) {
      const code = name[1] === 'x' || name[1] === 'X' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      if (!Number.isFinite(code) || code < 0 || code > 0x10ffff) throw new SheetXmlError(`bad character reference ${whole}`);
      return String.fromCodePoint(code);
    }
    const value = ENTITIES[name];
    if (value === undefined) throw new SheetXmlError(`unknown entity ${whole}`);
    return value;
  });
}

/** Column letters of a 0-based index: 0 -> A. */
function letters(index: number): string {
  let out = '';
  for (let n = index + 1; n > 0; n = Math.floor((n - 1) / 26)) out = String.fromCharCode(65 + ((n - 1) % 26)) + out;
  return out;
}

/** "AB12" -> 27 (0-based column), -1 when there are no letters. */
function columnIndex(ref: string): number {
  let col = 0;
  for (let i = 0; i < ref.length; i++) {
    const c = ref.charCodeAt(i);
    if (c >= 65 && c <= 90) col = col * 26 + (c - 64);
    else if (c >= 97 && c <= 122) col = col * 26 + (c - 96);
    else break;
  }
  return col - 1;
}

const isSpace = (c: number) => c === 32 || c === 9 || c === 10 || c === 13;
/** Characters that may not appear in an XML name (a loose check: enough to tell names from garbage). */
const isNameBreaker = (c: number) =>
  c < 45 ||
  c === 47 ||
  (c >= 59 && c <= 64 && c !== 58) ||
  c === 91 ||
  c === 93 ||
  c === 94 ||
  c === 96 ||
  c === 123 ||
  c === 125 ||
  c === 126 ||
  c === 92;

export class SheetXmlScanner {
  private pending = '';
  private readonly stack: string[] = [];
  private out: RawRow[] = [];
  /** True once `</sheetData>` has been seen: nothing after it matters. */
  done = false;

  private rowNumber = 0;
  private cells: RawCell[] = [];
  private nextCol = 0;
  private col = 0;
  private type = '';
  private style = 0;
  private text = '';
  private capture = false;
  private inIs = false;
  private phonetic = 0;
  /** The cell has an `<f>` element; `formula` is its text (empty for a shared-formula reference). */
  private hasFormula = false;
  private formula = '';
  private inFormula = false;
  /** The cell has a `<v>` element (an empty one is a cached empty string for `t="str"`). */
  private hasValue = false;
  private readonly maxCellChars: number;

  constructor(private readonly ctx: SheetContext) {
    this.maxCellChars = ctx.maxCellChars ?? 1_048_576;
  }

  /** Row number of the last row started (for messages). */
  get lastRow(): number {
    return this.rowNumber;
  }

  /** Rows completed since the last call. */
  take(): RawRow[] {
    const rows = this.out;
    this.out = [];
    return rows;
  }

  /** Feeds the next piece of XML text. Throws SheetXmlError when it is not well-formed. */
  write(chunk: string): void {
    if (this.done) return;
    const s = this.pending.length > 0 ? this.pending + chunk : chunk;
    this.pending = '';
    const n = s.length;
    let pos = 0;
    while (pos < n && !this.done) {
      const lt = s.indexOf('<', pos);
      if (lt < 0) {
        // Text that goes on past this chunk. Take it now (keeping only a half entity at its end), so
        // a long text costs linear time, not a copy of everything so far per chunk.
        if (this.capture || this.inFormula) {
          const amp = s.lastIndexOf('&');
          const cut = amp >= pos && n - amp < 14 && s.indexOf(';', amp) < 0 ? amp : n;
          this.append(s, pos, cut);
          this.pending = s.slice(cut);
        }
        return;
      }
      if (lt > pos && (this.capture || this.inFormula)) this.append(s, pos, lt);
      if (lt + 1 >= n) {
        this.pending = s.slice(lt);
        return;
      }
      const c1 = s.charCodeAt(lt + 1);
      if (c1 === 33 /* ! */) {
        if (s.startsWith('<!--', lt)) {
          const end = s.indexOf('-->', lt + 4);
          if (end < 0) return this.keep(s, lt);
          pos = end + 3;
        } else if (s.startsWith('<![CDATA[', lt)) {
          const end = s.indexOf(']]>', lt + 9);
          if (end < 0) return this.keep(s, lt);
          if (this.capture) {
            this.text += s.slice(lt + 9, end);
            this.append(s, 0, 0);
          }
          pos = end + 3;
        } else if (n - lt < 9 && ('<![CDATA['.startsWith(s.slice(lt)) || '<!--'.startsWith(s.slice(lt)))) {
          return this.keep(s, lt);
        } else {
          throw new SheetXmlError(
            `unexpected markup ${JSON.stringify(s.slice(lt, lt + 12))} (DOCTYPEs and entity declarations are not allowed)`,
          );
        }
        continue;
      }
      if (c1 === 63 /* ? */) {
        const end = s.indexOf('?>', lt + 2);
        if (end < 0) return this.keep(s, lt);
        pos = end + 2;
        continue;
      }
      const gt = tagEnd(s, lt + 1);
      if (gt < 0) return this.keep(s, lt);
      if (c1 === 47 /* / */) this.close(s, lt + 2, gt);
      else this.open(s, lt + 1, gt);
      pos = gt + 1;
    }
    if (pos < n && !this.done) this.pending = s.slice(pos);
  }

  /** The XML has ended: every element must be closed. */
  end(): void {
    if (this.done) return;
    if (this.pending.trim().length > 0) throw new SheetXmlError(`the XML ends inside ${JSON.stringify(this.pending.slice(0, 20))}`);
    if (this.stack.length > 0) throw new SheetXmlError(`the XML ends before </${this.stack[this.stack.length - 1]}>`);
  }

  /** Adds s[from, to) to the cell's text; a cell past `maxCellChars` is refused. */
  private append(s: string, from: number, to: number): void {
    if (this.inFormula) {
      if (to > from) this.formula += decodeEntities(s.slice(from, to));
      if (this.formula.length <= this.maxCellChars) return;
    } else if (to > from) this.text += decodeEntities(s.slice(from, to));
    if (this.text.length > this.maxCellChars || this.formula.length > this.maxCellChars) {
      throw new SheetLimitError(
        `the cell ${letters(this.col)}${this.rowNumber} holds more than ${this.maxCellChars.toLocaleString('en-US')} characters (Excel's own limit is ${EXCEL_MAX_CELL_CHARS.toLocaleString('en-US')})`,
        this.rowNumber,
        letters(this.col),
      );
    }
  }

  private keep(s: string, from: number): void {
    this.pending = s.slice(from);
    if (this.pending.length > 64 * 1024 * 1024) throw new SheetXmlError('a tag or comment runs on for more than 64 MB');
  }

  private open(s: string, from: number, gt: number): void {
    let nameEnd = from;
    let c = s.charCodeAt(nameEnd);
    while (nameEnd < gt && !isSpace(c) && c !== 47 && c !== 62) c = s.charCodeAt(++nameEnd);
    if (nameEnd === from) throw new SheetXmlError(`a tag without a name near ${JSON.stringify(s.slice(from - 1, from + 15))}`);
    const qname = s.slice(from, nameEnd);
    for (let i = 0; i < qname.length; i++) {
      if (isNameBreaker(qname.charCodeAt(i))) throw new SheetXmlError(`"${qname}" is not an element name`);
    }
    const colon = qname.indexOf(':');
    const name = colon < 0 ? qname : qname.slice(colon + 1);
    const selfClosing = s.charCodeAt(gt - 1) === 47;
    const attrsEnd = selfClosing ? gt - 1 : gt;

    switch (name) {
      case 'c': {
        let r: string | undefined;
        let t = '';
        let st = 0;
        scanAttributes(s, nameEnd, attrsEnd, (an, v) => {
          if (an === 'r') r = v;
          else if (an === 't') t = v;
          else if (an === 's') st = Number(v) || 0;
        });
        this.col = r !== undefined ? columnIndex(r) : this.nextCol;
        if (this.col < 0) this.col = this.nextCol;
        this.type = t;
        this.style = st;
        this.text = '';
        this.hasFormula = false;
        this.formula = '';
        this.hasValue = false;
        if (selfClosing) this.closeCell();
        break;
      }
      case 'v':
        this.hasValue = true;
        if (!selfClosing) this.capture = true;
        break;
      case 'f':
        this.hasFormula = true;
        if (!selfClosing) this.inFormula = true;
        break;
      case 't':
        if (this.inIs && this.phonetic === 0 && !selfClosing) this.capture = true;
        break;
      case 'is':
        if (!selfClosing) this.inIs = true;
        break;
      case 'rPh':
        if (!selfClosing) this.phonetic++;
        break;
      case 'row': {
        let r: string | undefined;
        scanAttributes(s, nameEnd, attrsEnd, (an, v) => {
          if (an === 'r') r = v;
        });
        const number = r !== undefined ? Number(r) : NaN;
        this.rowNumber = Number.isInteger(number) && number > 0 ? number : this.rowNumber + 1;
        if (this.rowNumber > EXCEL_MAX_ROWS) {
          throw new SheetLimitError(
            `the sheet has a row ${this.rowNumber.toLocaleString('en-US')}, past Excel's last row ${EXCEL_MAX_ROWS.toLocaleString('en-US')}: no Excel file holds it`,
            this.rowNumber,
          );
        }
        this.cells = [];
        this.nextCol = 0;
        if (selfClosing) this.out.push({ rowNumber: this.rowNumber, cells: this.cells });
        break;
      }
      default:
        // Attributes of other elements are not read, but must still be well-formed.
        if (attrsEnd > nameEnd) scanAttributes(s, nameEnd, attrsEnd, noop);
    }
    if (!selfClosing) this.stack.push(qname);
  }

  private close(s: string, from: number, gt: number): void {
    let end = gt;
    while (end > from && isSpace(s.charCodeAt(end - 1))) end--;
    const qname = s.slice(from, end);
    const open = this.stack.pop();
    if (open !== qname) {
      throw new SheetXmlError(open === undefined ? `</${qname}> closes nothing` : `</${qname}> where </${open}> was expected`);
    }
    const colon = qname.indexOf(':');
    const name = colon < 0 ? qname : qname.slice(colon + 1);
    switch (name) {
      case 'v':
      case 't':
        this.capture = false;
        break;
      case 'f':
        this.inFormula = false;
        break;
      case 'rPh':
        this.phonetic--;
        break;
      case 'is':
        this.inIs = false;
        break;
      case 'c':
        this.closeCell();
        break;
      case 'row':
        this.out.push({ rowNumber: this.rowNumber, cells: this.cells });
        break;
      case 'sheetData':
        this.done = true;
        break;
    }
  }

  private closeCell(): void {
    const text = this.text;
    let value: RawCell = null;
    if (text === '' && this.hasFormula && !(this.type === 'str' && this.hasValue)) {
      // A formula saved without its computed value (openpyxl, pandas and many generators do not
      // calculate): keep what was typed. (`t="str"` with an empty <v> is a computed empty string.)
      value = new ExcelFormula(this.formula);
    } else if (text !== '') {
      switch (this.type) {
        case 's': {
          const index = Number(text);
          const s = this.ctx.sharedString(index);
          if (s === undefined) {
            throw new SheetXmlError(`cell in row ${this.rowNumber} refers to shared string ${text}, which the workbook does not have`);
          }
          value = s;
          break;
        }
        case 'inlineStr':
          value = decodeXEscapes(text);
          break;
        case 'str':
        case 'e':
        case 'd':
          value = text;
          break;
        case 'b':
          value = text === '1' || text.toLowerCase() === 'true';
          break;
        default: {
          const n = Number(text);
          if (Number.isNaN(n)) value = text;
          else if (this.ctx.isDateStyle(this.style)) value = new ExcelDate(n, this.ctx.date1904);
          else {
            const shown = this.style !== 0 ? this.ctx.shownNumber?.(this.style, n) : undefined;
            value = shown === undefined ? n : new FormattedNumber(n, shown);
          }
        }
      }
    }
    if (value !== null) this.cells[this.col] = value;
    this.nextCol = this.col + 1;
    this.text = '';
    this.capture = false;
    this.hasFormula = false;
    this.inFormula = false;
  }
}

function noop(): void {}

/** Index of the '>' that ends the tag starting at `from`, outside quoted attribute values; -1 if not in `s`. */
function tagEnd(s: string, from: number): number {
  let quote = 0;
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (quote !== 0) {
      if (c === quote) quote = 0;
    } else if (c === 62) return i;
    else if (c === 34 || c === 39) quote = c;
    else if (c === 60) throw new SheetXmlError(`"<" inside a tag near ${JSON.stringify(s.slice(Math.max(from - 1, 0), i + 1))}`);
  }
  return -1;
}

/** Calls `on(name, value)` for each attribute in s[from, to); throws when they are not name="value" pairs. */
function scanAttributes(s: string, from: number, to: number, on: (name: string, value: string) => void): void {
  let i = from;
  for (;;) {
    while (i < to && isSpace(s.charCodeAt(i))) i++;
    if (i >= to) return;
    const nameStart = i;
    while (i < to && s.charCodeAt(i) !== 61 /* = */ && !isSpace(s.charCodeAt(i))) i++;
    const name = s.slice(nameStart, i);
    while (i < to && isSpace(s.charCodeAt(i))) i++;
    if (s.charCodeAt(i) !== 61 || name.length === 0)
      throw new SheetXmlError(`a malformed attribute near ${JSON.stringify(s.slice(nameStart, nameStart + 20))}`);
    i++;
    while (i < to && isSpace(s.charCodeAt(i))) i++;
    const quote = s.charCodeAt(i);
    if (quote !== 34 && quote !== 39) throw new SheetXmlError(`attribute ${name} has no quoted value`);
    const valueEnd = s.indexOf(quote === 34 ? '"' : "'", i + 1);
    if (valueEnd < 0 || valueEnd >= to) throw new SheetXmlError(`attribute ${name} is not closed`);
    const colon = name.indexOf(':');
    on(colon < 0 ? name : name.slice(colon + 1), decodeEntities(s.slice(i + 1, valueEnd)));
    i = valueEnd + 1;
  }
}
