/**
 * Streaming xlsx reader: yauzl for the zip, saxes for the small parts and the shared strings, and
 * a hand-written scanner (sheet-xml.ts) for the worksheet itself, the part that grows with rows.
 *
 * The zip's directory is at its end and Excel writes the shared strings after the sheets, so the
 * upload is first spooled to a temp file (disk, not memory); then the workbook, its relationships,
 * the styles (which cells are dates, which number formats show ids) and the shared strings are
 * read, and a sheet the reader opens is scanned as it inflates, a batch of rows per chunk of XML.
 * Memory holds the shared-string table (packed as UTF-8 bytes) and one chunk of rows, whatever the
 * number of rows. Each entry read is checked against its CRC-32, so a damaged file is an error, not
 * data; a part whose zip entry claims to inflate past `XlsxLimits` is refused before it inflates.
 *
 * Speed: see the split figures in the README's Performance section (bench/split-records.ts).
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import { crc32 } from 'node:zlib';
import { SaxesParser, type SaxesTagPlain } from 'saxes';
import yauzl from 'yauzl';
import { INPUT_LIMIT_DEFAULTS } from '../../runtime/config/schema';
import { InputError, errorMessage } from '../../runtime/errors';
import type { RawRow, RawSource } from './raw';
import { decodeXEscapes, SheetLimitError, SheetXmlError, SheetXmlScanner } from './sheet-xml';

/** Limits that refuse a decompression bomb before it is inflated (see docs/records.md). */
export interface XlsxLimits {
  /** Longest cell text, in characters. @default 1_048_576 (32 times Excel's 32,767) */
  maxCellChars: number;
  /** Largest inflated size of the sheet or shared-strings part, in MB (MiB). @default 2048 */
  maxInflatedMB: number;
  /** Largest inflated-to-zipped ratio of a part that inflates past 64 MB. @default 100 */
  maxCompressionRatio: number;
}

export const DEFAULT_XLSX_LIMITS: XlsxLimits = INPUT_LIMIT_DEFAULTS;
/** Parts smaller than this inflated are not held to the ratio limit (small parts of repeated markup compress well). */
const RATIO_FLOOR_BYTES = 64 * 1024 * 1024;

export interface XlsxOptions {
  fileName: string;
  /** @default DEFAULT_XLSX_LIMITS */
  limits?: Partial<XlsxLimits>;
}

export interface XlsxSheet {
  name: string;
  hidden: boolean;
}

/** An opened workbook: its worksheets, each readable as a stream of rows. */
export interface XlsxWorkbook {
  /** Worksheets in workbook order. */
  sheets: XlsxSheet[];
  /** Opens worksheet `index` (of `sheets`) as rows; its `close()` closes the whole workbook. */
  openSheet(index: number): Promise<RawSource>;
  /** Releases the temp file and handles; safe to call twice. */
  close(): Promise<void>;
}

const REL_OFFICE_DOCUMENT = /\/officeDocument$/;
const REL_WORKSHEET = /\/worksheet$/;
const REL_SHARED_STRINGS = /\/sharedStrings$/;
const REL_STYLES = /\/styles$/;
/** Parts read whole (workbook, relationships, styles) may not be larger than this. */
const MAX_SMALL_PART = 64 * 1024 * 1024;

/** Built-in number formats that show ids differently from the plain number (ECMA-376 18.8.30). */
const BUILTIN_ID_FORMATS = new Map<number, string>([[11, '0.00E+00']]);

/** Built-in number formats that show dates or times (ECMA-376 18.8.30, plus the CJK date ids). */
const BUILTIN_DATE_FORMATS = new Set([
  14, 15, 16, 17, 18, 19, 20, 21, 22, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 45, 46, 47, 50, 51, 52, 53, 54, 55, 56, 57, 58,
]);

/** Whether a custom number format code shows a date or time. */
function isDateFormatCode(code: string): boolean {
  const stripped = code
    .replace(/"[^"]*"/g, '') // literal text
    .replace(/\\./g, '') // escaped characters
    .replace(/_./g, '') // padding
    .replace(/\*./g, '') // fill
    .replace(/\[(?:h+|m+|s+)\]/gi, 'h') // elapsed time is time
    .replace(/\[[^\]]*\]/g, ''); // colours, conditions, locales
  const section = (stripped.split(';')[0] ?? '').replace(/AM\/PM|A\/P/gi, 'h');
  return /[ydmhs]/i.test(section);
}

