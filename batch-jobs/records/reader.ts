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
import { decodeText, ESCAPED_BYTE_BASE, peek, sniff, type Sniffed, type TextFlags } from './bytes';
import { openCsv } from './csv';
import { isBlank, normaliseCell, rawToText, type RawCell } from './normalise';
import { columnLetter, type RawRow, type RawSource } from './raw';
import { openXlsx, type XlsxLimits, type XlsxWorkbook } from './xlsx';

export interface OpenRecordsOptions {
  /** e.g. 'customers.xlsx': type detection by extension, and named in messages. */
  fileName: string;
  /** The pipeline's declared input columns. */
  columns: ColumnConfig[];
  /** Workbook sheet to read. @default - the first visible sheet that has a header row */
  sheet?: string;
  /** Non-empty rows at the top of a sheet searched for the header row. @default 10 */
  headerSearchRows?: number;
  /** Limits that refuse a workbook that inflates too far (decompression bombs). @default DEFAULT_XLSX_LIMITS */
  limits?: Partial<XlsxLimits>;
}

/** Non-empty rows searched for the header row when the options do not say. */
export const DEFAULT_HEADER_SEARCH_ROWS = 10;

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
  /** Row number of the header row. */
  headerRow: number;
  /** What a person should know about how the file was read (a header below a title, another sheet, an encoding). */
  notes: string[];
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

  if (kind !== 'xlsx') {
    const flags: TextFlags = { invalidBytes: false, nul: false };
    const raw = await openCsv(decodeText(chunks, sniffed.encoding ?? 'utf-8', flags), {
      fileName: file,
      delimiter: kind === 'tsv' ? '\t' : undefined,
    });
    const found = await withHeader(raw, kind, opts, flags);
    if (!found.ok) {
      await raw.batches.return(undefined);
      await raw.close();
      input.destroy();
      throw found.error;
    }
    if (sniffed.assumed) found.source.notes.push(`${file}: ${sniffed.assumed}.`);
    return found.source;
  }
  const book = await openXlsx(chunks, { fileName: file, limits: opts.limits });
  try {
    return await readWorkbook(book, opts);
  } catch (err) {
    await book.close();
    input.destroy();
    throw err;
  }
}

/** Reads the named sheet, or the first visible sheet that has a header row. */
async function readWorkbook(book: XlsxWorkbook, opts: OpenRecordsOptions): Promise<RecordSource> {
  const file = opts.fileName;
  const sheets = book.sheets;
  const tryOne = async (index: number) => {
    const raw = await book.openSheet(index);
    const found = await withHeader(raw, 'xlsx', opts);
    if (!found.ok) await raw.batches.return(undefined);
    return found;
  };
  if (opts.sheet !== undefined) {
    const wanted = opts.sheet.trim().toLowerCase();
    const index = sheets.findIndex((s) => s.name.trim().toLowerCase() === wanted);
    if (index < 0) {
      throw new InputError(
        `${file} has no sheet named "${opts.sheet}". Its sheets are: ${sheets.map((s) => `"${s.name}"`).join(', ') || 'none'}. Rename the sheet in the workbook, or set the pipeline's input.sheet to one of these.`,
        { file, sheet: opts.sheet },
      );
    }
    const found = await tryOne(index);
    if (!found.ok) throw found.error;
    return found.source;
  }
  const visible = sheets.flatMap((s, i) => (s.hidden ? [] : [i]));
  const candidates = visible.length > 0 ? visible : sheets.map((_, i) => i);
  if (candidates.length === 0) {
    throw new InputError(`${file} has no worksheet to read. Put the data on a worksheet and upload the workbook again.`, { file });
  }
  const misses: { sheet: string; result: Extract<HeaderResult, { ok: false }> }[] = [];
  for (const index of candidates) {
    const found = await tryOne(index);
    if (found.ok) {
      if (misses.length > 0) {
        const skipped = misses.map((m) => `"${m.sheet}"`).join(', ');
        found.source.notes.unshift(
          `Read sheet "${sheets[index]!.name}": the sheet${misses.length > 1 ? 's' : ''} before it (${skipped}) ${misses.length > 1 ? 'have' : 'has'} no header row with the pipeline's columns.`,
        );
      }
      return found.source;
    }
    misses.push({ sheet: sheets[index]!.name, result: found });
  }
  // No sheet has a header row: one sheet with data says what it lacks; several are listed.
  const withData = misses.filter((m) => m.result.firstRow !== undefined);
  if (withData.length <= 1) throw (withData[0] ?? misses[0]!).result.error;
  const required = opts.columns.filter((c) => c.required).map((c) => `"${c.name}"`);
  const list = misses
    .map((m) => {
      const r = m.result.firstRow;
      return r
        ? `"${m.sheet}" (first non-empty row ${r.rowNumber}: ${r.texts.map((t) => JSON.stringify(t)).join(', ')})`
        : `"${m.sheet}" (empty)`;
    })
    .join('; ');
  throw new InputError(
    `${file}: no sheet has a header row with the pipeline's columns${required.length > 0 ? ` (${required.join(', ')} are required)` : ''} among its first ${opts.headerSearchRows ?? DEFAULT_HEADER_SEARCH_ROWS} non-empty rows. Sheets: ${list}. Put the headers on the sheet with the data, or set the pipeline's input.sheet.`,
    { file },
  );
}

