/**
 * Work items and chunk files: turns the reader's rows into work items (one row each, or every row
 * sharing a group key) numbered in input order, and writes them as JSONL chunk files of
 * `chunkSize` items, a few writes in flight at a time.
 *
 * Grouping cannot emit anything before the input ends (a trip's last row may be the file's last
 * row). Up to `memoryRowsLimit` rows are grouped in memory; past that every row is spilled to one
 * of 64 hash partitions on disk (by group key), each partition is grouped on its own (and split
 * again if it is still too large), and the partitions' items are merged back by the position of
 * their first row. The result is the same chunks, byte for byte, as grouping in memory, with
 * memory bounded by the largest partition instead of the whole file.
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../../runtime/errors';
import type { Cell, Row, WorkItem } from '../../runtime/model';
import { normaliseHeader } from '../../runtime/config/schema';
import { readJsonl, toJsonl } from './jsonl';
import { numberToText } from './normalise';
import type { SourceRow } from './reader';

export interface ChunkingOptions {
  /** Items per chunk (<= 10,000). */
  chunkSize: number;
  /** Most chunks allowed: 10,000 (the AWS Batch array limit). */
  maxChunks: number;
  /** Schema column name; rows with equal (trimmed) key form one item. */
  groupBy?: string;
  /** For spill files (the caller creates and removes it). */
  tmpDir: string;
  /** Grouped input: rows held in memory before spilling to hash partitions. @default 200_000 */
  memoryRowsLimit?: number;
  /** body = JSONL, one WorkItem per line. */
  writeChunk: (n: number, body: Buffer) => Promise<void>;
  /** Chunk writes in flight. @default 4 */
  writeConcurrency?: number;
}

export interface ChunkingResult {
  rows: number;
  items: number;
  chunks: number;
  /** Items with problems (`x`), which fan-out reports as failed without calling the task. */
  invalidItems: number;
}

const DEFAULT_MEMORY_ROWS_LIMIT = 200_000;
const PARTITIONS = 64;
/** Partitions still larger than the memory limit are split again, up to this depth. */
const MAX_SPLIT_DEPTH = 3;
const FLUSH_CHARS = 256 * 1024;

/** A group in the making: first-row position, key, rows, problems. */
interface Group {
  /** Position (0-based) of the group's first row in the input. */
  f: number;
  k: string;
  r: number[];
  d: Row[];
  x: string[];
}

/** Writes full chunks with at most `concurrency` writes in flight. */
class ChunkWriter {
  private items: WorkItem[] = [];
  private next = 0;
  private readonly inflight = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;
  itemCount = 0;
  invalid = 0;

  constructor(
    private readonly chunkSize: number,
    private readonly concurrency: number,
    private readonly write: (n: number, body: Buffer) => Promise<void>,
  ) {}

  /** Adds an item; returns a promise only when a chunk is full and must be handed to a writer. */
  add(item: WorkItem): Promise<void> | undefined {
    this.items.push(item);
    this.itemCount++;
    if (item.x && item.x.length > 0) this.invalid++;
    return this.items.length >= this.chunkSize ? this.flush() : undefined;
  }

  private async flush(): Promise<void> {
    this.check();
    while (this.inflight.size >= this.concurrency) {
      await Promise.race(this.inflight);
      this.check();
    }
    const n = this.next++;
    const body = toJsonl(this.items);
    this.items = [];
    const p: Promise<void> = Promise.resolve()
      .then(() => this.write(n, body))
      .then(
        () => {
          this.inflight.delete(p);
        },
        (error: unknown) => {
          this.failure ??= { error };
          this.inflight.delete(p);
        },
      );
    this.inflight.add(p);
  }

  private check(): void {
    if (this.failure) throw this.failure.error;
  }

  /** Writes the last partial chunk and waits for every write; returns the chunk count. */
  async finish(): Promise<number> {
    if (this.items.length > 0) await this.flush();
    await Promise.all(this.inflight);
    this.check();
    return this.next;
  }

  /** Waits for writes in flight (their errors ignored) before an error is thrown. */
  async abandon(): Promise<void> {
    await Promise.allSettled(this.inflight);
  }
}