/** The format code's first section as literal text and digit placeholders; undefined when it holds anything else. */
function formatTokens(code: string): (string | { zeros: number })[] | undefined {
  const section = code.split(';')[0] ?? '';
  const tokens: (string | { zeros: number })[] = [];
  for (let i = 0; i < section.length; i++) {
    const c = section[i]!;
    if (c === '"') {
      const end = section.indexOf('"', i + 1);
      if (end < 0) return undefined;
      tokens.push(section.slice(i + 1, end));
      i = end;
    } else if (c === '\\') {
      if (i + 1 >= section.length) return undefined;
      tokens.push(section[++i]!);
    } else if (c === '0') {
      const last = tokens[tokens.length - 1];
      if (typeof last === 'object') last.zeros++;
      else tokens.push({ zeros: 1 });
    } else if (c === '-' || c === ' ' || c === '(' || c === ')' || c === '/') tokens.push(c);
    else return undefined;
  }
  return tokens;
}

/**
 * How a number format shows a whole number when that differs from the plain number in a way that
 * matters for ids: zero padding (`000000` shows 123 as 000123, `00000\-0000` shows 123456789 as
 * 12345-6789) and scientific notation (`0.00E+00` shows 1234567890123456 as 1.23E+15). Undefined
 * for every other format (General, decimals, currency...): those cells stay numbers.
 */
export function idFormatter(code: string): ((n: number) => string | undefined) | undefined {
  const sci = /^(?:"[^"]*")*0(?:\.(0+))?[eE]([+-])(0+)(?:"[^"]*")*$/.exec(code.split(';')[0] ?? '');
  if (sci) {
    const decimals = sci[1]?.length ?? 0;
    const alwaysSign = sci[2] === '+';
    const expDigits = sci[3]!.length;
    return (n) => {
      if (!Number.isInteger(n)) return undefined;
      const [mantissa, exp] = n.toExponential(decimals).split('e') as [string, string];
      const e = Number(exp);
      const sign = e < 0 ? '-' : alwaysSign ? '+' : '';
      return `${mantissa}E${sign}${String(Math.abs(e)).padStart(expDigits, '0')}`;
    };
  }
  const tokens = formatTokens(code);
  if (!tokens) return undefined;
  const groups = tokens.filter((t): t is { zeros: number } => typeof t === 'object');
  const zeros = groups.reduce((sum, g) => sum + g.zeros, 0);
  if (groups.length === 0 || zeros < 2) return undefined;
  return (n) => {
    if (!Number.isSafeInteger(n)) return undefined;
    const digits = String(Math.abs(n)).padStart(zeros, '0');
    // Placeholders are filled from the right; extra leading digits go to the first group.
    let extra = digits.length - zeros;
    let at = 0;
    let out = n < 0 ? '-' : '';
    for (const t of tokens) {
      if (typeof t === 'string') out += t;
      else {
        const take = t.zeros + extra;
        out += digits.slice(at, at + take);
        at += take;
        extra = 0;
      }
    }
    return out;
  };
}

/** Shared strings packed as UTF-8 in 1 MB blocks: a few bytes per string instead of a JS string each. */
class SharedStrings {
  private static readonly BLOCK = 1024 * 1024;
  private blocks: Buffer[] = [];
  private current = Buffer.alloc(0);
  private used = 0;
  private block = new Uint32Array(1024);
  private start = new Uint32Array(1024);
  private length = new Uint32Array(1024);
  count = 0;

  add(s: string): void {
    const bytes = Buffer.byteLength(s, 'utf8');
    if (this.used + bytes > this.current.length) {
      this.current = Buffer.allocUnsafe(Math.max(SharedStrings.BLOCK, bytes));
      this.blocks.push(this.current);
      this.used = 0;
    }
    this.current.write(s, this.used, 'utf8');
    if (this.count === this.block.length) {
      const grow = (a: Uint32Array) => {
        const b = new Uint32Array(a.length * 2);
        b.set(a);
        return b;
      };
      this.block = grow(this.block);
      this.start = grow(this.start);
      this.length = grow(this.length);
    }
    this.block[this.count] = this.blocks.length - 1;
    this.start[this.count] = this.used;
    this.length[this.count] = bytes;
    this.count++;
    this.used += bytes;
  }

