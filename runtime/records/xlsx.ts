/**
 * Streaming xlsx reader: yauzl for the zip, saxes for the XML.
 *
 * The zip's directory is at its end and Excel writes the shared strings after the sheets, so the
 * upload is first spooled to a temp file (disk, not memory); then the workbook, its relationships,
 * the styles (which cells are dates) and the shared strings are read, and the chosen sheet is
 * parsed as a stream, a batch of rows per chunk of XML. Memory holds the shared-string table
 * (packed as UTF-8 bytes) and one chunk of rows, whatever the number of rows.
 *
 * Measured against exceljs's streaming WorkbookReader on the same 200k-row workbook, this is
 * about 2.5x faster with about half the memory (see bench/split-records.ts).
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SaxesParser, type SaxesTagPlain } from 'saxes';
import yauzl from 'yauzl';
import { InputError, errorMessage } from '../errors';
import { ExcelDate, type RawCell } from './normalise';
import type { RawRow, RawSource } from './raw';

export interface XlsxOptions {
  fileName: string;
  /** Sheet to read; the first visible worksheet when not given. */
  sheet?: string;
}

const REL_OFFICE_DOCUMENT = /\/officeDocument$/;
const REL_WORKSHEET = /\/worksheet$/;
const REL_SHARED_STRINGS = /\/sharedStrings$/;
const REL_STYLES = /\/styles$/;
/** Parts read whole (workbook, relationships, styles) may not be larger than this. */
const MAX_SMALL_PART = 64 * 1024 * 1024;

/** Built-in number formats that show dates or times (ECMA-376 18.8.30, plus the CJK date ids). */
const BUILTIN_DATE_FORMATS = new Set([14, 15, 16, 17, 18, 19, 20, 21, 22, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 45, 46, 47, 50, 51, 52, 53, 54, 55, 56, 57, 58]);

