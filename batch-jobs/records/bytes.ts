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

export type ContentKind = 'empty' | 'zip' | 'ole2' | 'pdf' | 'gzip' | 'html' | 'xml' | 'binary' | 'text';

export type TextEncoding = 'utf-8' | 'utf-16le' | 'utf-16be' | 'windows-1252';

export interface Sniffed {
  kind: ContentKind;
  /** For text: how to decode it. */
  encoding?: TextEncoding;
  /** For text: why a legacy encoding was assumed (said in the run's summary). */
  assumed?: string;
}

const startsWith = (buf: Buffer, bytes: number[]) => bytes.every((b, i) => buf[i] === b);

/** Length of the well-formed UTF-8 sequence at `i` (Unicode Table 3-7), 0 when there is none. */
function utf8SequenceAt(buf: Buffer, i: number): number {
  const b = buf[i]!;
  if (b < 0x80) return 1;
  let len: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (b >= 0xc2 && b <= 0xdf) len = 2;
  else if (b >= 0xe0 && b <= 0xef) {
    len = 3;
    if (b === 0xe0) lo = 0xa0;
    else if (b === 0xed) hi = 0x9f;
  } else if (b >= 0xf0 && b <= 0xf4) {
    len = 4;
    if (b === 0xf0) lo = 0x90;
    else if (b === 0xf4) hi = 0x8f;
  } else return 0;
  if (i + len > buf.length) return 0;
  const second = buf[i + 1]!;
  if (second < lo || second > hi) return 0;
  for (let k = 2; k < len; k++) {
    const c = buf[i + k]!;
    if (c < 0x80 || c > 0xbf) return 0;
  }
  return len;
}

/** Whether the bytes hold at least one well-formed multi-byte UTF-8 sequence (`Zoë`, `李`). */
function hasUtf8Sequence(buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i]! >= 0xc2 && utf8SequenceAt(buf, i) > 1) return true;
  return false;
}

/** First of the escape characters that stand for bytes that are not UTF-8: byte 0xB stands as U+DC00 + 0xB. */
export const ESCAPED_BYTE_BASE = 0xdc00;

/**
 * Decodes UTF-8, turning each byte that is not part of a well-formed sequence into the lone
 * surrogate U+DC00 + byte (Python's "surrogateescape"). Well-formed UTF-8 never decodes to a lone
 * surrogate, so the reader can tell exactly which values held such bytes, and which bytes.
 */
export function decodeUtf8Escaped(buf: Buffer): string {
  let out = '';
  let start = 0;
  for (let i = 0; i < buf.length; ) {
    if (buf[i]! < 0x80) {
      i++;
      continue;
    }
    const len = utf8SequenceAt(buf, i);
    if (len > 0) {
      i += len;
      continue;
    }
    out += buf.toString('utf8', start, i) + String.fromCharCode(ESCAPED_BYTE_BASE + buf[i]!);
    start = ++i;
  }
  return out + buf.toString('utf8', start, buf.length);
}

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
  else if (isValidUtf8Prefix(head) || hasUtf8Sequence(head)) encoding = 'utf-8';
  else encoding = 'windows-1252';
  const assumed =
    encoding === 'windows-1252'
      ? 'decoded as Windows-1252: the file is not UTF-8 (its first bytes hold no UTF-8 sequence, and other bytes)'
      : undefined;
  try {
    text = new TextDecoder(encoding).decode(head, { stream: true });
  } catch {
    return { kind: 'binary' };
  }
  if (text.replace(/\u0000/g, '').trim() === '') return text.includes('\u0000') ? { kind: 'binary' } : { kind: 'empty', encoding };
  // A few NULs or other control characters in text are reported on their rows; many mean binary data.
  let control = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 32 && c !== 9 && c !== 10 && c !== 13 && c !== 12) control++;
  }
  if (control > text.length / 20) return { kind: 'binary' };
  const start = text.trimStart().slice(0, 200).toLowerCase();
  if (start.startsWith('<!doctype html') || start.startsWith('<html') || start.startsWith('<table')) return { kind: 'html', encoding };
  if (start.startsWith('<?xml')) return { kind: 'xml', encoding };
  return { kind: 'text', encoding, ...(assumed ? { assumed } : {}) };
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

/** What the decoder saw, for the reader: set as soon as a chunk holds such characters. */
export interface TextFlags {
  /** Bytes that are not UTF-8 were decoded as escapes (see `decodeUtf8Escaped`). */
  invalidBytes: boolean;
  /** The text holds NUL characters. */
  nul: boolean;
}

/** Where the last whole UTF-8 sequence of `buf` ends: a sequence cut at the end waits for the next chunk. */
function wholeSequencesEnd(buf: Buffer): number {
  const n = buf.length;
  for (let i = n - 1; i >= Math.max(0, n - 3); i--) {
    const b = buf[i]!;
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return i + need > n ? i : n;
  }
  return n;
}

/**
 * Decodes a byte stream to text chunks (BOM dropped, multi-byte characters across chunks kept
 * whole). UTF-8 is never reinterpreted: a byte that is not UTF-8 becomes an escape character
 * (`decodeUtf8Escaped`) that the reader reports on its row and column, and the rows around it
 * stay exact. `flags` says whether any chunk held such bytes or NUL characters.
 */
export async function* decodeText(chunks: AsyncIterable<Buffer>, encoding: TextEncoding, flags?: TextFlags): AsyncGenerator<string> {
  const note = (text: string) => {
    if (flags && !flags.nul && text.includes('\u0000')) flags.nul = true;
    return text;
  };
  if (encoding !== 'utf-8') {
    const decoder = new TextDecoder(encoding);
    for await (const chunk of chunks) {
      const text = decoder.decode(chunk, { stream: true });
      if (text.length > 0) yield note(text);
    }
    const rest = decoder.decode();
    if (rest.length > 0) yield note(rest);
    return;
  }
  const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let carry: Buffer | undefined;
  let first = true;
  const decode = (buf: Buffer): string => {
    let text: string;
    try {
      text = strict.decode(buf);
    } catch {
      text = decodeUtf8Escaped(buf);
      if (flags) flags.invalidBytes = true;
    }
    if (first) {
      first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    return note(text);
  };
  for await (const chunk of chunks) {
    const buf = carry ? Buffer.concat([carry, chunk]) : chunk;
    const end = wholeSequencesEnd(buf);
    carry = end < buf.length ? Buffer.from(buf.subarray(end)) : undefined;
    if (end === 0) continue;
    const text = decode(buf.subarray(0, end));
    if (text.length > 0) yield text;
  }
  if (carry) yield decode(carry); // a sequence cut by the end of the file: its bytes are escapes
}
