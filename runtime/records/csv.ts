/**
 * CSV/TSV reader: papaparse's parser fed chunk by chunk (pull-based, so memory holds one chunk
 * and the last partial record), with the delimiter and line ending detected from the header line.
 */
import Papa from 'papaparse';
import { InputError } from '../errors';
import type { RawRow, RawSource } from './raw';

/** Delimiters a .csv may use, detected from the header line. */
export const CSV_DELIMITERS = [',', ';', '|', '\t'] as const;

/** A record that grows past this without its closing quote is an error, not a reason to run out of memory. */
const MAX_RECORD_CHARS = 16 * 1024 * 1024;

/** Counts each candidate delimiter outside quotes in the first line; the most frequent wins (comma on a tie or none). */
export function detectDelimiter(text: string): string {
  const counts = new Map<string, number>(CSV_DELIMITERS.map((d) => [d, 0]));
  let inQuotes = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') inQuotes = !inQuotes;
    else if (!inQuotes && (c === '\n' || c === '\r')) break;
    else if (!inQuotes && counts.has(c)) counts.set(c, counts.get(c)! + 1);
  }
  let best = ',';
  let bestCount = 0;
  for (const d of CSV_DELIMITERS) {
    const n = counts.get(d)!;
    if (n > bestCount) {
      best = d;
      bestCount = n;
    }
  }
  return best;
}

/** The line ending of the first record: \r\n, \n or \r. */
export function detectNewline(text: string): '\r\n' | '\n' | '\r' {
  let inQuotes = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') inQuotes = !inQuotes;
    else if (!inQuotes && c === '\n') return '\n';
    else if (!inQuotes && c === '\r') return text[i + 1] === '\n' || i + 1 === text.length ? '\r\n' : '\r';
  }
  return '\n';
}

export interface CsvOptions {
  fileName: string;
  /** Tab for .tsv; detected from the header line when not given. */
  delimiter?: string;
}

interface PapaError {
  code: string;
  row?: number;
}

/** Reads decoded text chunks as rows of raw (string) cells. */
export async function openCsv(texts: AsyncIterable<string>, opts: CsvOptions): Promise<RawSource> {
  const iterator = texts[Symbol.asyncIterator]();
  // The first chunk decides delimiter and line ending; read until it holds a whole line.
  let first = '';
  let ended = false;
  while (!/[\r\n]/.test(first) && first.length < 1024 * 1024) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    first += next.value;
  }
  const delimiter = opts.delimiter ?? detectDelimiter(first);
  const newline = detectNewline(first);
  const parser = new Papa.Parser({ delimiter, newline, quoteChar: '"' });
  let rowNumber = 0;

  const toRows = (data: string[][], errors: PapaError[]): RawRow[] => {
    const rows: RawRow[] = new Array(data.length);
    for (let j = 0; j < data.length; j++) rows[j] = { rowNumber: ++rowNumber, cells: data[j]! };
    for (const e of errors) {
      const row = rows[e.row ?? -1];
      if (row && e.code === 'InvalidQuotes') {
        (row.problems ??= []).push(
          `row ${row.rowNumber}: a quoted value is followed by other characters before the next ${delimiterName(delimiter)}; check its quotes (a quote inside a quoted value is written "")`,
        );
      } else if (e.code === 'MissingQuotes') {
        const at = row?.rowNumber ?? rowNumber;
        throw new InputError(
          `${opts.fileName}, row ${at}: a quoted value is never closed, so the rest of the file would be read as one cell. Add the missing closing quote (") and upload the file again.`,
          { file: opts.fileName, row: at },
        );
      }
    }
    return rows;
  };

  async function* batches(): AsyncGenerator<RawRow[]> {
    try {
      let partial = '';
      let chunk: string | undefined = first;
      while (chunk !== undefined) {
        const aggregate: string = partial + chunk;
        const result = parser.parse(aggregate, 0, true) as Papa.ParseResult<string[]>;
        partial = aggregate.substring(result.meta.cursor);
        if (partial.length > MAX_RECORD_CHARS) {
          throw new InputError(
            `${opts.fileName}, row ${rowNumber + 1}: a record runs on for more than ${MAX_RECORD_CHARS / 1024 / 1024} MB, most likely because a quoted value is never closed. Check the quotes of that row and upload the file again.`,
            { file: opts.fileName, row: rowNumber + 1 },
          );
        }
        if (result.data.length > 0) yield toRows(result.data, result.errors as PapaError[]);
        if (ended) break;
        const next = await iterator.next();
        if (next.done) break;
        chunk = next.value;
      }
      if (partial.length > 0) {
        const result = parser.parse(partial, 0, false) as Papa.ParseResult<string[]>;
        if (result.data.length > 0) yield toRows(result.data, result.errors as PapaError[]);
      }
    } finally {
      await iterator.return?.();
    }
  }

  return {
    batches: batches(),
    strictWidth: true,
    close: async () => {
      await iterator.return?.();
    },
  };
}

function delimiterName(d: string): string {
  return d === '\t' ? 'tab' : `"${d}"`;
}
