/**
 * The first bytes of an input: read them without losing them (`peek`), and tell what the file
 * really is from them (`sniff`), whatever its name says.
 */
import type { Readable } from 'node:stream';

export interface Peeked {
  /** The first bytes (at least `size` unless the input is shorter). */
  head: Buffer;
  /** True when `head` is the whole input. */
  complete: boolean;
  /** Every byte of the input, `head` first; single pass. */
  chunks: AsyncIterable<Buffer>;
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError(`the input stream gave a ${typeof chunk}, not bytes`);
}

/** Reads at least `size` bytes (or all of a shorter input) and hands back a stream of all bytes. */
export async function peek(input: Readable | AsyncIterable<unknown>, size: number): Promise<Peeked> {
  const iterator = (input as AsyncIterable<unknown>)[Symbol.asyncIterator]();
  const parts: Buffer[] = [];
  let length = 0;
  let complete = false;
  try {
    while (length < size) {
      const next = await iterator.next();
      if (next.done) {
        complete = true;
        break;
      }
      const buf = toBuffer(next.value);
      parts.push(buf);
      length += buf.length;
    }
  } catch (err) {
    await iterator.return?.();
    throw err;
  }
  const head = Buffer.concat(parts, length);
  async function* all(): AsyncGenerator<Buffer> {
    try {
      if (head.length > 0) yield head;
      if (complete) return;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield toBuffer(next.value);
      }
    } finally {
      if (!complete) await iterator.return?.();
    }
  }
  return { head, complete, chunks: all() };
}

export type ContentKind =
  | 'empty'
  | 'zip'
  | 'ole2'
  | 'pdf'
  | 'gzip'
  | 'html'
  | 'xml'
  | 'binary'
  | 'text';

export type TextEncoding = 'utf-8' | 'utf-16le' | 'utf-16be' | 'windows-1252';

export interface Sniffed {
  kind: ContentKind;
  /** For text: how to decode it. */
  encoding?: TextEncoding;
}

const startsWith = (buf: Buffer, bytes: number[]) => bytes.every((b, i) => buf[i] === b);

function isValidUtf8Prefix(head: Buffer): boolean {
  try {
    // stream: true lets a multi-byte character cut at the end of the head pass.
    new TextDecoder('utf-8', { fatal: true }).decode(head, { stream: true });
    return true;
  } catch {
    return false;
  }
}

/** Tells what the bytes are: a zip (xlsx), an OLE2 compound file (legacy .xls), text, or something else. */
export function sniff(head: Buffer): Sniffed {
  if (startsWith(head, [0x50, 0x4b, 0x03, 0x04]) || startsWith(head, [0x50, 0x4b, 0x05, 0x06])) return { kind: 'zip' };
  if (startsWith(head, [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1])) return { kind: 'ole2' };
  if (startsWith(head, [0x25, 0x50, 0x44, 0x46])) return { kind: 'pdf' };
  if (startsWith(head, [0x1f, 0x8b])) return { kind: 'gzip' };

  let encoding: TextEncoding;
  let text: string;
  if (startsWith(head, [0xff, 0xfe])) encoding = 'utf-16le';
  else if (startsWith(head, [0xfe, 0xff])) encoding = 'utf-16be';
  else if (startsWith(head, [0xef, 0xbb, 0xbf])) encoding = 'utf-8';
  else if (looksLikeUtf16(head)) encoding = head[0] === 0 ? 'utf-16be' : 'utf-16le';
  else encoding = isValidUtf8Prefix(head) ? 'utf-8' : 'windows-1252';
  try {
    text = new TextDecoder(encoding).decode(head, { stream: true });
  } catch {
    return { kind: 'binary' };
  }
  if (text.trim() === '') return { kind: 'empty', encoding };
  let control = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0) return { kind: 'binary' };
    if (c < 32 && c !== 9 && c !== 10 && c !== 13 && c !== 12) control++;
  }
  if (control > text.length / 20) return { kind: 'binary' };
  const start = text.trimStart().slice(0, 200).toLowerCase();
  if (start.startsWith('<!doctype html') || start.startsWith('<html') || start.startsWith('<table')) return { kind: 'html', encoding };
  if (start.startsWith('<?xml')) return { kind: 'xml', encoding };
  return { kind: 'text', encoding };
}

/** UTF-16 without a byte order mark: every other byte is zero in Latin text. */
function looksLikeUtf16(head: Buffer): boolean {
  const n = Math.min(head.length, 512) & ~1;
  if (n < 8) return false;
  let evenZero = 0;
  let oddZero = 0;
  for (let i = 0; i < n; i += 2) {
    if (head[i] === 0) evenZero++;
    if (head[i + 1] === 0) oddZero++;
  }
  const pairs = n / 2;
  return (oddZero > pairs * 0.8 && evenZero < pairs * 0.1) || (evenZero > pairs * 0.8 && oddZero < pairs * 0.1);
}

/** Thrown by `decodeText` when UTF-8 text holds bytes that are not UTF-8. */
export class TextEncodingError extends Error {
  override readonly name = 'TextEncodingError';
}

/**
 * Decodes a byte stream to text chunks (BOM dropped, multi-byte characters across chunks kept
 * whole). UTF-8 is decoded strictly: a byte that is not UTF-8 throws TextEncodingError rather
 * than turning silently into U+FFFD.
 */
export async function* decodeText(chunks: AsyncIterable<Buffer>, encoding: TextEncoding): AsyncGenerator<string> {
  const decoder = new TextDecoder(encoding, { fatal: encoding === 'utf-8' });
  const invalid = () => new TextEncodingError(`the text is not valid ${encoding}: it holds bytes of another encoding`);
  for await (const chunk of chunks) {
    let text: string;
    try {
      text = decoder.decode(chunk, { stream: true });
    } catch {
      // Hand out the text before the bad byte first, so the reader can say which row holds it.
      const loose = new TextDecoder(encoding).decode(chunk);
      const bad = loose.indexOf('\uFFFD');
      if (bad > 0) yield loose.slice(0, bad);
      throw invalid();
    }
    if (text.length > 0) yield text;
  }
  let rest: string;
  try {
    rest = decoder.decode();
  } catch {
    throw invalid();
  }
  if (rest.length > 0) yield rest;
}