  get(i: number): string | undefined {
    if (!(i >= 0 && i < this.count)) return undefined;
    const start = this.start[i]!;
    return this.blocks[this.block[i]!]!.toString('utf8', start, start + this.length[i]!);
  }
}

function localName(name: string): string {
  const colon = name.indexOf(':');
  return colon < 0 ? name : name.slice(colon + 1);
}

function attr(tag: SaxesTagPlain, name: string): string | undefined {
  const attrs = tag.attributes;
  const v = attrs[name];
  if (v !== undefined) return v;
  for (const key of Object.keys(attrs)) if (localName(key) === name) return attrs[key];
  return undefined;
}

interface Relationship {
  id: string;
  type: string;
  target: string;
}

function parseRelationships(xml: string, basePath: string): Relationship[] {
  const rels: Relationship[] = [];
  const dir = posix.dirname(posix.dirname(basePath)); // "xl/_rels/workbook.xml.rels" -> "xl"
  parseXml(xml, (tag) => {
    if (localName(tag.name) !== 'Relationship') return;
    if ((attr(tag, 'TargetMode') ?? '').toLowerCase() === 'external') return;
    const target = attr(tag, 'Target') ?? '';
    rels.push({ id: attr(tag, 'Id') ?? '', type: attr(tag, 'Type') ?? '', target: resolveTarget(dir === '.' ? '' : dir, target) });
  });
  return rels;
}

function resolveTarget(baseDir: string, target: string): string {
  if (target.startsWith('/')) return posix.normalize(target.slice(1));
  return posix.normalize(baseDir ? `${baseDir}/${target}` : target).replace(/^(\.\.\/)+/, '');
}

function newParser(): SaxesParser<{ xmlns: false; position: false }> {
  return new SaxesParser<{ xmlns: false; position: false }>({ xmlns: false, position: false });
}

function parseXml(xml: string, onOpen: (tag: SaxesTagPlain) => void): void {
  const parser = newParser();
  parser.on('opentag', onOpen);
  parser.write(xml).close();
}

interface SheetInfo {
  name: string;
  rid: string;
  hidden: boolean;
}

function zipError(fileName: string, err: unknown): InputError {
  return new InputError(
    `${fileName} is not a readable Excel workbook: the file is damaged or incomplete (${errorMessage(err)}). Open it in Excel, save it again as .xlsx, and upload it again.`,
    { file: fileName },
  );
}

async function streamToString(stream: Readable, limit: number, what: string): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      stream.destroy();
      throw new Error(`${what} is larger than ${limit / 1024 / 1024} MB`);
    }
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts).toString('utf8');
}

const mb = (bytes: number) =>
  bytes < 1024 * 1024
    ? `${Math.ceil(bytes / 1024).toLocaleString('en-US')} KB`
    : `${(bytes / 1024 / 1024).toLocaleString('en-US', { maximumFractionDigits: bytes < 10 * 1024 * 1024 ? 1 : 0 })} MB`;

/** What a zip entry claims: its inflated and zipped sizes, for messages. */
function claimOf(entry: yauzl.Entry): string {
  const ratio = entry.compressedSize > 0 ? Math.round(entry.uncompressedSize / entry.compressedSize) : Infinity;
  return `claims to inflate from ${mb(entry.compressedSize)} to ${mb(entry.uncompressedSize)}${Number.isFinite(ratio) ? ` (${ratio.toLocaleString('en-US')}:1)` : ''}`;
}

/**
 * Refuses a part whose zip entry claims more than the limits allow, before a byte is inflated
 * (yauzl then checks that the entry inflates to exactly what it claims).
 */