function checkContent(file: string, kind: RecordSource['kind'], sniffed: Sniffed, size: number): void {
  const fail = (what: string, todo: string) => {
    throw new InputError(`${file} ${what}. ${todo}`, { file });
  };
  if (size === 0 || sniffed.kind === 'empty') fail('is empty', 'Upload the file again with its header row and data.');
  const saveAs =
    kind === 'xlsx' ? 'Open it in Excel and save it as an Excel Workbook (.xlsx)' : 'Export the data as CSV (comma-separated, UTF-8)';
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
      fail(
        'is text, not an Excel workbook (an .xlsx file is a zip archive)',
        'If it is CSV data, rename it to .csv; otherwise save it from Excel as .xlsx.',
      );
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

type HeaderResult =
  | { ok: true; source: RecordSource }
  | {
      ok: false;
      error: InputError;
      /** The first non-empty row, when the sheet has one (for the list of sheets). */
      firstRow?: { rowNumber: number; texts: string[] };
    };

/** The header texts of a row: trimmed text per cell, null for blank cells. */
function headerTextsOf(row: RawRow): (string | null)[] {
  return Array.from({ length: row.cells.length }, (_, i) => rawToText(row.cells[i] ?? null));
}

/** A problem of one cell's text that its row must carry: bytes that are not UTF-8, NUL characters. */
function textProblem(text: string): { problem: string; cleaned: string } | undefined {
  let bad = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0 || (c >= ESCAPED_BYTE_BASE + 0x80 && c <= ESCAPED_BYTE_BASE + 0xff)) {
      bad = i;
      break;
    }
  }
  if (bad < 0) return undefined;
  const at = Buffer.byteLength(text.slice(0, bad), 'utf8') + 1;
  const cleaned = text.replace(/[\u0000\udc80-\udcff]/g, '\ufffd');
  const c = text.charCodeAt(bad);
  if (c === 0) {
    return {
      problem: `holds a NUL character (byte 0) at byte ${at} of the value; the row is not processed. Remove it (it is usually left over from a binary export) and upload the file again`,
      cleaned,
    };
  }
  const byte = c - ESCAPED_BYTE_BASE;
  const legacy = new TextDecoder('windows-1252').decode(Uint8Array.of(byte));
  const more = (text.match(/[\udc80-\udcff]/g)?.length ?? 1) - 1;
  return {
    problem: `byte ${at} of the value is 0x${byte.toString(16).toUpperCase()}, which is not UTF-8 (in Windows-1252 it would be ${JSON.stringify(legacy)})${more > 0 ? `, and ${more} more such byte${more > 1 ? 's' : ''}` : ''}; the row is not processed. Save the file as "CSV UTF-8" and upload it again`,
    cleaned,
  };
}

/**
 * Finds the header row among the first `headerSearchRows` non-empty rows: the first that has every
 * required column (with no required columns: the first that has any declared column, else the
 * first non-empty row), and returns the rows below it as the source.
 */
