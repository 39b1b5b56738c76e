/**
 * CSV/TSV reader: papaparse's public streaming API (`Papa.parse` on a Node stream with a `chunk`
 * callback), with the delimiter and line ending detected from the header line. The text stream is
 * paused while parsed rows wait to be taken, so memory holds a few chunks of rows and the last
 * partial record whatever the file's size.
 */
import { Readable } from 'node:stream';
import Papa from 'papaparse';
import { InputError } from '../../runtime/errors';
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

/** Batches of parsed rows held before the text stream is paused. */
const MAX_QUEUED_BATCHES = 4;

/** Reads decoded text chunks as rows of raw (string) cells. */
export async function openCsv(texts: AsyncIterable<string>, opts: CsvOptions): Promise<RawSource> {
  const iterator = texts[Symbol.asyncIterator]();
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

  async function* textChunks(): AsyncGenerator<string> {
    if (first.length > 0) yield first;
    if (ended) return;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  }
  const text = Readable.from(textChunks(), { objectMode: true, highWaterMark: 1 });

  let rowNumber = 0;
  /** Characters handed to the parser (counted before papaparse's own 'data' listener sees them). */
  let fed = 0;
  text.on('data', (chunk: string) => {
    fed += chunk.length;
  });
  const queue: RawRow[][] = [];
  let done = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const signal = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const fail = (err: unknown) => {
    failure ??= err;
    text.destroy();
    signal();
  };

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

  Papa.parse<string[]>(text, {
    delimiter,
    newline,
    quoteChar: '"',
    chunk: (results) => {
      if (failure !== undefined) return;
      try {
        // What papaparse holds back as the start of a record still to be completed.
        const partial = fed - results.meta.cursor;
        if (partial > MAX_RECORD_CHARS) {
          throw new InputError(
            `${opts.fileName}, row ${rowNumber + 1}: a record runs on for more than ${MAX_RECORD_CHARS / 1024 / 1024} MB, most likely because a quoted value is never closed. Check the quotes of that row and upload the file again.`,
            { file: opts.fileName, row: rowNumber + 1 },
          );
        }
        if (results.data.length > 0) queue.push(toRows(results.data, results.errors as PapaError[]));
        if (queue.length >= MAX_QUEUED_BATCHES) text.pause();
        signal();
      } catch (err) {
        fail(err);
      }
    },
    complete: () => {
      done = true;
      signal();
    },
    error: (err: Error) => fail(err),
  });

  async function* batches(): AsyncGenerator<RawRow[]> {
    try {
      for (;;) {
        const batch = queue.shift();
        if (batch) {
          if (queue.length < MAX_QUEUED_BATCHES && text.isPaused() && failure === undefined) text.resume();
          yield batch;
          continue;
        }
        if (failure !== undefined) throw failure;
        if (done) return;
        if (text.isPaused()) text.resume();
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    } finally {
      if (!done) text.destroy();
      await iterator.return?.();
    }
  }

  return {
    batches: batches(),
    strictWidth: true,
    close: async () => {
      if (!done) text.destroy();
      await iterator.return?.();
    },
  };
}

function delimiterName(d: string): string {
  return d === '\t' ? 'tab' : `"${d}"`;
}