function checkClaim(fileName: string, what: string, entry: yauzl.Entry, limits: XlsxLimits): void {
  const size = entry.uncompressedSize;
  const overSize = size > limits.maxInflatedMB * 1024 * 1024;
  const ratio = size / Math.max(1, entry.compressedSize);
  const overRatio = size > RATIO_FLOOR_BYTES && ratio > limits.maxCompressionRatio;
  if (!overSize && !overRatio) return;
  const limit = overSize
    ? `more than the ${limits.maxInflatedMB.toLocaleString('en-US')} MB this pipeline accepts (input.limits.maxInflatedMB)`
    : `a ratio past the ${limits.maxCompressionRatio.toLocaleString('en-US')}:1 this pipeline accepts (input.limits.maxCompressionRatio; real spreadsheets compress about 5-20:1)`;
  throw new InputError(
    `${fileName} was refused before reading: its ${what} (${entry.fileName}) ${claimOf(entry)}, ${limit}. A small upload that inflates this much is most likely not a real workbook (a "zip bomb"). If the file is genuine, export it as CSV, or raise the limit in the pipeline's config.`,
    { file: fileName },
  );
}

/** Spools the bytes to a temp file and opens the workbook: its sheet list, styles and shared strings. */
export async function openXlsx(chunks: AsyncIterable<Buffer>, opts: XlsxOptions): Promise<XlsxWorkbook> {
  const { fileName } = opts;
  const limits: XlsxLimits = { ...DEFAULT_XLSX_LIMITS, ...opts.limits };
  const dir = await mkdtemp(join(tmpdir(), 'fanout-xlsx-'));
  let zip: yauzl.ZipFile | undefined;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    try {
      zip?.close();
    } catch {
      // already closed
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const path = join(dir, 'input.xlsx');
    await pipeline(Readable.from(chunks), createWriteStream(path));
    try {
      zip = await yauzl.openPromise(path, { lazyEntries: true, autoClose: false, validateEntrySizes: true });
    } catch (err) {
      throw zipError(fileName, err);
    }
    const entries = await listEntries(zip, fileName);
    const z = zip;
    const find = (name: string): yauzl.Entry | undefined => entries.get(name) ?? entries.get(name.toLowerCase());
    const open = async (entry: yauzl.Entry): Promise<Readable> => {
      try {
        return await z.openReadStreamPromise(entry);
      } catch (err) {
        throw zipError(fileName, err);
      }
    };
    const readSmall = async (name: string): Promise<string | undefined> => {
      const entry = find(name);
      if (!entry) return undefined;
      try {
        return await streamToString(await open(entry), MAX_SMALL_PART, name);
      } catch (err) {
        throw err instanceof InputError ? err : zipError(fileName, err);
      }
    };

    // Package relationships name the workbook part (xl/workbook.xml in every producer we know).
    const rootRels = await readSmall('_rels/.rels');
    let workbookPath = 'xl/workbook.xml';
    if (rootRels) {
      const doc = parseRelationships(rootRels, '_rels/.rels').find((r) => REL_OFFICE_DOCUMENT.test(r.type));
      if (doc) workbookPath = doc.target;
    }
    const workbookXml = await readSmall(workbookPath);
    if (workbookXml === undefined) {
      const hint = entries.has('word/document.xml')
        ? ' It looks like a Word document.'
        : entries.has('ppt/presentation.xml')
          ? ' It looks like a PowerPoint file.'
          : '';
      throw new InputError(
        `${fileName} is a zip archive but not an Excel workbook (it has no ${workbookPath}).${hint} Upload the workbook saved as .xlsx, or the data exported as CSV.`,
        { file: fileName },
      );
    }

    const sheets: SheetInfo[] = [];
    let date1904 = false;
    try {
      parseXml(workbookXml, (tag) => {
        const name = localName(tag.name);
        if (name === 'sheet') {
          sheets.push({
            name: attr(tag, 'name') ?? '',
            rid: attr(tag, 'id') ?? '',
            hidden: (attr(tag, 'state') ?? 'visible') !== 'visible',
          });
        } else if (name === 'workbookPr') {
          const v = (attr(tag, 'date1904') ?? '').toLowerCase();
          date1904 = v === '1' || v === 'true';
        }
      });
    } catch (err) {
      throw zipError(fileName, err);
    }
    const relsPath = `${posix.dirname(workbookPath)}/_rels/${posix.basename(workbookPath)}.rels`;
    const relsXml = await readSmall(relsPath.replace(/^\.\//, ''));
    const rels = relsXml ? parseRelationships(relsXml, relsPath) : [];
    const relById = new Map(rels.map((r) => [r.id, r]));
    const worksheets = sheets.filter((s) => {
      const rel = relById.get(s.rid);
      return rel !== undefined && REL_WORKSHEET.test(rel.type) && find(rel.target) !== undefined;
    });

    // Styles: which cell formats (the s attribute) display a date.
    const isDateStyle: boolean[] = [];
    const shownAs: (((n: number) => string | undefined) | undefined)[] = [];
    const stylesRel = rels.find((r) => REL_STYLES.test(r.type));
    const stylesXml = stylesRel ? await readSmall(stylesRel.target) : undefined;
    if (stylesXml) {
      const customDate = new Map<number, boolean>();
      const customCode = new Map<number, string>();
      let inCellXfs = false;
      try {
        const parser = newParser();
        parser.on('opentag', (tag) => {
          const name = localName(tag.name);
          if (name === 'numFmt') {
            const id = Number(attr(tag, 'numFmtId'));
            const code = attr(tag, 'formatCode') ?? '';
            customDate.set(id, isDateFormatCode(code));
            customCode.set(id, code);
          } else if (name === 'cellXfs') inCellXfs = true;
          else if (name === 'xf' && inCellXfs) {
            const id = Number(attr(tag, 'numFmtId') ?? 0);
            const date = customDate.get(id) ?? BUILTIN_DATE_FORMATS.has(id);
            isDateStyle.push(date);
            const code = customCode.get(id) ?? BUILTIN_ID_FORMATS.get(id);
            shownAs.push(!date && code !== undefined ? idFormatter(code) : undefined);
          }
        });
        parser.on('closetag', (tag) => {
          if (localName(tag.name) === 'cellXfs') inCellXfs = false;
        });
        parser.write(stylesXml).close();
      } catch (err) {
        throw zipError(fileName, err);
      }
    }

    // Shared strings, streamed into a packed table.
    const strings = new SharedStrings();
    const stringsRel = rels.find((r) => REL_SHARED_STRINGS.test(r.type));
    const stringsEntry = stringsRel ? find(stringsRel.target) : undefined;
    if (stringsEntry) {
      checkClaim(fileName, 'shared-strings part', stringsEntry, limits);
      await readSharedStrings(await open(stringsEntry), stringsEntry.crc32, strings, fileName, limits.maxCellChars);
    }

    const openSheet = async (index: number): Promise<RawSource> => {
      const sheet = worksheets[index];
      if (!sheet) throw new RangeError(`${fileName} has no worksheet ${index}`);
      const sheetEntry = find(relById.get(sheet.rid)!.target)!;
      checkClaim(fileName, `sheet "${sheet.name}"`, sheetEntry, limits);
      const sheetStream = await open(sheetEntry);
      const batches = sheetBatches(sheetStream, sheetEntry, {
        fileName,
        sheetName: sheet.name,
        strings,
        isDateStyle,
        shownAs,
        date1904,
        maxCellChars: limits.maxCellChars,
      });
      return { batches, sheet: sheet.name, date1904, strictWidth: false, close };
    };
    return { sheets: worksheets.map((w) => ({ name: w.name, hidden: w.hidden })), openSheet, close };
  } catch (err) {
    await close();
    throw err;
  }
}

async function listEntries(zip: yauzl.ZipFile, fileName: string): Promise<Map<string, yauzl.Entry>> {
  const entries = new Map<string, yauzl.Entry>();
  await new Promise<void>((resolve, reject) => {
    zip.on('entry', (entry: yauzl.Entry) => {
      entries.set(entry.fileName, entry);
      const lower = entry.fileName.toLowerCase();
      if (!entries.has(lower)) entries.set(lower, entry);
      zip.readEntry();
    });
    zip.once('end', () => resolve());
    zip.once('error', (err) => reject(zipError(fileName, err)));
    zip.readEntry();
  });
  return entries;
}

async function readSharedStrings(stream: Readable, crc: number, strings: SharedStrings, fileName: string, maxChars: number): Promise<void> {
  const parser = newParser();
  let inSi = false;
  let capture = false;
  let phonetic = 0;
  let text = '';
  parser.on('opentag', (tag) => {
    const name = localName(tag.name);
    if (name === 'si') {
      inSi = true;
      text = '';
    } else if (name === 't' && inSi && phonetic === 0) capture = true;
    else if (name === 'rPh') phonetic++;
  });
  const tooLong = () =>
    new InputError(
      `${fileName}: shared string ${strings.count + 1} holds more than ${maxChars.toLocaleString('en-US')} characters (Excel's own limit is 32,767 per cell), so the file is not a workbook Excel wrote. Export the data as CSV, or raise the pipeline's input.limits.maxCellChars if the file is genuine.`,
      { file: fileName },
    );
  parser.on('text', (t) => {
    if (capture) {
      text += t;
      if (text.length > maxChars) throw tooLong();
    }
  });
  parser.on('cdata', (t) => {
    if (capture) text += t;
  });
  parser.on('closetag', (tag) => {
    const name = localName(tag.name);
    if (name === 't') capture = false;
    else if (name === 'rPh') phonetic--;
    else if (name === 'si') {
      inSi = false;
      strings.add(decodeXEscapes(text));
    }
  });
  try {
    for await (const text of entryText(stream, crc)) parser.write(text);
    parser.close();
  } catch (err) {
    throw err instanceof InputError ? err : zipError(fileName, err);
  }
}

/**
 * The entry's bytes as text chunks, checking at the end that they match the zip's CRC-32 (so a
 * damaged entry that still inflates is not taken for data).
 */
async function* entryText(stream: Readable, expectedCrc: number): AsyncGenerator<string> {
  const decoder = new StringDecoder('utf8');
  let crc = 0;
  try {
    for await (const chunk of stream) {
      const buf = chunk as Buffer;
      crc = crc32(buf, crc);
      const text = decoder.write(buf);
      if (text.length > 0) yield text;
    }
    const rest = decoder.end();
    if (rest.length > 0) yield rest;
  } finally {
    stream.destroy();
  }
  if (crc >>> 0 !== expectedCrc >>> 0) throw new Error('CRC-32 check failed: the data is not what was zipped');
}

interface SheetInfoForRows {
  fileName: string;
  sheetName: string;
  strings: SharedStrings;
  isDateStyle: boolean[];
  shownAs: (((n: number) => string | undefined) | undefined)[];
  date1904: boolean;
  maxCellChars: number;
}

/** Scans sheet XML as it inflates, one batch of rows per chunk. */
async function* sheetBatches(stream: Readable, entry: yauzl.Entry, info: SheetInfoForRows): AsyncGenerator<RawRow[]> {
  const { fileName, sheetName, strings, isDateStyle, shownAs, date1904 } = info;
  const scanner = new SheetXmlScanner({
    sharedString: (i) => strings.get(i),
    isDateStyle: (st) => isDateStyle[st] === true,
    shownNumber: (st, n) => shownAs[st]?.(n),
    date1904,
    maxCellChars: info.maxCellChars,
  });
  const where = `${fileName}, sheet "${sheetName}"`;
  const damaged = (err: unknown) =>
    new InputError(
      `${where}: the ${err instanceof SheetXmlError ? "sheet's XML" : 'workbook'} is damaged after row ${scanner.lastRow} (${errorMessage(err)}). Open the workbook in Excel, save it again, and upload it again.`,
      { file: fileName, sheet: sheetName, row: scanner.lastRow },
    );
  const tooMuch = (err: SheetLimitError) =>
    new InputError(
      `${where} was refused: ${err.message}, and the sheet part ${claimOf(entry)}. ${
        err.column === undefined
          ? 'Split the data into files of at most 1,048,575 rows, or upload it as CSV.'
          : 'A file Excel wrote cannot hold such a cell (most likely it is a "zip bomb"). If it is genuine, upload it as CSV or raise the pipeline\'s input.limits.maxCellChars.'
      }`,
      { file: fileName, sheet: sheetName, row: err.row, ...(err.column !== undefined ? { column: err.column } : {}) },
    );
  try {
    const texts = entryText(stream, entry.crc32);
    try {
      for await (const text of texts) {
        scanner.write(text);
        const rows = scanner.take();
        if (rows.length > 0) yield rows;
        // After </sheetData> the rest is still read (not parsed), so the CRC check covers the entry.
      }
      if (!scanner.done) scanner.end();
    } catch (err) {
      throw err instanceof InputError ? err : err instanceof SheetLimitError ? tooMuch(err) : damaged(err);
    } finally {
      await texts.return(undefined);
    }
  } finally {
    stream.destroy();
  }
}
