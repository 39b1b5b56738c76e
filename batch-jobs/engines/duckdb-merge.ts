/**
 * The DuckDB engine of a merge: embedded `@duckdb/node-api` over two local files. It runs with a
 * memory limit (from the container's memory) and a temporary directory on local disk, so a join
 * larger than memory spills instead of failing; extensions are never installed or auto-loaded
 * (the job has no internet; csv is built in). DuckDB's CSV errors become InputErrors that name the
 * file, the row and the column.
 */
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { InputError } from '../../runtime/errors';
import { copyJoinedSql, copySql, joinedStatsSql, joinedTableSql, loadSql, statsSql, type MergeSources } from './duckdb-sql';
import { expectedOutputRows, type MergeCounts, type MergePlan, type PlanInput } from './merge-plan';

export interface DuckdbMergeOptions {
  plan: MergePlan;
  leftPath: string;
  rightPath: string;
  /** Where the merged CSV/TSV is written. */
  outPath: string;
  /** DuckDB's memory limit, bytes. */
  memoryLimitBytes: number;
  /** Spill directory on local disk. */
  tempDir: string;
  /** Worker threads. @default - DuckDB's choice (the CPU count) */
  threads?: number;
  /**
   * An ordered merge joins once into a table, reads the statistics from it and sorts it into the
   * file (no query holds two blocking operators). `false`: the statistics from their own join of
   * the keys, then one query joins and sorts (kept for tests: both give the same rows and counts).
   * @default true
   */
  splitJoinAndSort?: boolean;
  /** Told when each step starts: `load`, `stats`, `join` (logs, benchmarks). @default - nothing */
  onStep?: (step: 'load' | 'stats' | 'join') => void;
}

export interface DuckdbMergeResult {
  counts: MergeCounts;
  /** Seconds per step: load (both files into tables, only when one query joins and sorts), stats, join (the join and the COPY). */
  timings: { loadS: number; statsS: number; joinS: number };
}

/**
 * The container's memory: the cgroup limit (v2, then v1) when there is one, else the machine's.
 * Batch sets the cgroup limit to the job definition's memory.
 */
export function containerMemoryBytes(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): number {
  for (const path of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const text = read(path).trim();
      const n = Number(text);
      // "max" (v2) or a huge number (v1) mean no limit.
      if (Number.isFinite(n) && n > 0 && n < totalmem()) return n;
    } catch {
      // no such cgroup file here
    }
  }
  return totalmem();
}

/**
 * DuckDB's share of the container: 85% of what is left after Node.js (its heap is capped at 2 GiB
 * in the merge job, lib/merge-jobs.ts; a quarter of a small container), at least 256 MiB.
 */
export function duckdbMemoryLimit(containerBytes: number): number {
  const reserve = Math.min(2.5 * 1024 ** 3, containerBytes / 4);
  return Math.max(256 * 1024 * 1024, Math.floor((containerBytes - reserve) * 0.85));
}

const ordinal = (n: number) =>
  `${n}${n % 10 === 1 && n % 100 !== 11 ? 'st' : n % 10 === 2 && n % 100 !== 12 ? 'nd' : n % 10 === 3 && n % 100 !== 13 ? 'rd' : 'th'}`;

