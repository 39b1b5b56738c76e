/**
 * The result workbook of a run: sheets `Results`, `Errors`, an optional item sheet (e.g. `Trips`)
 * and `Summary` (last), written as a stream with memory bounded whatever the row count.
 *
 * How it is written (see `bench/consolidate-workbook.ts` for why not exceljs):
 * - Each sheet is SpreadsheetML with inline strings (no shared-strings table to hold in memory).
 * - `Results` streams straight into its zip entry (yazl, native zlib deflate) as rows arrive.
 *   `Errors` and the item sheet are interleaved with it, and a zip entry must be written whole, so
 *   they stream into temporary XML files beside the workbook and are zipped by `finish()`.
 * - Column widths come from the header and the first `SAMPLE_ROWS` rows, which are held back
 *   until the sheet starts (the `<cols>` element precedes the rows).
 * - A sheet that passes Excel's row limit keeps its first 1,048,575 data rows in the workbook and
 *   all its rows in `<baseName>.<sheet>.csv` (UTF-8 with BOM, CRLF). A sheet whose
 *   `expectedRows` hint is past the limit writes that CSV from the start; a sheet without a hint
 *   writes it as a precaution and `finish()` deletes it when the sheet fitted (pass hints to
 *   save that work); a sheet whose hint is within the limit writes none, and going past the limit
 *   then is a programming error (`RangeError`).
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { PassThrough, type Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { ZipFile } from 'yazl';
import type { ColumnType } from '../../runtime/config/schema';
import type { Cell } from '../../runtime/model';
import { columnLetter } from '../records/raw';
import { cellXml, csvField, csvText, displayLength, STYLE, textCellXml, XLSX_MAX_CELL_CHARS, XLSX_MAX_COLUMNS } from './cells';
import {
  appPropsXml,
  contentTypesXml,
  corePropsXml,
  rootRelsXml,
  sheetHeadXml,
  sheetTailXml,
  stylesXml,
  workbookRelsXml,
  workbookXml,
  type WorkbookSheetEntry,
} from './ooxml-parts';

/** Excel's row limit, header row included. */
export const EXCEL_MAX_ROWS = 1_048_576;

export interface WorkbookColumn {
  name: string;
  type: ColumnType;
}

export interface ResultWorkbookOptions {
  /** Local directory to write into (it must exist). */
  dir: string;
  /** Files: `<baseName>.xlsx` and, when needed, `<baseName>.<sheet-lowercase>.csv`. */
  baseName: string;
  /** Columns of the `Results` sheet. */
  results: WorkbookColumn[];
  /** Columns of the `Errors` sheet. */
  errors: WorkbookColumn[];
  /** An extra sheet written after `Errors`, e.g. `Trips`. */
  itemSheet?: { name: string; columns: WorkbookColumn[] };
  /**
   * Expected data rows per sheet. A sheet expected past Excel's limit writes its CSV from the
   * start; a sheet without a hint writes one as a precaution (deleted when not needed); a sheet
   * expected within the limit writes none. @default - no hints
   */
  expectedRows?: { results?: number; errors?: number; items?: number };
  /** For tests: row limit per sheet, header included. @default EXCEL_MAX_ROWS */
  maxRowsPerSheet?: number;
  /** Deflate level of the zip entries, 0-9. @default 3 */
  compressionLevel?: number;
  /**
   * Column per sheet (by name) where a row's note about a cut cell goes, after any text already
   * there. @default - no note in the row (the Summary and the long-cells CSV still say it)
   */
  noteColumns?: { results?: string; errors?: string; items?: string };
}

export interface ResultWorkbookFiles {
  workbookPath: string;
  /**
   * CSV files written alongside: for a sheet that passed Excel's row limit, ALL its rows; for a
   * sheet with cells past Excel's 32,767 characters, `<baseName>.<sheet>.long-cells.csv` with the
   * whole value of each cut cell (Row, Column, Characters, Value).
   */
  csvPaths: string[];
  /** Data rows added per sheet (all of them, including those only in a CSV file). */
  rows: { results: number; errors: number; items: number };
  /** Names of the sheets whose xlsx copy stops at Excel's limit. */
  truncatedSheets: string[];
  /** Cells cut to Excel's 32,767 characters in the workbook (whole in a long-cells CSV). */
  cutCells: number;
}

/**
 * Names for the `wanted` columns that differ from the `taken` ones and from each other (case and
 * spaces ignored): `Status` beside an input column `status` becomes `Status (result)`, then
 * `Status (result 2)`. A result workbook never has two columns under one header.
 */
