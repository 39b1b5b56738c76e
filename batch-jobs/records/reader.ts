/**
 * Opens an uploaded file (.xlsx, .csv, .tsv) as a stream of normalised rows.
 *
 * `openRecords` checks what it can before any row is handed out: the extension, that the bytes
 * are what the extension says, the sheet, the header row (required columns present, no
 * duplicates) and that there is at least one data row. Each of these throws an InputError whose
 * message names the file, sheet, row or column and says what to do. Problems of single cells do
 * not throw: they travel with the row (`SourceRow.problems`) so the item is reported, not lost.
 */
import type { Readable } from 'node:stream';
import { normaliseHeader, type ColumnConfig, type ColumnType } from '../../runtime/config/schema';
import { InputError } from '../../runtime/errors';
import type { Cell, Row } from '../../runtime/model';
import { decodeText, peek, sniff, type Sniffed } from './bytes';
import { openCsv } from './csv';
import { isBlank, normaliseCell, rawToText } from './normalise';
import { columnLetter, type RawRow, type RawSource } from './raw';
import { openXlsx } from './xlsx';

export interface OpenRecordsOptions {
  /** e.g. 'customers.xlsx': type detection by extension, and named in messages. */
  fileName: string;
  /** The pipeline's declared input columns. */
  columns: ColumnConfig[];
  /** Workbook sheet to read. @default - the first (visible) sheet */
  sheet?: string;
}

export interface SourceRow {
  /** Row number as a spreadsheet shows it (header = row 1; records, not physical lines, for CSV). */
  rowNumber: number;
  row: Row;
  /** Cell problems, each naming row and column; empty when the row is clean. */
  problems: string[];
}

export interface RecordSource {
  kind: 'csv' | 'tsv' | 'xlsx';
  /** Sheet actually read (xlsx). */
  sheet?: string;
  /** Output column names in file order: declared columns under their schema name, others under their header text. */
  columns: string[];
  /** Single pass, streamed. Break out of the loop early and the temp files and input are released. */
  rows: AsyncIterable<SourceRow>;
}

export const SUPPORTED_EXTENSIONS = ['.xlsx', '.csv', '.tsv'] as const;
const SNIFF_BYTES = 64 * 1024;

function extensionOf(fileName: string): string {
  const m = /\.[^./\\]+$/.exec(fileName);
  return m ? m[0].toLowerCase() : '';
}

interface OutputColumn {
  name: string;
  /** Position in the file (0 = column A). */
  index: number;
  type: ColumnType;
  required: boolean;
}

/** Opens the file, validates its header, and returns its rows as a stream. */
export async function openRecords(input: Readable, opts: OpenRecordsOptions): Promise<RecordSource> {
  const file = opts.fileName;
  const ext = extensionOf(file);
  if (!(SUPPORTED_EXTENSIONS as readonly string[]).includes(ext)) {
    input.destroy();
    throw new InputError(
      `${file}: files of type ${ext || '(no extension)'} are not supported. Upload an Excel workbook (.xlsx) or a CSV (.csv) or tab-separated (.tsv) text file.`,
      { file },
    );
  }
  const kind = ext.slice(1) as RecordSource['kind'];
  const { head, chunks } = await peek(input, SNIFF_BYTES);
  const sniffed = sniff(head);
  try {
    checkContent(file, kind, sniffed, head.length);
  } catch (err) {
    input.destroy();
    throw err;
  }

  const raw: RawSource =
    kind === 'xlsx'
      ? await openXlsx(chunks, { fileName: file, sheet: opts.sheet })
      : await openCsv(decodeText(chunks, sniffed.encoding ?? 'utf-8'), { fileName: file, delimiter: kind === 'tsv' ? '\t' : undefined });
  try {
    return await withHeader(raw, kind, opts);
  } catch (err) {
    await raw.batches.return(undefined);
    await raw.close();
    input.destroy();
    throw err;
  }
}