/** Turns a DuckDB CSV error into an InputError naming file, row and column, or returns undefined. */
export function describeCsvError(message: string, input: PlanInput, plan: MergePlan): InputError | undefined {
  const line = /CSV Error on Line: (\d+)/.exec(message)?.[1];
  if (line === undefined && !/Invalid unicode|not utf-8/i.test(message)) return undefined;
  const row = line === undefined ? undefined : Number(line);
  const where = `${input.file} (${input.role} input)${row === undefined ? '' : `, row ${row}`}`;
  const delim = plan.delimiter === '\t' ? 'tab' : JSON.stringify(plan.delimiter);
  const counts = /Expected Number of Columns: (\d+) Found: (\d+)/.exec(message);
  if (counts) {
    const expected = Number(counts[1]);
    const found = Number(counts[2]);
    const header = plan.header ? `the header row has ${expected} columns` : `the first row has ${expected} values`;
    if (found > expected) {
      return new InputError(
        `${where}: ${found} values, but ${header}; the ${ordinal(expected + 1)} value is extra. Every row needs exactly ${expected} ${delim}-separated values: remove the extra ${delim}, or quote a value that holds one.`,
        { file: input.file, row, column: `#${expected + 1}` },
      );
    }
    const missing = input.columns[found] ?? `#${found + 1}`;
    return new InputError(
      `${where}: ${found} value${found === 1 ? '' : 's'}, but ${header}; column "${missing}" and after are missing. Every row needs exactly ${expected} ${delim}-separated values (an empty value still needs its ${delim}).`,
      { file: input.file, row, column: missing },
    );
  }
  if (/unterminated quote/i.test(message)) {
    return new InputError(
      `${where}: a value opens a quote (${plan.quote}) that never closes. Close the quote, double a quote inside a quoted value (""), or set the pipeline's "quote" to "" if quotes in this file are plain text.`,
      { file: input.file, row },
    );
  }
  if (/Invalid unicode|not utf-8/i.test(message)) {
    return new InputError(
      `${where}: not UTF-8 text (a binary file, or text in another encoding such as Latin-1). Save the file as UTF-8 delimited text.`,
      {
        file: input.file,
        row,
      },
    );
  }
  const first = message.split('\n').find((l) => l.trim() !== '' && !l.startsWith('CSV Error')) ?? message;
  return new InputError(`${where}: cannot be read as ${delim}-separated text: ${first.trim()}`, { file: input.file, row });
}

/** Runs one statement that reads the inputs; a CSV error becomes an InputError naming the file it came from. */
async function reading(conn: DuckDBConnection, plan: MergePlan, paths: { left: string; right: string }, sql: string) {
  try {
    return await conn.runAndReadAll(sql);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    // DuckDB's CSV errors end with the reader's options, among them `file = <path>`.
    const role = message.includes(`file = ${paths.right}`) && !message.includes(`file = ${paths.left}`) ? 'right' : 'left';
    throw describeCsvError(message, plan[role], plan) ?? err;
  }
}

const num = (v: unknown) => Number(v ?? 0);

const inputBytes = async (paths: { left: string; right: string }) => (await stat(paths.left)).size + (await stat(paths.right)).size;

/**
 * Opens DuckDB with the limits of a merge: memory, spill directory, no extension downloads.
 * `database` is a file on local disk (loaded tables are then paged to disk by DuckDB's buffer
 * manager instead of held in memory: an in-memory database ran out of memory at a 1 GB limit on
 * 3.5 GB of input), or `:memory:`.
 */
export async function openDuckdb(o: {
  memoryLimitBytes: number;
  tempDir: string;
  threads?: number;
  database?: string;
}): Promise<DuckDBInstance> {
  return DuckDBInstance.create(o.database ?? ':memory:', {
    memory_limit: `${Math.floor(o.memoryLimitBytes / (1024 * 1024))}MiB`,
    temp_directory: o.tempDir,
    preserve_insertion_order: 'true',
    autoinstall_known_extensions: 'false',
    autoload_known_extensions: 'false',
    ...(o.threads ? { threads: String(o.threads) } : {}),
  });
}

/**
 * Runs the merge. Input order: load both files into tables (file order in their rowids), join
 * them once into a table (with the rowids), read the key statistics from it, then sort it into
 * the file: each query holds one blocking operator, so each spills to the temporary directory. No
 * order: the statistics and the COPY read the files directly (no tables). When the inputs are
 * larger than the memory limit, the tables live in a database file on local disk.
 */
