/**
 * Benchmark of the consolidate stage's hot spot: writing the result workbook.
 *
 *   npx tsx bench/consolidate-workbook.ts [--rows 1000000] [--candidate NAME] [--dir DIR] [--level N]
 *
 * Writes N result rows x 10 columns (text, numbers, an integer, a date, a date-time; some
 * formula-looking text) plus an Errors sheet of 2% of the rows, with each candidate in its own
 * process (so peak RSS is its own), and prints rows/s, output size and peak RSS (VmHWM).
 *
 * Candidates:
 *   exceljs          exceljs WorkbookWriter (useSharedStrings false, row.commit()).
 *   stream           batch-jobs/workbook/result-workbook.ts with row hints (no CSV), its default
 *                    deflate level (or --level N).
 *   stream-level1    the same at deflate level 1 (fastest).
 *   stream-level6    the same at deflate level 6 (zlib's default).
 *   stream-nohint    the same without row hints: it also writes a precautionary CSV copy of each
 *                    sheet (deleted at the end), the cost of not passing expectedRows.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ExcelJS from 'exceljs';
import type { Cell } from '../runtime/model';
import { createResultWorkbook, type WorkbookColumn } from '../batch-jobs/workbook/result-workbook';

const CANDIDATES = ['exceljs', 'stream', 'stream-level1', 'stream-level6', 'stream-nohint'] as const;
type Candidate = (typeof CANDIDATES)[number];

const RESULT_COLUMNS: WorkbookColumn[] = [
  { name: 'customer_id', type: 'text' },
  { name: 'name', type: 'text' },
  { name: 'email', type: 'text' },
  { name: 'postcode', type: 'text' },
  { name: 'amount', type: 'number' },
  { name: 'tax_due', type: 'number' },
  { name: 'attempts', type: 'integer' },
  { name: 'due_date', type: 'date' },
  { name: 'checked_at', type: 'date' },
  { name: 'status', type: 'text' },
];
const ERROR_COLUMNS: WorkbookColumn[] = [
  { name: 'customer_id', type: 'text' },
  { name: 'row', type: 'integer' },
  { name: 'error', type: 'text' },
  { name: 'attempts', type: 'integer' },
];

const DAY_MS = 86_400_000;
const BASE_MS = Date.UTC(2024, 0, 1);

function resultRow(i: number): Cell[] {
  const failed = i % 50 === 7;
  return [
    String(i).padStart(8, '0'),
    `Customer ${i} ${i % 3 === 0 ? 'Ltd' : 'GmbH'}`,
    `customer${i}@example.com`,
    String(10_000 + (i % 90_000)),
    ((i * 37) % 100_000) / 100,
    failed ? null : ((i % 7 === 0 ? -1 : 1) * ((i * 13) % 50_000)) / 100,
    1 + (i % 3),
    new Date(BASE_MS + (i % 1000) * DAY_MS).toISOString().slice(0, 10),
    `${new Date(BASE_MS + i * 997).toISOString().slice(0, 19)}Z`,
    i % 997 === 0 ? '=HYPERLINK("x")' : failed ? 'failed' : 'done',
  ];
}

function errorRow(i: number): Cell[] {
  return [String(i).padStart(8, '0'), i + 2, `HTTP 404 from data source for customer ${i}`, 1];
}

function peakRssMb(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.memoryUsage().rss / 1024 / 1024;
}

function dirSizeMb(dir: string): { total: number; files: string[] } {
  let total = 0;
  const files: string[] = [];
  for (const f of readdirSync(dir)) {
    const size = statSync(join(dir, f)).size;
    total += size;
    files.push(`${f} ${(size / 1024 / 1024).toFixed(1)} MB`);
  }
  return { total: total / 1024 / 1024, files };
}

async function runExceljs(dir: string, rows: number): Promise<void> {
  const wb = new ExcelJS.stream.xlsx.WorkbookWriter({
    filename: join(dir, 'bench.xlsx'),
    useSharedStrings: false,
    useStyles: true,
  });
  const results = wb.addWorksheet('Results', { views: [{ state: 'frozen', ySplit: 1 }] });
  results.columns = RESULT_COLUMNS.map((c) => ({
    header: c.name,
    key: c.name,
    width: 14,
    style: c.type === 'date' ? { numFmt: c.name === 'checked_at' ? 'yyyy-mm-dd hh:mm:ss' : 'yyyy-mm-dd' } : {},
  }));
  results.autoFilter = { from: 'A1', to: { row: rows + 1, column: RESULT_COLUMNS.length } };
  results.getRow(1).font = { bold: true };
  const errors = wb.addWorksheet('Errors', { views: [{ state: 'frozen', ySplit: 1 }] });
  errors.columns = ERROR_COLUMNS.map((c) => ({ header: c.name, key: c.name, width: 14 }));
  for (let i = 0; i < rows; i++) {
    const v: unknown[] = resultRow(i);
    v[7] = new Date(`${v[7] as string}T00:00:00Z`);
    v[8] = new Date(v[8] as string);
    results.addRow(v).commit();
    if (i % 50 === 7) errors.addRow(errorRow(i)).commit();
  }
  results.commit();
  errors.commit();
  const summary = wb.addWorksheet('Summary');
  summary.addRow(['Rows', rows]).commit();
  summary.commit();
  await wb.commit();
}

async function runStream(dir: string, rows: number, candidate: Candidate): Promise<void> {
  const wb = await createResultWorkbook({
    dir,
    baseName: 'bench',
    results: RESULT_COLUMNS,
    errors: ERROR_COLUMNS,
    expectedRows: candidate === 'stream-nohint' ? undefined : { results: rows, errors: Math.ceil(rows / 50) },
    compressionLevel: candidate === 'stream-level1' ? 1 : candidate === 'stream-level6' ? 6 : level,
  });
  for (let i = 0; i < rows; i++) {
    const p = wb.addResult(resultRow(i));
    if (p) await p;
    if (i % 50 === 7) {
      const q = wb.addError(errorRow(i));
      if (q) await q;
    }
  }
  await wb.finish([
    ['Rows', rows],
    ['Finished', new Date().toISOString()],
  ]);
}

async function runOne(candidate: Candidate, rows: number, parentDir: string | undefined): Promise<void> {
  const dir = mkdtempSync(join(parentDir ?? tmpdir(), `bench-${candidate}-`));
  let maxSampled = 0;
  const timer = setInterval(() => {
    maxSampled = Math.max(maxSampled, process.memoryUsage().rss);
  }, 100);
  const started = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  if (candidate === 'exceljs') await runExceljs(dir, rows);
  else await runStream(dir, rows, candidate);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpuStart);
  clearInterval(timer);
  const size = dirSizeMb(dir);
  const figures = {
    candidate,
    rows,
    seconds: Number(seconds.toFixed(2)),
    rowsPerSecond: Math.round(rows / seconds),
    /** CPU time of all the process's threads (main thread and libuv pool, where zlib runs). */
    cpuSeconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(2)),
    outputMb: Number(size.total.toFixed(1)),
    files: size.files,
    peakRssMb: Math.round(peakRssMb()),
    sampledMaxRssMb: Math.round(maxSampled / 1024 / 1024),
  };
  console.log(JSON.stringify(figures));
  rmSync(dir, { recursive: true, force: true });
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? undefined : process.argv[i + 1];
}