export function distinctNames(taken: readonly string[], wanted: readonly string[]): string[] {
  const key = (name: string) => name.normalize('NFKC').trim().replace(/\s+/g, ' ').toLowerCase();
  const used = new Set(taken.map(key));
  return wanted.map((name) => {
    let candidate = name;
    for (let n = 1; used.has(key(candidate)); n++) candidate = `${name} (result${n > 1 ? ` ${n}` : ''})`;
    used.add(key(candidate));
    return candidate;
  });
}

const LONG_CELL_COLUMNS: WorkbookColumn[] = [
  { name: 'Row', type: 'integer' },
  { name: 'Column', type: 'text' },
  { name: 'Characters', type: 'integer' },
  { name: 'Value', type: 'text' },
];

export interface ResultWorkbook {
  /** Values aligned with the results columns; await when it returns a promise (backpressure). */
  addResult(values: readonly Cell[]): Promise<void> | void;
  addError(values: readonly Cell[]): Promise<void> | void;
  addItem(values: readonly Cell[]): Promise<void> | void;
  /**
   * Writes the Summary sheet (the last sheet: label/value rows, plus a note per truncated sheet)
   * and closes every file. The workbook opens on `Results`.
   */
  finish(summary: ReadonlyArray<readonly [string, Cell]>): Promise<ResultWorkbookFiles>;
  /** Stops writing and removes every file written so far. */
  abort(): Promise<void>;
}

/**
 * Deflate level of the zip entries. Level 3 costs about 60% of zlib's default (6) in CPU for
 * about 11% more bytes; at level 6 deflate, not the XML, bounds the speed on 2 vCPUs
 * (see bench/consolidate-workbook.ts).
 */
const DEFAULT_COMPRESSION_LEVEL = 3;
/** Rows held back to size the columns before a sheet's first row is written. */
const SAMPLE_ROWS = 200;
const MIN_WIDTH = 8;
const MAX_WIDTH = 60;
/** Characters gathered before a write to the underlying stream. */
const FLUSH_CHARS = 1 << 16;
const STREAM_BUFFER_BYTES = 1 << 20;
const SHEET_NAME_FORBIDDEN = /[\\/?*[\]:]/;
const RESERVED_SHEET_NAMES = ['results', 'errors', 'summary', 'history'];

type SheetKey = 'results' | 'errors' | 'items';

function noop(): void {}

/** A writable with a string buffer in front, which reports backpressure as a promise. */
class BufferedSink {
  private buf = '';
  private waiting: Promise<void> | undefined;
  private failure: Error | undefined;

  constructor(readonly stream: Writable) {
    stream.on('error', (err: Error) => {
      this.failure ??= err;
    });
  }

  write(text: string): Promise<void> | undefined {
    this.buf += text;
    return this.buf.length >= FLUSH_CHARS ? this.flush() : this.waiting;
  }

  flush(): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    if (this.buf.length > 0) {
      const ok = this.stream.write(this.buf);
      this.buf = '';
      if (!ok && !this.waiting) {
        // Resolves on drain, close or error; an error is thrown by the next write or by end().
        this.waiting = new Promise<void>((resolve) => {
          const done = () => {
            this.stream.off('drain', done);
            this.stream.off('close', done);
            this.stream.off('error', done);
            this.waiting = undefined;
            resolve();
          };
          this.stream.on('drain', done);
          this.stream.on('close', done);
          this.stream.on('error', done);
        });
      }
    }
    return this.waiting;
  }

  async end(): Promise<void> {
    await this.flush();
    this.stream.end();
    await finished(this.stream, { readable: false });
    if (this.failure) throw this.failure;
  }

  /** Stops writing; resolves once the file is closed (a file still opening would appear after a delete). */
  destroy(): Promise<void> {
    this.buf = '';
    const closed = this.stream.closed ? Promise.resolve() : new Promise<void>((resolve) => this.stream.once('close', () => resolve()));
    this.stream.destroy();
    return closed;
  }
}

function combine(a: Promise<void> | undefined, b: Promise<void> | undefined): Promise<void> | undefined {
  if (!a) return b;
  if (!b) return a;
  return Promise.all([a, b]).then(noop);
}

/** A CSV copy of a sheet: UTF-8 with BOM (so Excel reads it as UTF-8), CRLF, RFC 4180 quoting. */
class CsvCopy {
  readonly sink: BufferedSink;
  private readonly types: ColumnType[];