export async function runDuckdbMerge(o: DuckdbMergeOptions): Promise<DuckdbMergeResult> {
  await mkdir(o.tempDir, { recursive: true });
  const work = await mkdtemp(join(o.tempDir, 'duckdb-'));
  const paths = { left: o.leftPath, right: o.rightPath };
  // Inputs larger than the memory limit: tables in a database file on local disk. Otherwise in memory (loading into a database file costs several times the CPU).
  const tight = (await inputBytes(paths)) > o.memoryLimitBytes;
  const instance = await openDuckdb({ ...o, tempDir: work, database: tight ? join(work, 'merge.duckdb') : ':memory:' });
  const conn = await instance.connect();
  try {
    const t0 = performance.now();
    let stats: Record<string, unknown>;
    let written: unknown;
    let statsS: number;
    let loadS = 0;
    const files: MergeSources = { kind: 'files', ...paths };
    /** Loads both files into tables (their rowids keep input order); the queries then read those. */
    const loadTables = async (): Promise<MergeSources> => {
      o.onStep?.('load');
      for (const role of ['left', 'right'] as const) await reading(conn, o.plan, paths, loadSql(o.plan, role, paths[role]));
      loadS = (performance.now() - t0) / 1000;
      return { kind: 'tables' };
    };
    if (o.splitJoinAndSort ?? true) {
      // Join the files once into a table, each row with its rows' numbers in the files (counted in
      // file order while insertion order is preserved). The statistics read that table (and count
      // each file's rows); then it is written, sorted when the plan keeps input order.
      // Inputs larger than memory: load them into tables first (in the database file on disk), as
      // the numbered single-threaded reads joined straight from the files were slower there
      // (1 GB limit, 3.5 GB of input: 93 s wall against 66 s).
      const from = tight ? await loadTables() : files;
      o.onStep?.('join');
      await conn.run(`SET preserve_insertion_order = ${o.plan.order === 'input' && !tight}`);
      await reading(conn, o.plan, paths, joinedTableSql(o.plan, from));
      await conn.run('SET preserve_insertion_order = false');
      const s0 = performance.now();
      o.onStep?.('stats');
      stats = (await reading(conn, o.plan, paths, joinedStatsSql(o.plan, from))).getRowObjects()[0] ?? {};
      statsS = (performance.now() - s0) / 1000;
      o.onStep?.('join');
      written = (await conn.runAndReadAll(copyJoinedSql(o.plan, o.outPath))).getRows()[0]?.[0];
    } else {
      // One query joins and writes: input order needs the files loaded into tables (their rowids).
      const from = o.plan.order === 'input' ? await loadTables() : files;
      await conn.run('SET preserve_insertion_order = false');
      const s0 = performance.now();
      o.onStep?.('stats');
      stats = (await reading(conn, o.plan, paths, statsSql(o.plan, from))).getRowObjects()[0] ?? {};
      statsS = (performance.now() - s0) / 1000;
      o.onStep?.('join');
      written = (await reading(conn, o.plan, paths, copySql(o.plan, o.outPath, from))).getRows()[0]?.[0];
    }
    const t3 = performance.now();
    const counts: MergeCounts = {
      leftRows: num(stats.left_rows),
      rightRows: num(stats.right_rows),
      outputRows: num(written),
      leftUnmatched: num(stats.left_unmatched),
      rightUnmatched: num(stats.right_unmatched),
      keysDuplicatedBothSides: num(stats.keys_duplicated_both_sides),
      leftEmptyKeys: num(stats.left_empty_keys),
      rightEmptyKeys: num(stats.right_empty_keys),
    };
    const expected = expectedOutputRows(o.plan.how, num(stats.matched_pairs), counts.leftUnmatched, counts.rightUnmatched);
    if (expected !== counts.outputRows) {
      throw new Error(`the merge wrote ${counts.outputRows} rows, but its key statistics give ${expected}: a bug, not bad input`);
    }
    return { counts, timings: { loadS, statsS, joinS: (t3 - t0) / 1000 - statsS - loadS } };
  } finally {
    conn.closeSync();
    instance.closeSync();
    await rm(work, { recursive: true, force: true });
  }
}