async function withHeader(raw: RawSource, kind: RecordSource['kind'], opts: OpenRecordsOptions, flags?: TextFlags): Promise<HeaderResult> {
  const file = opts.fileName;
  const where = raw.sheet !== undefined ? `${file}, sheet "${raw.sheet}"` : file;
  const loc = (extra: { row?: number; column?: string } = {}) => ({
    file,
    ...(raw.sheet !== undefined ? { sheet: raw.sheet } : {}),
    ...extra,
  });
  const puller = new RowPuller(raw.batches);
  const declared = new Map(opts.columns.map((c) => [normaliseHeader(c.name), c]));
  const required = opts.columns.filter((c) => c.required);
  const searchRows = Math.max(1, opts.headerSearchRows ?? DEFAULT_HEADER_SEARCH_ROWS);

  // The first non-empty rows, scored by the declared columns they name.
  const top: { row: RawRow; texts: (string | null)[]; required: number; declared: number }[] = [];
  let chosen = -1;
  while (top.length < searchRows) {
    const row = await puller.next();
    if (row === undefined) break;
    if (isEmptyRow(row)) continue;
    const texts = headerTextsOf(row);
    const names = new Set(texts.flatMap((t) => (t === null ? [] : [normaliseHeader(t)])));
    const score = {
      row,
      texts,
      required: required.filter((c) => names.has(normaliseHeader(c.name))).length,
      declared: [...declared.keys()].filter((k) => names.has(k)).length,
    };
    top.push(score);
    if (required.length > 0 ? score.required === required.length : score.declared > 0) {
      chosen = top.length - 1;
      break;
    }
  }
  const firstRow = top[0] ? { rowNumber: top[0].row.rowNumber, texts: top[0].texts.filter((t): t is string => t !== null) } : undefined;
  if (top.length === 0) {
    return {
      ok: false,
      error: new InputError(
        `${where} is empty: there is no header row and no data. Put the column headers in the first row and the records below them, then upload the file again.`,
        loc(),
      ),
    };
  }
  if (chosen < 0 && required.length === 0) chosen = 0;
  if (chosen < 0) {
    // No row has every required column: name the one that came closest (the first on a tie).
    let best = 0;
    top.forEach((t, i) => {
      const b = top[best]!;
      if (t.required > b.required || (t.required === b.required && t.declared > b.declared)) best = i;
    });
    const closest = top[best]!;
    const names = new Set(closest.texts.flatMap((t) => (t === null ? [] : [normaliseHeader(t)])));
    const missing = required.filter((c) => !names.has(normaliseHeader(c.name)));
    const found =
      closest.texts
        .filter((t) => t !== null)
        .map((t) => `"${t}"`)
        .join(', ') || 'none';
    const searched = top.length > 1 ? `, the closest match among the first ${top.length} non-empty rows` : '';
    return {
      ok: false,
      firstRow,
      error: new InputError(
        `${where}: required column${missing.length > 1 ? 's' : ''} ${missing.map((c) => `"${c.name}"`).join(', ')} ${missing.length > 1 ? 'are' : 'is'} missing from the header row (row ${closest.row.rowNumber}${searched}). Headers found: ${found}. Add the missing column${missing.length > 1 ? 's' : ''} (header matching ignores case and extra spaces) and upload the file again.`,
        loc({ row: closest.row.rowNumber, column: missing[0]!.name }),
      ),
    };
  }
  const header = top[chosen]!.row;
  const headerTexts = top[chosen]!.texts;
  const notes: string[] = [];
  if (chosen > 0) {
    const above = top.slice(0, chosen).map(
      (t) =>
        `row ${t.row.rowNumber}: ${t.texts
          .filter((x) => x !== null)
          .map((x) => JSON.stringify(x))
          .join(', ')}`,
    );
    notes.push(
      `${where}: the header is on row ${header.rowNumber}; the ${chosen} non-empty row${chosen > 1 ? 's' : ''} above it (${above.join('; ')}) ${chosen > 1 ? 'were' : 'was'} not read as data.`,
    );
  }
  // Rows read past the header while searching are data.
  const pending = top.slice(chosen + 1).map((t) => t.row);

  // Header cells -> names. Blank headers past the last named column are dropped; a blank one
  // between named columns is kept as "Column F" so no data is lost silently.
  let width = headerTexts.length;
  while (width > 0 && headerTexts[width - 1] === null) width--;
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

  const duplicates = [...seen.entries()].filter(([, at]) => at.length > 1);
  if (duplicates.length > 0) {
    const list = duplicates.map(([, at]) => `"${headerTexts[at[0]!]}" (columns ${at.map(columnLetter).join(', ')})`).join('; ');
    return {
      ok: false,
      firstRow,
      error: new InputError(
        `${where}, row ${header.rowNumber}: the header has the same column name more than once (case and spaces are ignored): ${list}. Rename or remove the extra columns and upload the file again.`,
        loc({ row: header.rowNumber, column: headerTexts[duplicates[0]![1][0]!] ?? undefined }),
      ),
    };
  }

  // At least one data row, found before anything is handed out.
  let first: RawRow | undefined = pending.shift();
  if (!first) while ((first = await puller.next()) !== undefined && isEmptyRow(first));
  if (!first) {
    return {
      ok: false,
      firstRow,
      error: new InputError(
        `${where} has a header row (row ${header.rowNumber}) but no data rows. Add the records below the header and upload the file again.`,
        loc({ row: header.rowNumber }),
      ),
    };
  }

  const date1904 = raw.date1904 ?? false;
  const strictWidth = raw.strictWidth;
  const headerWidth = width;
  const normaliseRow = (r: RawRow): SourceRow => {
    const cells = r.cells;
    const row: Row = {};
    const problems: string[] = r.problems ? [...r.problems] : [];
    const checkText = flags !== undefined && (flags.invalidBytes || flags.nul);
    for (let j = 0; j < output.length; j++) {
      const col = output[j]!;
      let rawCell: RawCell = cells[col.index] ?? null;
      if (checkText && typeof rawCell === 'string') {
        const bad = textProblem(rawCell);
        if (bad) {
          problems.push(`row ${r.rowNumber}, column "${col.name}": ${bad.problem}`);
          rawCell = bad.cleaned;
        }
      }
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
          `row ${r.rowNumber}: ${cells.length} values but the header has ${headerWidth} columns, so the values may have shifted and the row is not processed (the extra values: ${extra
            .slice(0, 3)
            .map((c) => JSON.stringify(rawToText(c)))
            .join(
              ', ',
            )}${extra.length > 3 ? ', ...' : ''}). A value containing the delimiter must be quoted; fix the row and upload it again.`,
        );
      }
    }
    return { rowNumber: r.rowNumber, row, problems };
  };

  return {
    ok: true,
    source: {
      kind,
      ...(raw.sheet !== undefined ? { sheet: raw.sheet } : {}),
      columns: output.map((c) => c.name),
      headerRow: header.rowNumber,
      notes,
      rows: new SourceRows(raw, [first, ...pending, ...puller.rest()], normaliseRow),
    },
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