  constructor(
    readonly path: string,
    columns: readonly WorkbookColumn[],
  ) {
    this.sink = new BufferedSink(createWriteStream(path, { highWaterMark: STREAM_BUFFER_BYTES }));
    this.types = columns.map((c) => c.type);
    this.sink.write(`\ufeff${columns.map((c) => csvText(c.name)).join(',')}\r\n`);
  }

  add(values: readonly Cell[]): Promise<void> | undefined {
    const types = this.types;
    let line = types.length > 0 ? csvField(values[0], types[0]) : '';
    for (let c = 1; c < types.length; c++) line += `,${csvField(values[c], types[c])}`;
    return this.sink.write(`${line}\r\n`);
  }
}

interface SheetStreamOptions {
  name: string;
  columns: readonly WorkbookColumn[];
  xml: BufferedSink;
  csv: CsvCopy | undefined;
  maxDataRows: number;
  selected: boolean;
  /** Index of the column that takes notes about cut cells, -1 for none. */
  noteIndex: number;
  /** Path of the long-cells CSV, created on the first cell past Excel's limit. */
  longCellsPath: string;
}

/** One data sheet: header, frozen pane, autofilter, typed cells; CSV copy when configured. */
class SheetStream {
  readonly name: string;
  readonly columns: readonly WorkbookColumn[];
  readonly csv: CsvCopy | undefined;
  /** Data rows added. */
  rows = 0;
  /** Data rows in the xlsx sheet. */
  xlsxRows = 0;
  private sample: Cell[][] | undefined = [];
  private readonly xml: BufferedSink;
  private readonly types: ColumnType[];
  private readonly letters: string[];
  private readonly maxDataRows: number;
  private readonly selected: boolean;
  private readonly noteIndex: number;
  private readonly longCellsPath: string;
  /** The whole values of cut cells, once there is one. */
  longCells: CsvCopy | undefined;
  cutCells = 0;

  constructor(o: SheetStreamOptions) {
    this.name = o.name;
    this.columns = o.columns;
    this.xml = o.xml;
    this.csv = o.csv;
    this.maxDataRows = o.maxDataRows;
    this.selected = o.selected;
    this.types = o.columns.map((c) => c.type);
    this.letters = o.columns.map((_, i) => columnLetter(i));
    this.noteIndex = o.noteIndex;
    this.longCellsPath = o.longCellsPath;
  }

  get truncated(): boolean {
    return this.rows > this.maxDataRows;
  }

  add(values: readonly Cell[]): Promise<void> | undefined {
    const n = this.rows + 1;
    if (n > this.maxDataRows && !this.csv) {
      throw new RangeError(
        `sheet ${this.name}: row ${n} passes the workbook's limit of ${this.maxDataRows} data rows, but its ` +
          'expectedRows hint was within it, so no CSV copy is being written; pass an upper bound as the hint',
      );
    }
    this.rows = n;
    const toCsv = this.csv?.add(values);
    if (n > this.maxDataRows) return toCsv;
    this.xlsxRows = n;
    let toXml: Promise<void> | undefined;
    if (this.sample) {
      this.sample.push(values.slice());
      if (this.sample.length >= SAMPLE_ROWS) toXml = this.start();
    } else {
      toXml = this.xml.write(this.rowXml(values, n + 1));
    }
    return combine(toXml, toCsv);
  }

  /**
   * A row with text past Excel's cell limit: each such value goes whole to the long-cells CSV, and
   * the row's note column says what was cut and where the whole value is.
   */
  private withNotes(values: readonly Cell[], r: number): readonly Cell[] {
    const notes: string[] = [];
    for (let c = 0; c < values.length; c++) {
      const v = values[c];
      if (typeof v !== 'string' || v.length <= XLSX_MAX_CELL_CHARS) continue;
      this.longCells ??= new CsvCopy(this.longCellsPath, LONG_CELL_COLUMNS);
      void this.longCells.add([r, this.columns[c]!.name, v.length, v]);
      this.cutCells++;
      notes.push(
        `column "${this.columns[c]!.name}" is cut to Excel's ${XLSX_MAX_CELL_CHARS.toLocaleString('en-US')} characters (of ${v.length.toLocaleString('en-US')}); the whole value is in ${basename(this.longCellsPath)}`,
      );
    }
    if (notes.length === 0 || this.noteIndex < 0) return values;
    const out = values.slice();
    const before = out[this.noteIndex];
    out[this.noteIndex] =
      before === null || before === undefined || before === '' ? notes.join('; ') : `${String(before)}; ${notes.join('; ')}`;
    return out;
  }

