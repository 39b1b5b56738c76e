/**
 * CSV/TSV reader: papaparse's parser fed chunk by chunk (pull-based, so memory holds one chunk
 * and the last partial record), with the delimiter and line ending detected from the header line.
 */
import Papa from 'papaparse';
import { InputError } from '../../runtime/errors';
import { TextEncodingError } from './bytes';
import type { RawRow, RawSource } from './raw';

/** Delimiters a .csv may use, detected from the header line. */
const CSV_DELIMITERS = [',', ';', '|', '\t'] as const;

/** A record that grows past this without its closing quote is an error, not a reason to run out of memory. */
const MAX_RECORD_CHARS = 16 * 1024 * 1024;

/** Counts each candidate delimiter outside quotes in the first line; the most frequent wins (comma on a tie or none). */
function detectDelimiter(text: string): string {
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
function detectNewline(text: string): '\r\n' | '\n' | '\r' {
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
  const source = texts[Symbol.asyncIterator]();
  let rowNumber = 0;
  const iterator: AsyncIterator<string> = {
    next: async () => {
      try {
        return await source.next();
      } catch (err) {
        if (!(err instanceof TextEncodingError)) throw err;
        const at = rowNumber + 1;
        throw new InputError(
          `${opts.fileName}, row ${at}: ${err.message}. Save the file as "CSV UTF-8" (or UTF-16 "Unicode text") and upload it again.`,
          { file: opts.fileName, row: at },
        );
      }
    },
    return: async () => (await source.return?.()) ?? { done: true, value: undefined },
  };
  // The first chunk decides delimiter and line ending; read until it holds a whole line (and a second one,
  // for Excel's "sep=;" line).
  let first = '';
  let ended = false;
  const lines = () => first.split(/\r\n|\r|\n/).length - 1;
  while ((lines() < 1 || (/^sep=/i.test(first) && lines() < 2)) && first.length < 1024 * 1024) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    first += next.value;
  }
  // Excel writes and honours a first line "sep=;" naming the delimiter; it does not show it as a row.
  let delimiter = opts.delimiter;
  const sep = /^sep=(.)(\r\n|\r|\n|$)/i.exec(first);
  if (sep) {
    delimiter ??= sep[1];
    first = first.slice(sep[0].length);
  }
  delimiter ??= detectDelimiter(first);
  const newline = detectNewline(first);
  const parser = new Papa.Parser({ delimiter, newline, quoteChar: '"' });

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