function checkContent(file: string, kind: RecordSource['kind'], sniffed: Sniffed, size: number): void {
  const fail = (what: string, todo: string) => {
    throw new InputError(`${file} ${what}. ${todo}`, { file });
  };
  if (size === 0 || sniffed.kind === 'empty') fail('is empty', 'Upload the file again with its header row and data.');
  const saveAs = kind === 'xlsx' ? 'Open it in Excel and save it as an Excel Workbook (.xlsx)' : 'Export the data as CSV (comma-separated, UTF-8)';
  switch (sniffed.kind) {
    case 'ole2':
      fail(
        'is an Excel 97-2003 workbook (.xls) or a password-protected workbook, which cannot be read',
        `Open it in Excel, remove any password, and save it as an Excel Workbook (.xlsx)${kind === 'xlsx' ? '' : ' or as CSV'}.`,
      );
      break;
    case 'pdf':
      fail('is a PDF document, not a spreadsheet', `${saveAs} and upload that.`);
      break;
    case 'gzip':
      fail('is gzip-compressed', `Upload the uncompressed ${kind === 'xlsx' ? 'workbook' : 'file'}.`);
      break;
    case 'binary':
      fail(`does not contain ${kind === 'xlsx' ? 'an Excel workbook' : 'text'} (it holds binary data)`, `${saveAs} and upload that.`);
      break;
    case 'html':
      fail('is a web page (HTML) saved under a spreadsheet name', `${saveAs} and upload that.`);
      break;
  }
  if (kind === 'xlsx') {
    if (sniffed.kind === 'xml') {
      fail('is an XML spreadsheet (Excel 2003 XML), not an .xlsx workbook', 'Open it in Excel and save it as an Excel Workbook (.xlsx).');
    }
    if (sniffed.kind !== 'zip') {
      fail('is text, not an Excel workbook (an .xlsx file is a zip archive)', 'If it is CSV data, rename it to .csv; otherwise save it from Excel as .xlsx.');
    }
  } else if (sniffed.kind === 'zip') {
    fail(
      `is a zip archive (most likely an Excel workbook), not ${kind.toUpperCase()} text`,
      `Rename it to .xlsx if it is a workbook, or open it in Excel and save it as ${kind === 'tsv' ? 'tab-separated text' : 'CSV'}.`,
    );
  }
}

/** Reads rows one at a time out of the batches. */
class RowPuller {
  private batch: RawRow[] = [];
  private at = 0;
  constructor(private readonly batches: AsyncGenerator<RawRow[]>) {}

  async next(): Promise<RawRow | undefined> {
    while (this.at >= this.batch.length) {
      const next = await this.batches.next();
      if (next.done) return undefined;
      this.batch = next.value;
      this.at = 0;
    }
    return this.batch[this.at++];
  }

  /** Rows left in the current batch (taken out). */
  rest(): RawRow[] {
    const rest = this.batch.slice(this.at);
    this.batch = [];
    this.at = 0;
    return rest;
  }
}

function isEmptyRow(row: RawRow): boolean {
  const cells = row.cells;
  for (let i = 0; i < cells.length; i++) if (!isBlank(cells[i])) return false;
  return true;
}

