/**
 * Reads what a merge needs to know of an input file before any engine sees it: that it is text
 * (not empty, no NUL bytes, UTF-8), and its column names (the header row, or column1... for a
 * headerless file, counted on its first line). Reads at most the first 1 MiB.
 */
import { open } from 'node:fs/promises';
import type { MergeRole } from '../../runtime/config/merge-schema';
import { InputError } from '../../runtime/errors';
import { positionalNames, type InputLayout } from './merge-plan';

const PROBE_BYTES = 1024 * 1024;

export interface HeaderOptions {
  header: boolean;
  delimiter: string;
  quote: string;
}

/** Splits one line into fields (RFC 4180 quoting with `quote`, doubled quotes inside). */
export function splitLine(line: string, delimiter: string, quote: string): string[] {
  const out: string[] = [];
  let field = '';
  let i = 0;
  let quoted = false;
  while (i <= line.length) {
    const ch = line[i];
    if (quoted) {
      if (ch === quote && line[i + 1] === quote) {
        field += quote;
        i += 2;
        continue;
      }
      if (ch === quote) {
        quoted = false;
        i++;
        continue;
      }
      if (ch === undefined) break;
      field += ch;
      i++;
      continue;
    }
    if (ch === undefined || ch === delimiter) {
      out.push(field);
      field = '';
      i++;
      continue;
    }
    if (ch === quote && quote !== '' && field === '') {
      quoted = true;
      i++;
      continue;
    }
    field += ch;
    i++;
  }
  return out;
}

/** Checks the first bytes of a file (given as bytes) and returns its layout. */
export function layoutFromBytes(bytes: Buffer, total: number, file: string, role: MergeRole, o: HeaderOptions): InputLayout {
  if (total === 0) {
    throw new InputError(
      `${file} (${role} input) is empty (0 bytes). Upload the file again with its rows${o.header ? ' and its header row' : ''}.`,
      {
        file,
      },
    );
  }
  const nul = bytes.indexOf(0);
  if (nul >= 0) {
    const row = countLines(bytes.subarray(0, nul)) + 1;
    throw new InputError(
      `${file} (${role} input) is not delimited text: row ${row} holds a NUL byte (byte ${nul + 1}), as a binary file, a zip or an .xlsx workbook would. Export the data as tab- or comma-separated text (UTF-8).`,
      { file, row },
    );
  }
  let text: string;
  // Decode up to the last complete line, so a multi-byte character cut by the probe is not an error.
  const end = total > bytes.length ? bytes.lastIndexOf(10) + 1 || bytes.length : bytes.length;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, end));
  } catch {
    throw new InputError(
      `${file} (${role} input) is not UTF-8 text near its start (a workbook, a binary file, or text in another encoding such as Latin-1 or UTF-16). Save it as UTF-8 delimited text.`,
      { file },
    );
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const newline = text.indexOf('\n');
  const first = (newline < 0 ? text : text.slice(0, newline)).replace(/\r$/, '');
  const fields = splitLine(first, o.delimiter, o.quote);
  const columns = o.header ? fields : positionalNames(fields.length);
  return { role, file, columns };
}

function countLines(bytes: Buffer): number {
  let n = 0;
  for (let i = bytes.indexOf(10); i >= 0; i = bytes.indexOf(10, i + 1)) n++;
  return n;
}

/** The layout of a local file. */
export async function readLayout(path: string, file: string, role: MergeRole, o: HeaderOptions): Promise<InputLayout> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const buf = Buffer.alloc(Math.min(size, PROBE_BYTES));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return layoutFromBytes(buf.subarray(0, bytesRead), size, file, role, o);
  } finally {
    await fh.close();
  }
}
