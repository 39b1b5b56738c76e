/**
 * Split benchmark: reading + chunking throughput and peak memory of the records layer.
 *
 *   npx tsx bench/split-records.ts            # all cases
 *   npx tsx bench/split-records.ts csv xlsx   # some cases
 *
 * Generates its inputs once into bench/out/ (gitignored): a 1M-row, 5-column CSV, a 200k-row
 * workbook (shared strings and a date column, as Excel writes them) and a 1M-row CSV of 100k
 * trips in scattered order for the grouped case. Each case runs in its own process so its peak
 * RSS (VmHWM) is its own; chunks (10,000 items each) are written to a temp dir, as split would
 * upload them. The `exceljs` case reads the same workbook with exceljs's streaming reader, the
 * library the xlsx reader was measured against. `xlsx1m` (on request) reads a 1M-row workbook.
 */
import { spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ExcelJS from 'exceljs';
import type { ColumnConfig } from '../runtime/config/schema';
import { writeChunks } from '../batch-jobs/records/chunker';
import { openRecords } from '../batch-jobs/records/reader';

const OUT = join(fileURLToPath(new URL('.', import.meta.url)), 'out');
const CSV_ROWS = 1_000_000;
const XLSX_ROWS = 200_000;
const TRIPS = 100_000;

const FILES = {
  csv: join(OUT, `customers-${CSV_ROWS}.csv`),
  xlsx: join(OUT, `customers-${XLSX_ROWS}.xlsx`),
  xlsx1m: join(OUT, `customers-${CSV_ROWS}.xlsx`),
  grouped: join(OUT, `gps-${CSV_ROWS}.csv`),
};

const customerColumns: ColumnConfig[] = [
  { name: 'Customer ID', type: 'text', required: true },
  { name: 'Name', type: 'text', required: true },
  { name: 'Tax Year', type: 'integer', required: true },
  { name: 'Postcode', type: 'text', required: false },
  { name: 'Customer Since', type: 'date', required: false },
];
const gpsColumns: ColumnConfig[] = [
  { name: 'trip_id', type: 'text', required: true },
  { name: 'timestamp', type: 'date', required: true },
  { name: 'lat', type: 'number', required: true },
  { name: 'lon', type: 'number', required: true },
  { name: 'accuracy', type: 'number', required: false },
];

async function writeLines(path: string, header: string, rows: number, line: (i: number) => string): Promise<void> {
  const partial = `${path}.partial`;
  const out = createWriteStream(partial);
  const write = (s: string) => (out.write(s) ? Promise.resolve() : new Promise<void>((r) => out.once('drain', () => r())));
  await write(`${header}\n`);
  let buf = '';
  for (let i = 0; i < rows; i++) {
    buf += `${line(i)}\n`;
    if (buf.length > 1 << 20) {
      await write(buf);
      buf = '';
    }
  }
  await write(buf);
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  await rename(partial, path);
}

/** The "Customer Since" date of row i, in the CSV and the workbook alike. */
const customerSince = (i: number) => new Date(Date.UTC(2000, 0, 1) + (i % 9000) * 86_400_000);
const isoDay = (i: number) => customerSince(i).toISOString().slice(0, 10);

async function generate(wanted: string[]): Promise<void> {
  await mkdir(OUT, { recursive: true });
  if (!existsSync(FILES.csv)) {
    console.log(`generating ${FILES.csv}`);
    await writeLines(FILES.csv, 'Customer ID,Name,Tax Year,Postcode,Customer Since', CSV_ROWS, (i) =>
      [String(i).padStart(8, '0'), `"Customer ${i}, Ltd"`, 2020 + (i % 5), `AB${i % 97} ${i % 9}CD`, isoDay(i)].join(','),
    );
  }
  if (!existsSync(FILES.grouped)) {
    console.log(`generating ${FILES.grouped}`);
    // Rows of a trip are scattered: trip = a multiplicative hash of the row index.
    await writeLines(FILES.grouped, 'trip_id,timestamp,lat,lon,accuracy', CSV_ROWS, (i) => {
      const trip = (i * 7919 + Math.floor(i / TRIPS)) % TRIPS;
      return `T${trip},${1_700_000_000 + i},${(52 + (i % 1000) / 10_000).toFixed(6)},${(13 + (i % 777) / 10_000).toFixed(6)},${5 + (i % 20)}`;
    });
  }
  if (!existsSync(FILES.xlsx)) await generateWorkbook(FILES.xlsx, XLSX_ROWS);
  if (wanted.includes('xlsx1m') && !existsSync(FILES.xlsx1m)) await generateWorkbook(FILES.xlsx1m, CSV_ROWS);
}

async function generateWorkbook(path: string, rows: number): Promise<void> {
  console.log(`generating ${path}`);
  const partial = `${path}.partial`;
  const wb = new ExcelJS.stream.xlsx.WorkbookWriter({ filename: partial, useSharedStrings: true, useStyles: true });
  const ws = wb.addWorksheet('Customers');
  ws.columns = [
    { header: 'Customer ID', key: 'id' },
    { header: 'Name', key: 'name' },
    { header: 'Tax Year', key: 'year' },
    { header: 'Postcode', key: 'postcode' },
    { header: 'Customer Since', key: 'since', style: { numFmt: 'yyyy-mm-dd' } },
  ];
  for (let i = 0; i < rows; i++) {
    ws.addRow({
      id: String(i).padStart(8, '0'),
      name: `Customer ${i}`,
      year: 2020 + (i % 5),
      postcode: `AB${i % 97} ${i % 9}CD`,
      since: customerSince(i),
    }).commit();
  }
  ws.commit();
  await wb.commit();
  await rename(partial, path);
}

interface CaseResult {
  case: string;
  rows: number;
  items: number;
  chunks: number;
  seconds: number;
  /** CPU seconds (user + system): steadier than wall time on a shared machine. */
  cpuSeconds: number;
  rowsPerSecond: number;
  peakRssMB: number;
}

/** Peak RSS: the larger of a 20 ms sample of rss and the kernel's high-water mark. */
function startRssSampler(): () => number {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  return () => {
    clearInterval(timer);
    peak = Math.max(peak, process.memoryUsage().rss);
    return peak;
  };
}

async function vmHwm(): Promise<number> {
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '');
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

async function runCase(name: string): Promise<CaseResult> {
  const stopSampler = startRssSampler();
  const started = performance.now();
  const cpuStart = process.cpuUsage();
  let rows = 0;
  let items = 0;
  let chunks = 0;
  if (name === 'exceljs') {
    const reader = new ExcelJS.stream.xlsx.WorkbookReader(FILES.xlsx, {
      sharedStrings: 'cache',
      styles: 'cache',
      hyperlinks: 'ignore',
      worksheets: 'emit',
      entries: 'emit',
    });
    for await (const ws of reader) {
      for await (const _row of ws as AsyncIterable<unknown>) rows++;
      break;
    }
    rows -= 1; // header
  } else if (name === 'xlsx-read') {
    // The reader alone (normalised rows, no chunks), to compare with exceljs's reader like for like.
    const source = await openRecords(createReadStream(FILES.xlsx), { fileName: FILES.xlsx, columns: customerColumns });
    for await (const _row of source.rows) rows++;
  } else {
    const file = name === 'xlsx' ? FILES.xlsx : name === 'xlsx1m' ? FILES.xlsx1m : name === 'csv' ? FILES.csv : FILES.grouped;
    const tmp = await mkdtemp(join(tmpdir(), 'bench-split-'));
    try {
      const source = await openRecords(createReadStream(file), {
        fileName: file,
        columns: name === 'grouped' ? gpsColumns : customerColumns,
      });
      const result = await writeChunks(source.rows, {
        chunkSize: 10_000,
        maxChunks: 10_000,
        tmpDir: tmp,
        ...(name === 'grouped' ? { groupBy: 'trip_id' } : {}),
        writeChunk: (n, body) => writeFile(join(tmp, `chunk-${n}.jsonl`), body),
      });
      rows = result.rows;
      items = result.items;
      chunks = result.chunks;
      if (result.invalidItems > 0) throw new Error(`${result.invalidItems} invalid items: the generated data should be clean`);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  const peak = Math.max(stopSampler(), await vmHwm());
  return {
    case: name,
    rows,
    items,
    chunks,
    seconds: Number(seconds.toFixed(2)),
    cpuSeconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(2)),
    rowsPerSecond: Math.round(rows / seconds),
    peakRssMB: Math.round(peak / 1024 / 1024),
  };
}

/** Default cases; `xlsx1m` (a 1M-row workbook, to show memory does not grow with rows) on request. */
const CASES = ['csv', 'xlsx', 'xlsx-read', 'exceljs', 'grouped'];

async function main(): Promise<void> {
  const child = process.env.BENCH_SPLIT_CASE;
  if (child) {
    process.stdout.write(`${JSON.stringify(await runCase(child))}\n`);
    return;
  }
  const wanted = process.argv.slice(2).length > 0 ? process.argv.slice(2) : CASES;
  await generate(wanted);
  for (const name of wanted) {
    const run = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
      env: { ...process.env, BENCH_SPLIT_CASE: name },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (run.status !== 0) throw new Error(`case ${name} failed (exit ${run.status})`);
    const result = JSON.parse(run.stdout.trim().split('\n').pop()!) as CaseResult;
    console.log(
      `${result.case.padEnd(9)} ${String(result.rows).padStart(8)} rows  ${String(result.items).padStart(8)} items  ${String(result.chunks).padStart(4)} chunks  ${result.seconds.toFixed(2).padStart(6)} s (cpu ${result.cpuSeconds.toFixed(2).padStart(6)} s)  ${String(result.rowsPerSecond).padStart(8)} rows/s  peak RSS ${result.peakRssMB} MB`,
    );
  }
}

await main();