  private rowXml(row: readonly Cell[], r: number): string {
    const types = this.types;
    const letters = this.letters;
    let values = row;
    for (let c = 0; c < row.length; c++) {
      const v = row[c];
      if (typeof v === 'string' && v.length > XLSX_MAX_CELL_CHARS) {
        values = this.withNotes(row, r);
        break;
      }
    }
    let s = `<row r="${r}">`;
    for (let c = 0; c < types.length; c++) {
      const v = values[c];
      if (v === null || v === undefined || v === '') continue;
      s += cellXml(letters[c] + r, v, types[c]);
    }
    return `${s}</row>`;
  }

  private widths(): number[] {
    const sample = this.sample ?? [];
    return this.columns.map((col, c) => {
      let longest = Math.ceil(col.name.length * 1.1) + 3; // bold text and the filter button
      for (const row of sample) longest = Math.max(longest, displayLength(row[c], col.type) + 2);
      return Math.min(MAX_WIDTH, Math.max(MIN_WIDTH, longest));
    });
  }

  /** Writes the sheet's head, header row and the rows held back for sizing. */
  private start(): Promise<void> | undefined {
    const sample = this.sample ?? [];
    let head = sheetHeadXml({ widths: this.widths(), freezeHeader: true, selected: this.selected });
    head += '<row r="1">';
    this.columns.forEach((col, c) => {
      head += textCellXml(`${this.letters[c]}1`, col.name, STYLE.header);
    });
    head += '</row>';
    this.sample = undefined;
    let last = this.xml.write(head);
    sample.forEach((values, i) => {
      last = this.xml.write(this.rowXml(values, i + 2)) ?? last;
    });
    return last;
  }

  /** Range of the autofilter, header included. */
  get filter(): { columns: number; lastRow: number } | undefined {
    return this.columns.length > 0 ? { columns: this.columns.length, lastRow: this.xlsxRows + 1 } : undefined;
  }

  async finish(): Promise<void> {
    if (this.sample) await this.start();
    this.xml.write(sheetTailXml(this.filter));
    await Promise.all([this.xml.end(), this.csv?.sink.end(), this.longCells?.sink.end()]);
  }

  async destroy(): Promise<void> {
    await Promise.all([this.xml.destroy(), this.csv?.sink.destroy(), this.longCells?.sink.destroy()]);
  }
}

function validateSheetName(name: string): void {
  const problems: string[] = [];
  if (name.length < 1 || name.length > 31) problems.push('must be 1-31 characters');
  if (SHEET_NAME_FORBIDDEN.test(name)) problems.push('must not contain \\ / ? * [ ] :');
  if (name.startsWith("'") || name.endsWith("'")) problems.push('must not start or end with an apostrophe');
  if (RESERVED_SHEET_NAMES.includes(name.toLowerCase())) problems.push('is already used by the workbook');
  if (problems.length > 0) throw new Error(`item sheet name "${name}" ${problems.join(', ')}`);
}

function validateColumns(sheet: string, columns: readonly WorkbookColumn[]): void {
  if (columns.length > XLSX_MAX_COLUMNS) {
    throw new Error(`sheet ${sheet} has ${columns.length} columns; Excel allows at most ${XLSX_MAX_COLUMNS}`);
  }
}

function csvFileName(baseName: string, sheet: string): string {
  const slug = sheet
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return `${baseName}.${slug || 'sheet'}.csv`;
}

function summarySheetXml(rows: ReadonlyArray<readonly [string, Cell]>): string {
  let labelWidth = 12;
  let valueWidth = 12;
  for (const [label, value] of rows) {
    labelWidth = Math.max(labelWidth, Math.ceil(label.length * 1.1) + 2);
    valueWidth = Math.max(valueWidth, displayLength(value, 'date') + 2);
  }
  let xml = sheetHeadXml({
    widths: [Math.min(labelWidth, MAX_WIDTH), Math.min(valueWidth, 100)],
    freezeHeader: false,
    selected: false,
  });
  rows.forEach(([label, value], i) => {
    const r = i + 1;
    // Text that is ISO date or date-time becomes a real date; other values keep their type.
    xml += `<row r="${r}">${textCellXml(`A${r}`, label, STYLE.label)}${cellXml(`B${r}`, value, 'date')}</row>`;
  });
  return xml + sheetTailXml();
}