/** Whether a custom number format code shows a date or time. */
export function isDateFormatCode(code: string): boolean {
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

/** Shared strings packed as UTF-8 in 1 MB blocks: a few bytes per string instead of a JS string each. */
export class SharedStrings {
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

/** "AB12" -> 27 (0-based column). */
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

/** Spools the bytes to a temp file and opens the chosen worksheet for streaming. */
export async function openXlsx(chunks: AsyncIterable<Buffer>, opts: XlsxOptions): Promise<RawSource> {
  const { fileName } = opts;
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

    let chosen: SheetInfo | undefined;
    if (opts.sheet !== undefined) {
      const wanted = opts.sheet.trim().toLowerCase();
      chosen = worksheets.find((s) => s.name.trim().toLowerCase() === wanted);
      if (!chosen) {
        throw new InputError(
          `${fileName} has no sheet named "${opts.sheet}". Its sheets are: ${sheets.map((s) => `"${s.name}"`).join(', ') || 'none'}. Rename the sheet in the workbook, or set the pipeline's input.sheet to one of these.`,
          { file: fileName, sheet: opts.sheet },
        );
      }
    } else {
      chosen = worksheets.find((s) => !s.hidden) ?? worksheets[0];
      if (!chosen) {
        throw new InputError(`${fileName} has no worksheet to read. Put the data on a worksheet and upload the workbook again.`, {
          file: fileName,
        });
      }
    }
    const sheetName = chosen.name;
    const sheetPath = relById.get(chosen.rid)!.target;

    // Styles: which cell formats (the s attribute) display a date.
    const isDateStyle: boolean[] = [];
    const stylesRel = rels.find((r) => REL_STYLES.test(r.type));
    const stylesXml = stylesRel ? await readSmall(stylesRel.target) : undefined;
    if (stylesXml) {
      const customDate = new Map<number, boolean>();
      let inCellXfs = false;
      try {
        const parser = newParser();
        parser.on('opentag', (tag) => {
          const name = localName(tag.name);
          if (name === 'numFmt') customDate.set(Number(attr(tag, 'numFmtId')), isDateFormatCode(attr(tag, 'formatCode') ?? ''));
          else if (name === 'cellXfs') inCellXfs = true;
          else if (name === 'xf' && inCellXfs) {
            const id = Number(attr(tag, 'numFmtId') ?? 0);
            isDateStyle.push(customDate.get(id) ?? BUILTIN_DATE_FORMATS.has(id));
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
    if (stringsEntry) await readSharedStrings(await open(stringsEntry), strings, fileName);

    const sheetEntry = find(sheetPath)!;
    const sheetStream = await open(sheetEntry);
    const batches = sheetBatches(sheetStream, { fileName, sheetName, strings, isDateStyle, date1904 }, close);
    return { batches, sheet: sheetName, date1904, strictWidth: false, close };
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

async function readSharedStrings(stream: Readable, strings: SharedStrings, fileName: string): Promise<void> {
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
  parser.on('text', (t) => {
    if (capture) text += t;
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
      strings.add(text);
    }
  });
  try {
    stream.setEncoding('utf8');
    for await (const chunk of stream) parser.write(chunk as string);
    parser.close();
  } catch (err) {
    throw zipError(fileName, err);
  }
}

interface SheetContext {
  fileName: string;
  sheetName: string;
  strings: SharedStrings;
  isDateStyle: boolean[];
  date1904: boolean;
}

/** Parses sheet XML as it inflates, one batch of rows per chunk. */
async function* sheetBatches(stream: Readable, ctx: SheetContext, close: () => Promise<void>): AsyncGenerator<RawRow[]> {
  const { strings, isDateStyle, date1904, fileName, sheetName } = ctx;
  const parser = newParser();
  let out: RawRow[] = [];
  let cells: RawCell[] = [];
  let rowNumber = 0;
  let nextCol = 0;
  let col = 0;
  let type = '';
  let style = 0;
  let text = '';
  let capture = false;
  let inIs = false;
  let phonetic = 0;
  let done = false;
  let badString: { ref: string; index: string } | undefined;

  parser.on('opentag', (tag) => {
    let name = tag.name;
    if (name.includes(':')) name = localName(name);
    switch (name) {
      case 'c': {
        const attrs = tag.attributes;
        const r = attrs.r;
        col = r ? columnIndex(r) : nextCol;
        type = attrs.t ?? '';
        style = attrs.s ? Number(attrs.s) : 0;
        text = '';
        break;
      }
      case 'v':
        capture = true;
        break;
      case 't':
        if (inIs && phonetic === 0) capture = true;
        break;
      case 'is':
        inIs = true;
        break;
      case 'rPh':
        phonetic++;
        break;
      case 'row': {
        const r = tag.attributes.r;
        rowNumber = r ? Number(r) : rowNumber + 1;
        cells = [];
        nextCol = 0;
        break;
      }
    }
  });
  const onText = (t: string) => {
    if (capture) text += t;
  };
  parser.on('text', onText);
  parser.on('cdata', onText);
  parser.on('closetag', (tag) => {
    let name = tag.name;
    if (name.includes(':')) name = localName(name);
    switch (name) {
      case 'v':
      case 't':
        capture = false;
        break;
      case 'rPh':
        phonetic--;
        break;
      case 'is':
        inIs = false;
        break;
      case 'c': {
        let value: RawCell = null;
        if (text !== '') {
          switch (type) {
            case 's': {
              const s = strings.get(Number(text));
              if (s === undefined) badString ??= { ref: `${rowNumber}`, index: text };
              value = s ?? null;
              break;
            }
            case 'inlineStr':
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
              value = Number.isNaN(n) ? text : isDateStyle[style] ? new ExcelDate(n, date1904) : n;
            }
          }
        }
        if (value !== null) cells[col] = value;
        nextCol = col + 1;
        text = '';
        break;
      }
      case 'row':
        out.push({ rowNumber, cells });
        break;
      case 'sheetData':
        done = true;
        break;
    }
  });

  try {
    stream.setEncoding('utf8');
    for await (const chunk of stream) {
      try {
        parser.write(chunk as string);
      } catch (err) {
        throw new InputError(
          `${fileName}, sheet "${sheetName}": the sheet's XML is damaged after row ${rowNumber} (${errorMessage(err)}). Open the workbook in Excel, save it again, and upload it again.`,
          { file: fileName, sheet: sheetName, row: rowNumber },
        );
      }
      if (badString) {
        throw new InputError(
          `${fileName}, sheet "${sheetName}", row ${badString.ref}: a cell refers to shared string ${badString.index}, which the workbook does not have (it has ${strings.count}); the file is damaged. Open it in Excel, save it again, and upload it again.`,
          { file: fileName, sheet: sheetName, row: Number(badString.ref) },
        );
      }
      if (out.length > 0) {
        const batch = out;
        out = [];
        yield batch;
      }
      if (done) break;
    }
    if (!done) parser.close();
    if (out.length > 0) yield out;
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(
      `${fileName}, sheet "${sheetName}": the workbook is damaged after row ${rowNumber} (${errorMessage(err)}). Open it in Excel, save it again, and upload it again.`,
      { file: fileName, sheet: sheetName, row: rowNumber },
    );
  } finally {
    stream.destroy();
    await close();
  }
}
