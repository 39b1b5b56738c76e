/**
 * JSON Lines: one JSON value per line. Chunk files, result parts and spill files use it.
 */
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';

/**
 * Reads a JSONL stream value by value (blank lines skipped). A line that is not valid JSON throws
 * an Error naming `source` and the line number.
 */
export async function* readJsonl<T>(input: Readable | AsyncIterable<Buffer | string>, source: string): AsyncGenerator<T> {
  const decoder = new StringDecoder('utf8');
  let pending = '';
  let line = 0;
  const parse = (text: string): T | undefined => parseLine<T>(text, source, ++line);
  for await (const chunk of input) {
    const text = pending + (typeof chunk === 'string' ? chunk : decoder.write(chunk as Buffer));
    let start = 0;
    let nl: number;
    while ((nl = text.indexOf('\n', start)) >= 0) {
      const value = parse(text.slice(start, nl));
      if (value !== undefined) yield value;
      start = nl + 1;
    }
    pending = text.slice(start);
  }
  pending += decoder.end();
  if (pending.length > 0) {
    const value = parse(pending);
    if (value !== undefined) yield value;
  }
}

/**
 * Reads a JSONL stream to its end, calling `each` with every value in order (blank lines
 * skipped); a line that is not valid JSON throws as in readJsonl. For a reader that keeps every
 * value anyway (a fan-out child's chunk and result parts): no promise per value, as iterating
 * readJsonl makes.
 */
export async function forEachJsonl<T>(
  input: Readable | AsyncIterable<Buffer | string>,
  source: string,
  each: (value: T) => void,
): Promise<void> {
  const decoder = new StringDecoder('utf8');
  let pending = '';
  let line = 0;
  for await (const chunk of input) {
    const text = pending + (typeof chunk === 'string' ? chunk : decoder.write(chunk as Buffer));
    let start = 0;
    let nl: number;
    while ((nl = text.indexOf('\n', start)) >= 0) {
      const value = parseLine<T>(text.slice(start, nl), source, ++line);
      if (value !== undefined) each(value);
      start = nl + 1;
    }
    pending = text.slice(start);
  }
  pending += decoder.end();
  if (pending.length > 0) {
    const value = parseLine<T>(pending, source, ++line);
    if (value !== undefined) each(value);
  }
}

/** One line's value (a CR before the newline dropped); undefined for a blank line. */
function parseLine<T>(text: string, source: string, line: number): T | undefined {
  const trimmed = text.endsWith('\r') ? text.slice(0, -1) : text;
  if (trimmed.trim() === '') return undefined;
  try {
    return JSON.parse(trimmed) as T;
  } catch (err) {
    const shown = trimmed.length > 80 ? `${trimmed.slice(0, 77)}...` : trimmed;
    throw new Error(`${source}, line ${line}: not valid JSON (${err instanceof Error ? err.message : String(err)}): ${shown}`);
  }
}

/** Serialises values as JSONL: one line each, every line ending in "\n". */
export function toJsonl(values: readonly unknown[]): Buffer {
  if (values.length === 0) return Buffer.alloc(0);
  let text = '';
  for (const v of values) text += `${JSON.stringify(v)}\n`;
  return Buffer.from(text, 'utf8');
}