const rows = Number(arg('rows') ?? 1_000_000);
/** Deflate level of the `stream` and `stream-nohint` candidates; default: the writer's own. */
const level = arg('level') === undefined ? undefined : Number(arg('level'));
const dir = arg('dir');
const only = arg('candidate') as Candidate | undefined;
if (only) {
  if (!CANDIDATES.includes(only)) throw new Error(`unknown candidate ${only}; one of ${CANDIDATES.join(', ')}`);
  await runOne(only, rows, dir);
} else {
  console.log(
    `consolidate workbook: ${rows.toLocaleString('en-US')} result rows x ${RESULT_COLUMNS.length} columns, ` +
      `node ${process.version}, load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`,
  );
  const table: string[] = [];
  for (const c of CANDIDATES) {
    const child = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        fileURLToPath(import.meta.url),
        ...['--candidate', c, '--rows', String(rows)],
        ...(dir ? ['--dir', dir] : []),
        ...(level === undefined ? [] : ['--level', String(level)]),
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const line = child.stdout.trim().split('\n').pop() ?? '';
    if (child.status !== 0 || !line.startsWith('{')) {
      table.push(`${c.padEnd(14)} failed (exit ${child.status})`);
      continue;
    }
    const f = JSON.parse(line) as { seconds: number; rowsPerSecond: number; cpuSeconds: number; outputMb: number; peakRssMb: number };
    table.push(
      `${c.padEnd(14)} ${f.rowsPerSecond.toLocaleString('en-US').padStart(9)} rows/s  ${String(f.seconds).padStart(6)} s  ` +
        `cpu ${String(f.cpuSeconds).padStart(6)} s  ` +
        `${String(f.outputMb).padStart(6)} MB out  peak RSS ${String(f.peakRssMb).padStart(5)} MB`,
    );
    console.log(line);
  }
  console.log(table.join('\n'));
}