/**
 * Opens `<dir>/<baseName>.xlsx` for writing. Also creates a temporary folder
 * `<dir>/.<baseName>.parts-*` that `finish()` and `abort()` remove.
 */
export async function createResultWorkbook(opts: ResultWorkbookOptions): Promise<ResultWorkbook> {
  if (!opts.baseName || /[\\/]/.test(opts.baseName)) {
    throw new Error(`baseName "${opts.baseName}" must be a file name without a directory`);
  }
  if (opts.itemSheet) validateSheetName(opts.itemSheet.name);
  validateColumns('Results', opts.results);
  validateColumns('Errors', opts.errors);
  if (opts.itemSheet) validateColumns(opts.itemSheet.name, opts.itemSheet.columns);
  const maxRows = opts.maxRowsPerSheet ?? EXCEL_MAX_ROWS;
  if (!Number.isInteger(maxRows) || maxRows < 2 || maxRows > EXCEL_MAX_ROWS) {
    throw new Error(`maxRowsPerSheet ${maxRows} must be an integer from 2 to ${EXCEL_MAX_ROWS}`);
  }
  const maxDataRows = maxRows - 1;
  const compressionLevel = opts.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL;

  const workbookPath = join(opts.dir, `${opts.baseName}.xlsx`);
  const tmpDir = await mkdtemp(join(opts.dir, `.${opts.baseName}.parts-`));
  const mtime = new Date();
  const zip = new ZipFile();
  const out = createWriteStream(workbookPath, { highWaterMark: STREAM_BUFFER_BYTES });
  let zipFailure: Error | undefined;
  let resultsEntry: PassThrough | undefined;
  const onZipFailure = (err: Error) => {
    zipFailure ??= err;
    // Nothing will read the Results entry any more: release a writer waiting for it to drain.
    resultsEntry?.destroy();
  };
  zip.on('error', onZipFailure);
  out.on('error', onZipFailure);
  zip.outputStream.pipe(out);

  const defs: { key: SheetKey; name: string; columns: readonly WorkbookColumn[] }[] = [
    { key: 'results', name: 'Results', columns: opts.results },
    { key: 'errors', name: 'Errors', columns: opts.errors },
  ];
  if (opts.itemSheet) defs.push({ key: 'items', name: opts.itemSheet.name, columns: opts.itemSheet.columns });
  const sheetCount = defs.length + 1; // + Summary

  const entry = { mtime, compressionLevel };
  zip.addBuffer(Buffer.from(contentTypesXml(sheetCount)), '[Content_Types].xml', entry);
  zip.addBuffer(Buffer.from(rootRelsXml()), '_rels/.rels', entry);
  zip.addBuffer(Buffer.from(corePropsXml(mtime)), 'docProps/core.xml', entry);
  zip.addBuffer(Buffer.from(appPropsXml()), 'docProps/app.xml', entry);
  zip.addBuffer(Buffer.from(workbookRelsXml(sheetCount)), 'xl/_rels/workbook.xml.rels', entry);
  zip.addBuffer(Buffer.from(stylesXml()), 'xl/styles.xml', entry);

  const sheets: Record<SheetKey, SheetStream | undefined> = { results: undefined, errors: undefined, items: undefined };
  const tempParts: { path: string; part: string }[] = [];
  defs.forEach((def, i) => {
    const part = `xl/worksheets/sheet${i + 1}.xml`;
    let stream: Writable;
    if (i === 0) {
      // Results: straight into its zip entry.
      resultsEntry = new PassThrough({ highWaterMark: STREAM_BUFFER_BYTES });
      stream = resultsEntry;
      zip.addReadStream(resultsEntry, part, entry);
    } else {
      const path = join(tmpDir, `sheet${i + 1}.xml`);
      stream = createWriteStream(path, { highWaterMark: STREAM_BUFFER_BYTES });
      tempParts.push({ path, part });
    }
    const hint = opts.expectedRows?.[def.key];
    // No hint: a precautionary copy (deleted by finish() if the sheet fits); a hint past the limit: the full copy.
    let csv: CsvCopy | undefined;
    if (hint === undefined || hint > maxDataRows) {
      csv = new CsvCopy(join(opts.dir, csvFileName(opts.baseName, def.name)), def.columns);
    }
    sheets[def.key] = new SheetStream({
      name: def.name,
      columns: def.columns,
      xml: new BufferedSink(stream),
      csv,
      maxDataRows,
      selected: i === 0,
      noteIndex: def.columns.findIndex((c) => c.name === opts.noteColumns?.[def.key]),
      longCellsPath: join(opts.dir, csvFileName(opts.baseName, def.name).replace(/\.csv$/, '.long-cells.csv')),
    });
  });

  let state: 'open' | 'finishing' | 'closed' = 'open';

  function sheet(key: SheetKey): SheetStream {
    if (state !== 'open') throw new Error(`the result workbook is ${state === 'closed' ? 'closed' : 'finishing'}`);
    if (zipFailure) throw zipFailure;
    const s = sheets[key];
    if (!s) throw new Error('this workbook has no item sheet (pass itemSheet to createResultWorkbook)');
    return s;
  }

  async function removeAll(): Promise<void> {
    const closed = Object.values(sheets).map((s) => s?.destroy());
    const outClosed = out.closed ? Promise.resolve() : new Promise<void>((resolve) => out.once('close', () => resolve()));
    out.destroy();
    await Promise.all([...closed, outClosed]);
    const csvPaths = Object.values(sheets).flatMap((s) => [s?.csv?.path, s?.longCells?.path].filter((p): p is string => p !== undefined));
    await Promise.all([workbookPath, ...csvPaths, tmpDir].map((p) => rm(p, { recursive: true, force: true })));
  }

  async function finish(summary: ReadonlyArray<readonly [string, Cell]>): Promise<ResultWorkbookFiles> {
    if (state !== 'open') throw new Error('finish() was already called');
    state = 'finishing';
    try {
      const list = defs.map((d) => sheets[d.key] as SheetStream);
      await Promise.all(list.map((s) => s.finish()));
      for (const t of tempParts) zip.addFile(t.path, t.part, entry);

      const csvPaths: string[] = [];
      const truncatedSheets: string[] = [];
      const notes: [string, Cell][] = [];
      for (const s of list) {
        if (!s.csv) continue;
        if (s.truncated) {
          csvPaths.push(s.csv.path);
          truncatedSheets.push(s.name);
          notes.push([
            `${s.name} sheet`,
            `shows the first ${s.xlsxRows.toLocaleString('en-US')} of ${s.rows.toLocaleString('en-US')} rows; ` +
              `all rows are in ${basename(s.csv.path)}`,
          ]);
        } else {
          await rm(s.csv.path, { force: true });
        }
      }
      let cutCells = 0;
      for (const s of list) {
        if (!s.longCells) continue;
        cutCells += s.cutCells;
        csvPaths.push(s.longCells.path);
        notes.push([
          `${s.name} sheet, long cells`,
          `${s.cutCells.toLocaleString('en-US')} cell${s.cutCells > 1 ? 's' : ''} longer than Excel's ${XLSX_MAX_CELL_CHARS.toLocaleString('en-US')} characters ${s.cutCells > 1 ? 'are' : 'is'} cut here; the whole values are in ${basename(s.longCells.path)}`,
        ]);
      }
      zip.addBuffer(Buffer.from(summarySheetXml([...summary, ...notes])), `xl/worksheets/sheet${sheetCount}.xml`, entry);
      const entries: WorkbookSheetEntry[] = list.map((s) => ({ name: s.name, filter: s.filter }));
      entries.push({ name: 'Summary' });
      zip.addBuffer(Buffer.from(workbookXml(entries, 0)), 'xl/workbook.xml', entry);
      zip.end();
      await new Promise<void>((resolve, reject) => {
        const check = () => (zipFailure ? reject(zipFailure) : resolve());
        if (out.closed) check();
        else out.once('close', check);
      });
      if (zipFailure) throw zipFailure;
      await rm(tmpDir, { recursive: true, force: true });
      state = 'closed';
      return {
        workbookPath,
        csvPaths,
        rows: {
          results: sheets.results?.rows ?? 0,
          errors: sheets.errors?.rows ?? 0,
          items: sheets.items?.rows ?? 0,
        },
        truncatedSheets,
        cutCells,
      };
    } catch (err) {
      state = 'closed';
      await removeAll();
      throw zipFailure ?? err;
    }
  }

  return {
    addResult: (values) => sheet('results').add(values),
    addError: (values) => sheet('errors').add(values),
    addItem: (values) => sheet('items').add(values),
    finish,
    async abort() {
      if (state === 'closed') return;
      state = 'closed';
      await removeAll();
    },
  };
}