async function withHeader(raw: RawSource, kind: RecordSource['kind'], opts: OpenRecordsOptions): Promise<RecordSource> {
  const file = opts.fileName;
  const where = raw.sheet !== undefined ? `${file}, sheet "${raw.sheet}"` : file;
  const loc = (extra: { row?: number; column?: string } = {}) => ({ file, ...(raw.sheet !== undefined ? { sheet: raw.sheet } : {}), ...extra });
  const puller = new RowPuller(raw.batches);

  let header: RawRow | undefined;
  while ((header = await puller.next()) !== undefined && isEmptyRow(header));
  if (!header) {
    throw new InputError(
      `${where} is empty: there is no header row and no data. Put the column headers in the first row and the records below them, then upload the file again.`,
      loc(),
    );
  }

  // Header cells -> names. Blank headers past the last named column are dropped; a blank one
  // between named columns is kept as "Column F" so no data is lost silently.
  const headerTexts = Array.from({ length: header.cells.length }, (_, i) => rawToText(header.cells[i] ?? null));
  let width = headerTexts.length;
  while (width > 0 && headerTexts[width - 1] === null) width--;
  const declared = new Map(opts.columns.map((c) => [normaliseHeader(c.name), c]));
  const output: OutputColumn[] = [];
  const seen = new Map<string, number[]>();
  for (let i = 0; i < width; i++) {
    const text = headerTexts[i] ?? `Column ${columnLetter(i)}`;
    const key = normaliseHeader(text);
    seen.set(key, [...(seen.get(key) ?? []), i]);
    const decl = declared.get(key);
    output.push(
      decl
        ? { name: decl.name, index: i, type: decl.type, required: decl.required }
        : { name: text, index: i, type: 'text', required: false },
    );
  }
  const found = output.map((c) => `"${headerTexts[c.index] ?? ''}"`).join(', ') || 'none';

  const duplicates = [...seen.entries()].filter(([, at]) => at.length > 1);
  if (duplicates.length > 0) {
    const list = duplicates.map(([, at]) => `"${headerTexts[at[0]!]}" (columns ${at.map(columnLetter).join(', ')})`).join('; ');
    throw new InputError(
      `${where}, row ${header.rowNumber}: the header has the same column name more than once (case and spaces are ignored): ${list}. Rename or remove the extra columns and upload the file again.`,
      loc({ row: header.rowNumber, column: headerTexts[duplicates[0]![1][0]!] ?? undefined }),
    );
  }

  const missing = opts.columns.filter((c) => c.required && !seen.has(normaliseHeader(c.name)));
  if (missing.length > 0) {
    throw new InputError(
      `${where}: required column${missing.length > 1 ? 's' : ''} ${missing.map((c) => `"${c.name}"`).join(', ')} ${missing.length > 1 ? 'are' : 'is'} missing from the header row (row ${header.rowNumber}). Headers found: ${found}. Add the missing column${missing.length > 1 ? 's' : ''} (header matching ignores case and extra spaces) and upload the file again.`,
      loc({ row: header.rowNumber, column: missing[0]!.name }),
    );
  }

  // At least one data row, found before anything is handed out.
  let first: RawRow | undefined;
  while ((first = await puller.next()) !== undefined && isEmptyRow(first));
  if (!first) {
    throw new InputError(
      `${where} has a header row (row ${header.rowNumber}) but no data rows. Add the records below the header and upload the file again.`,
      loc({ row: header.rowNumber }),
    );
  }

  const date1904 = raw.date1904 ?? false;
  const strictWidth = raw.strictWidth;
  const headerWidth = width;
  const normaliseRow = (r: RawRow): SourceRow => {
    const cells = r.cells;
    const row: Row = {};
    const problems: string[] = r.problems ? [...r.problems] : [];
    for (let j = 0; j < output.length; j++) {
      const col = output[j]!;
      const rawCell = cells[col.index] ?? null;
      let value: Cell;
      const result = normaliseCell(rawCell, col.type, date1904);
      if (result.ok) value = result.value;
      else {
        value = rawToText(rawCell);
        problems.push(`row ${r.rowNumber}, column "${col.name}": ${result.problem}`);
      }
      if (value === null && col.required) problems.push(`row ${r.rowNumber}, column "${col.name}": empty, but the column is required`);
      row[col.name] = value;
    }
    if (strictWidth && cells.length > headerWidth) {
      const extra = cells.slice(headerWidth).filter((c) => !isBlank(c));
      if (extra.length > 0) {
        problems.push(
          `row ${r.rowNumber}: ${cells.length} values but the header has ${headerWidth} columns; the extra values (${extra
            .slice(0, 3)
            .map((c) => JSON.stringify(rawToText(c)))
            .join(', ')}${extra.length > 3 ? ', ...' : ''}) are ignored. A value containing the delimiter must be quoted.`,
        );
      }
    }
    return { rowNumber: r.rowNumber, row, problems };
  };

  return {
    kind,
    ...(raw.sheet !== undefined ? { sheet: raw.sheet } : {}),
    columns: output.map((c) => c.name),
    rows: new SourceRows(raw, [first, ...puller.rest()], normaliseRow),
  };
}

/**
 * The rows as an async iterator. Hand-written rather than an async generator: rows are handed
 * out of a batch with one resolved promise each, and the next batch is awaited only when the
 * current one is used up (an async generator costs several promise hops per row).
 */
class SourceRows implements AsyncIterableIterator<SourceRow> {
  private done = false;
  private at = 0;

  constructor(
    private readonly raw: RawSource,
    private batch: RawRow[],
    private readonly normalise: (r: RawRow) => SourceRow,
  ) {}

  [Symbol.asyncIterator](): AsyncIterableIterator<SourceRow> {
    return this;
  }

  next(): Promise<IteratorResult<SourceRow>> {
    while (this.at < this.batch.length) {
      const r = this.batch[this.at++]!;
      if (!isEmptyRow(r)) return Promise.resolve({ done: false, value: this.normalise(r) });
    }
    return this.nextBatch();
  }

  private async nextBatch(): Promise<IteratorResult<SourceRow>> {
    for (;;) {
      if (this.done) return { done: true, value: undefined };
      while (this.at < this.batch.length) {
        const r = this.batch[this.at++]!;
        if (!isEmptyRow(r)) return { done: false, value: this.normalise(r) };
      }
      let next: IteratorResult<RawRow[]>;
      try {
        next = await this.raw.batches.next();
      } catch (err) {
        await this.finish();
        throw err;
      }
      if (next.done) {
        await this.finish();
        return { done: true, value: undefined };
      }
      this.batch = next.value;
      this.at = 0;
    }
  }

  async return(): Promise<IteratorResult<SourceRow>> {
    await this.finish();
    return { done: true, value: undefined };
  }

  private async finish(): Promise<void> {
    if (this.done) return;
    this.done = true;
    this.batch = [];
    this.at = 0;
    await this.raw.batches.return(undefined);
    await this.raw.close();
  }
}