function tooManyItems(items: string, opts: ChunkingOptions): InputError {
  const limit = opts.chunkSize * opts.maxChunks;
  return new InputError(
    `the input has ${items} work items, but at most ${limit.toLocaleString('en-US')} fit in ${opts.maxChunks.toLocaleString('en-US')} chunks of ${opts.chunkSize.toLocaleString('en-US')} (${opts.maxChunks.toLocaleString('en-US')} is the AWS Batch array limit). Raise the pipeline's chunkSize (up to 10,000 items per chunk) or split the file into smaller files.`,
  );
}

function keyText(value: Cell | undefined): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return numberToText(value);
  return String(value).trim();
}

const isInternalKey = (k: string) => k.charCodeAt(0) === 0;

function toItem(i: number, g: Group): WorkItem {
  const item: WorkItem = isInternalKey(g.k) ? { i, r: g.r, d: g.d } : { i, k: g.k, r: g.r, d: g.d };
  if (g.x.length > 0) item.x = g.x;
  return item;
}

/** A group as one spill line: `[f, k, r, d, x]`, rows as value arrays in column order (keys are not repeated). */
type SpillLine = [number, string, number[], (Cell[] | Row)[], string[]];

class SpillCodec {
  constructor(private readonly columns: string[]) {}

  encode(g: Group): string {
    const d: (Cell[] | Row)[] = new Array(g.d.length);
    for (let j = 0; j < g.d.length; j++) d[j] = this.pack(g.d[j]!);
    return JSON.stringify([g.f, g.k, g.r, d, g.x]);
  }

  decode(line: SpillLine): Group {
    const [f, k, r, packed, x] = line;
    const d: Row[] = new Array(packed.length);
    for (let j = 0; j < packed.length; j++) {
      const p = packed[j]!;
      d[j] = Array.isArray(p) ? this.unpack(p) : p;
    }
    return { f, k, r, d, x };
  }

  /** Values in column order, or the row itself when its keys are not the columns in order. */
  private pack(row: Row): Cell[] | Row {
    const values: Cell[] = [];
    let j = 0;
    for (const key in row) {
      if (key !== this.columns[j]) return row;
      values.push(row[key]!);
      j++;
    }
    return j === this.columns.length ? values : row;
  }

  private unpack(values: Cell[]): Row {
    const row: Row = {};
    for (let j = 0; j < this.columns.length; j++) row[this.columns[j]!] = values[j]!;
    return row;
  }
}

/** Forms work items from the rows and writes them as chunk files. */
export async function writeChunks(rows: AsyncIterable<SourceRow>, opts: ChunkingOptions): Promise<ChunkingResult> {
  if (!Number.isInteger(opts.chunkSize) || opts.chunkSize < 1)
    throw new RangeError(`chunkSize must be a positive whole number (got ${opts.chunkSize})`);
  if (!Number.isInteger(opts.maxChunks) || opts.maxChunks < 1)
    throw new RangeError(`maxChunks must be a positive whole number (got ${opts.maxChunks})`);
  const writer = new ChunkWriter(opts.chunkSize, Math.max(1, opts.writeConcurrency ?? 4), opts.writeChunk);
  try {
    const rowCount = opts.groupBy === undefined ? await oneRowPerItem(rows, writer, opts) : await grouped(rows, writer, opts, opts.groupBy);
    const chunks = await writer.finish();
    return { rows: rowCount, items: writer.itemCount, chunks, invalidItems: writer.invalid };
  } catch (err) {
    await writer.abandon();
    throw err;
  }
}

async function oneRowPerItem(rows: AsyncIterable<SourceRow>, writer: ChunkWriter, opts: ChunkingOptions): Promise<number> {
  const maxItems = opts.chunkSize * opts.maxChunks;
  let i = 0;
  for await (const src of rows) {
    if (i >= maxItems) throw tooManyItems(`more than ${maxItems.toLocaleString('en-US')}`, opts);
    const item: WorkItem = { i, r: [src.rowNumber], d: [src.row] };
    if (src.problems.length > 0) item.x = src.problems;
    const full = writer.add(item);
    if (full) await full;
    i++;
  }
  return i;
}

/** Spill partitions of one level: a file and a buffered writer per partition. */
class PartitionSet {
  readonly paths: string[] = [];
  readonly rows: number[] = [];
  private readonly handles: FileHandle[] = [];
  private readonly buffers: string[] = [];

  private constructor(
    private readonly seed: number,
    readonly count: number,
  ) {}

  static async create(dir: string, prefix: string, seed: number, count: number): Promise<PartitionSet> {
    const set = new PartitionSet(seed, count);
    for (let p = 0; p < count; p++) {
      const path = join(dir, `${prefix}-${p}.jsonl`);
      set.paths.push(path);
      set.handles.push(await open(path, 'w'));
      set.buffers.push('');
      set.rows.push(0);
    }
    return set;
  }

  /** Appends a spill line (`text`) for group key `key` holding `rows` rows. */
  add(key: string, rows: number, text: string): Promise<unknown> | undefined {
    const p = hashKey(key, this.seed) % this.count;
    this.rows[p]! += rows;
    const buffered = (this.buffers[p]! += `${text}\n`);
    if (buffered.length < FLUSH_CHARS) return undefined;
    this.buffers[p] = '';
    return this.handles[p]!.write(buffered);
  }

  async close(): Promise<void> {
    for (let p = 0; p < this.count; p++) {
      if (this.buffers[p]!.length > 0) await this.handles[p]!.write(this.buffers[p]!);
      this.buffers[p] = '';
      await this.handles[p]!.close();
    }
  }
}

/** FNV-1a over the key's UTF-16 code units, seeded per split level. */
function hashKey(key: string, seed: number): number {
  let h = (0x811c9dc5 ^ Math.imul(seed, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h >>> 0;
}

async function grouped(rows: AsyncIterable<SourceRow>, writer: ChunkWriter, opts: ChunkingOptions, groupBy: string): Promise<number> {
  const limit = Math.max(1, opts.memoryRowsLimit ?? DEFAULT_MEMORY_ROWS_LIMIT);
  const maxItems = opts.chunkSize * opts.maxChunks;
  const wanted = normaliseHeader(groupBy);
  let column: string | undefined;
  let groups = new Map<string, Group>();
  let held = 0;
  let seq = 0;
  let spill: PartitionSet | undefined;
  let spillDir: string | undefined;
  let codec: SpillCodec | undefined;

  try {
    for await (const src of rows) {
      if (column === undefined) {
        column = Object.keys(src.row).find((c) => normaliseHeader(c) === wanted);
        if (column === undefined) {
          throw new InputError(
            `the input has no column "${groupBy}" to group rows by (its columns are ${Object.keys(src.row)
              .map((c) => `"${c}"`)
              .join(', ')}). Add the column, or change the pipeline's input.groupBy.`,
            { row: src.rowNumber, column: groupBy },
          );
        }
      }
      const position = seq++;
      let key = keyText(src.row[column]);
      let problems = src.problems;
      if (key === '') {
        key = `\u0000${position}`;
        const prefix = `row ${src.rowNumber}, column "${column}": empty`;
        if (!problems.some((p) => p.startsWith(prefix))) {
          problems = [...problems, `row ${src.rowNumber}, column "${column}": empty, so the row cannot be grouped (it needs a ${column})`];
        }
      }
      if (spill) {
        const flushing = spill.add(key, 1, codec!.encode({ f: position, k: key, r: [src.rowNumber], d: [src.row], x: problems }));
        if (flushing) await flushing;
        continue;
      }
      const g = groups.get(key);
      if (g) {
        g.r.push(src.rowNumber);
        g.d.push(src.row);
        if (problems.length > 0) g.x.push(...problems);
      } else {
        groups.set(key, { f: position, k: key, r: [src.rowNumber], d: [src.row], x: problems.length > 0 ? [...problems] : [] });
        if (groups.size > maxItems) throw tooManyItems(`more than ${maxItems.toLocaleString('en-US')}`, opts);
      }
      if (++held > limit) {
        // Too many rows to hold: move everything to hash partitions on disk and go on from there.
        spillDir = join(opts.tmpDir, `group-spill-${process.pid}-${Date.now()}`);
        await mkdir(spillDir, { recursive: true });
        spill = await PartitionSet.create(spillDir, 'p0', 0, PARTITIONS);
        codec = new SpillCodec(Object.keys(src.row));
        for (const group of groups.values()) await spill.add(group.k, group.r.length, codec.encode(group));
        groups = new Map();
      }
    }

    if (!spill) {
      let i = 0;
      for (const g of groups.values()) {
        const full = writer.add(toItem(i++, g));
        if (full) await full;
      }
      return seq;
    }

    await spill.close();
    const sorted: { path: string; items: number }[] = [];
    for (let p = 0; p < spill.count; p++) {
      sorted.push(...(await groupPartition(spill.paths[p]!, spill.rows[p]!, 1, limit, spillDir!)));
    }
    const total = sorted.reduce((n, s) => n + s.items, 0);
    if (total > maxItems) throw tooManyItems(total.toLocaleString('en-US'), opts);
    await mergeSorted(
      sorted.map((s) => s.path).filter((_, j) => sorted[j]!.items > 0),
      writer,
      codec!,
    );
    return seq;
  } finally {
    if (spillDir) await rm(spillDir, { recursive: true, force: true });
  }
}

/**
 * Groups one partition file into a file of whole groups sorted by first-row position. A partition
 * still larger than the memory limit is split again by a differently seeded hash.
 */
async function groupPartition(
  path: string,
  rows: number,
  depth: number,
  limit: number,
  dir: string,
): Promise<{ path: string; items: number }[]> {
  if (rows === 0) {
    await rm(path, { force: true });
    return [];
  }
  if (rows > limit && depth <= MAX_SPLIT_DEPTH) {
    // Enough sub-partitions for each to fit with room to spare, no more (files are cheap, not free).
    const count = Math.min(PARTITIONS, Math.max(2, Math.ceil((rows / limit) * 2)));
    const sub = await PartitionSet.create(dir, `${path.slice(dir.length + 1, -'.jsonl'.length)}-${depth}`, depth, count);
    for await (const line of readJsonl<SpillLine>(createReadStream(path), path)) {
      const flushing = sub.add(line[1], line[2].length, JSON.stringify(line));
      if (flushing) await flushing;
    }
    await sub.close();
    await rm(path, { force: true });
    const out: { path: string; items: number }[] = [];
    for (let p = 0; p < sub.count; p++) {
      // All rows landed in one sub-partition: one key holds them, and splitting again cannot help.
      const next = sub.rows[p] === rows ? MAX_SPLIT_DEPTH + 1 : depth + 1;
      out.push(...(await groupPartition(sub.paths[p]!, sub.rows[p]!, next, limit, dir)));
    }
    return out;
  }
  // Fits (or is one huge group that no split can make smaller): group in memory, rows kept packed.
  const groups = new Map<string, SpillLine>();
  for await (const line of readJsonl<SpillLine>(createReadStream(path), path)) {
    const g = groups.get(line[1]);
    if (g) {
      for (const r of line[2]) g[2].push(r);
      for (const d of line[3]) g[3].push(d);
      for (const x of line[4]) g[4].push(x);
    } else groups.set(line[1], line);
  }
  await rm(path, { force: true });
  const list = [...groups.values()].sort((a, b) => a[0] - b[0]);
  const outPath = `${path.slice(0, -'.jsonl'.length)}.sorted.jsonl`;
  const handle = await open(outPath, 'w');
  try {
    let buffer = '';
    for (const g of list) {
      buffer += `${JSON.stringify(g)}\n`;
      if (buffer.length >= FLUSH_CHARS) {
        await handle.write(buffer);
        buffer = '';
      }
    }
    if (buffer.length > 0) await handle.write(buffer);
  } finally {
    await handle.close();
  }
  return [{ path: outPath, items: list.length }];
}

/** k-way merge of sorted group files by first-row position; items numbered as they come out. */
async function mergeSorted(paths: string[], writer: ChunkWriter, codec: SpillCodec): Promise<void> {
  interface Head {
    group: Group;
    source: AsyncIterator<Group>;
  }
  const heap: Head[] = [];
  const less = (a: Head, b: Head) => a.group.f < b.group.f;
  const push = (h: Head) => {
    heap.push(h);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  };
  const pop = (): Head => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && less(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && less(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    return top;
  };
  const sources: AsyncIterator<Group>[] = [];
  async function* decoded(path: string): AsyncGenerator<Group> {
    for await (const line of readJsonl<SpillLine>(createReadStream(path), path)) yield codec.decode(line);
  }
  try {
    for (const path of paths) {
      const source = decoded(path);
      sources.push(source);
      const first = await source.next();
      if (!first.done) push({ group: first.value, source });
    }
    let i = 0;
    while (heap.length > 0) {
      const head = pop();
      const full = writer.add(toItem(i++, head.group));
      if (full) await full;
      const next = await head.source.next();
      if (!next.done) push({ group: next.value, source: head.source });
    }
  } finally {
    for (const s of sources) await s.return?.();
  }
}
