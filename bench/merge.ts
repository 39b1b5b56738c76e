/**
 * Benchmark of the merge (`npm run bench:merge`): two generated TSV files of N rows each (a third
 * of the keys shared, 5% of rows repeating a key; examples/merge/make-pairs.ts), merged by
 * - `stage`: the merge stage's engine path (header check, plan, DuckDB: one join of the two files
 *   into a table, key statistics from it, ordered COPY: what the merge job runs between download
 *   and upload), with the container's memory limit; `stage-none` the same with
 *   `output.order: none` (no sort);
 * - `bare`: the same inner join as bare `@duckdb/node-api` SQL over the same local files (COPY of a
 *   join of two read_csv, no statistics, no order): the goal is stage ≤ 1.25 × bare;
 * - `bare-ordered`: an ordered output SQL without the statistics (both files loaded into tables,
 *   one ordered COPY of their join: the stage's SQL before it read each file once), so the cost of
 *   the exact statistics shows apart from the cost of the order;
 * - pandas.merge (Debian's /usr/bin/python3 with python3-pandas), when installed: the ratio;
 * - with `--spill-rows M`: the stage's engine path on two files of M rows with 60-character values
 *   (several GB) and DuckDB limited to 1 GB of memory, spilling to local disk.
 * Each variant runs in a child process: wall time, CPU seconds (user + system) and peak RSS, with the
 * load average before and after, since the machine is shared.
 *
 *   npm run bench:merge -- [--rows 10000000] [--spill-rows 40000000] [--no-pandas] [--dir DIR] [--keep]
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DuckDBInstance } from '@duckdb/node-api';
import { readLayout } from '../batch-jobs/engines/delimited-header';
import { runDuckdbMerge, containerMemoryBytes, duckdbMemoryLimit } from '../batch-jobs/engines/duckdb-merge';
import { copySql, loadSql } from '../batch-jobs/engines/duckdb-sql';
import { planMerge } from '../batch-jobs/engines/merge-plan';
import { mergeSpecSchema } from '../runtime/config/merge-schema';
import { flagValue } from '../examples/cli';
import { makePairs } from '../examples/merge/make-pairs';

interface Measure {
  variant: string;
  rows: number;
  outputRows: number;
  wallS: number;
  cpuS: number;
  maxRssMiB: number;
  detail?: Record<string, unknown>;
}

const SELF = fileURLToPath(import.meta.url);
const spec = mergeSpecSchema.parse({ inputs: { left: 'x_list.txt', right: 'y_list.txt' }, keys: { left: ['ID'], right: ['ID'] } });

/** One variant, in this (child) process. */
async function child(variant: string, dir: string, memoryMiB: number | undefined): Promise<void> {
  const x = join(dir, 'x_list.txt');
  const y = join(dir, 'y_list.txt');
  const out = join(dir, `${variant}.out.csv`);
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let outputRows = 0;
  let detail: Record<string, unknown> = {};
  if (variant === 'stage' || variant === 'stage-none' || variant === 'spill') {
    const s = variant === 'stage-none' ? { ...spec, output: { ...spec.output, order: 'none' as const } } : spec;
    const plan = planMerge(s, await readLayout(x, 'x_list.txt', 'left', s), await readLayout(y, 'y_list.txt', 'right', s));
    const memory = memoryMiB ? memoryMiB * 1024 * 1024 : duckdbMemoryLimit(containerMemoryBytes());
    const spill = join(dir, `${variant}.spill`);
    await mkdir(spill, { recursive: true });
    const t = performance.now();
    const onStep = (step: string) =>
      process.stderr.write(`  ${variant}: ${step} at ${((performance.now() - t) / 1000).toFixed(1)} s, load ${load()}\n`);
    const r = await runDuckdbMerge({ plan, leftPath: x, rightPath: y, outPath: out, memoryLimitBytes: memory, tempDir: spill, onStep });
    outputRows = r.counts.outputRows;
    detail = { ...r.timings, memoryLimitMiB: Math.round(memory / 1048576), counts: r.counts };
  } else if (variant === 'bare') {
    const db = await DuckDBInstance.create(':memory:');
    const c = await db.connect();
    const csv = (p: string) => `read_csv('${p}', delim='\t', header=true, all_varchar=true)`;
    const res = await c.runAndReadAll(
      `COPY (SELECT l.ID AS ID_x, l.value AS value_x, r.value AS value_y FROM ${csv(x)} l JOIN ${csv(y)} r ON l.ID = r.ID) TO '${out}' (FORMAT csv, HEADER true)`,
    );
    outputRows = Number(res.getRows()[0]?.[0] ?? 0);
    c.closeSync();
    db.closeSync();
  } else if (variant === 'bare-ordered') {
    const plan = planMerge(spec, await readLayout(x, 'x_list.txt', 'left', spec), await readLayout(y, 'y_list.txt', 'right', spec));
    const db = await DuckDBInstance.create(':memory:');
    const c = await db.connect();
    await c.run(loadSql(plan, 'left', x));
    await c.run(loadSql(plan, 'right', y));
    await c.run('SET preserve_insertion_order = false');
    outputRows = Number((await c.runAndReadAll(copySql(plan, out))).getRows()[0]?.[0] ?? 0);
    c.closeSync();
    db.closeSync();
  }
  const cpu = process.cpuUsage(c0);
  const m: Measure = {
    variant,
    rows: 0,
    outputRows,
    wallS: (performance.now() - t0) / 1000,
    cpuS: (cpu.user + cpu.system) / 1e6,
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
    detail,
  };
  process.stdout.write(`${JSON.stringify(m)}\n`);
}

const PANDAS = `
import sys, time, resource, pandas as pd
t = time.time(); c = time.process_time()
x = pd.read_csv(sys.argv[1], sep="\\t", dtype=str, keep_default_na=False)
y = pd.read_csv(sys.argv[2], sep="\\t", dtype=str, keep_default_na=False)
x = x[x["ID"] != ""]
res = x.merge(y, on="ID", how="inner", suffixes=("_x", "_y"))
res.to_csv(sys.argv[3], index=False)
import json
print(json.dumps({"variant": "pandas", "rows": 0, "outputRows": len(res), "wallS": time.time() - t, "cpuS": time.process_time() - c,
                  "maxRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
`;

function runChild(variant: string, dir: string, memoryMiB?: number): Measure {
  const args = ['--import', 'tsx', SELF, '--child', variant, '--dir', dir, ...(memoryMiB ? ['--memory-mib', String(memoryMiB)] : [])];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${variant} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Measure;
}

function runPandas(dir: string): Measure | undefined {
  if (!existsSync('/usr/bin/python3') || spawnSync('/usr/bin/python3', ['-c', 'import pandas']).status !== 0) return undefined;
  const r = spawnSync('/usr/bin/python3', ['-c', PANDAS, join(dir, 'x_list.txt'), join(dir, 'y_list.txt'), join(dir, 'pandas.out.csv')], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new Error(`pandas failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Measure;
}

const load = () =>
  loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
const line = (m: Measure, rows: number) =>
  `  ${m.variant.padEnd(12)} ${m.wallS.toFixed(1).padStart(7)} s wall ${m.cpuS.toFixed(1).padStart(7)} CPU-s ${Math.round(m.maxRssMiB).toString().padStart(6)} MiB peak RSS ` +
  `${Math.round((2 * rows) / m.wallS)
    .toLocaleString('en-US')
    .padStart(11)} input rows/s  output ${m.outputRows.toLocaleString('en-US')} rows`;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('--child')) {
    const mem = flagValue(args, '--memory-mib', '');
    await child(flagValue(args, '--child', ''), flagValue(args, '--dir', ''), mem ? Number(mem) : undefined);
    return;
  }
  const rows = Number(flagValue(args, '--rows', '10000000'));
  const spillRows = Number(flagValue(args, '--spill-rows', '0'));
  const root = flagValue(args, '--dir', join(tmpdir(), 'fanout-bench-merge'));
  const keep = args.includes('--keep');
  const dir = join(root, `rows-${rows}`);
  if (!existsSync(join(dir, 'y_list.txt'))) {
    console.log(`generating ${rows.toLocaleString('en-US')} rows per file in ${dir} ...`);
    await makePairs({ rows, dir });
  }
  const size = (await stat(join(dir, 'x_list.txt'))).size + (await stat(join(dir, 'y_list.txt'))).size;
  console.log(`inputs: 2 x ${rows.toLocaleString('en-US')} rows, ${(size / 1e6).toFixed(0)} MB together; load before: ${load()}`);
  const bare = runChild('bare', dir);
  console.log(line(bare, rows), `load ${load()}`);
  const ordered = runChild('bare-ordered', dir);
  console.log(line(ordered, rows), `load ${load()}`);
  const stage = runChild('stage', dir);
  const steps = (m: Measure) =>
    `(load ${Number(m.detail?.loadS).toFixed(1)} s, stats ${Number(m.detail?.statsS).toFixed(1)} s, join ${Number(m.detail?.joinS).toFixed(1)} s, DuckDB limit ${m.detail?.memoryLimitMiB} MiB) load ${load()}`;
  console.log(line(stage, rows), steps(stage));
  const none = runChild('stage-none', dir);
  console.log(line(none, rows), steps(none));
  const ratio = (a: Measure, b: Measure) => `${(a.wallS / b.wallS).toFixed(2)}x wall, ${(a.cpuS / b.cpuS).toFixed(2)}x CPU`;
  console.log(`  stage / bare: ${ratio(stage, bare)} (goal: <= 1.25x); stage-none / bare: ${ratio(none, bare)}`);
  console.log(`  stage / bare-ordered (the cost of the exact statistics): ${ratio(stage, ordered)}`);
  for (const m of [ordered, stage, none]) {
    if (m.outputRows !== bare.outputRows) console.log(`  !! output rows differ: ${m.variant} ${m.outputRows}, bare ${bare.outputRows}`);
  }
  if (!args.includes('--no-pandas')) {
    const pandas = runPandas(dir);
    if (pandas) {
      console.log(line(pandas, rows), `load ${load()}`);
      console.log(`  pandas / stage: ${(pandas.wallS / stage.wallS).toFixed(2)}x wall, ${(pandas.cpuS / stage.cpuS).toFixed(2)}x CPU`);
    } else console.log('  pandas: not installed (Debian python3-pandas), skipped');
  }
  console.log(`load after: ${load()}`);
  if (spillRows > 0) {
    const spillDir = join(root, `spill-${spillRows}`);
    if (!existsSync(join(spillDir, 'y_list.txt'))) {
      console.log(`generating ${spillRows.toLocaleString('en-US')} rows per file with 60-character values in ${spillDir} ...`);
      await makePairs({ rows: spillRows, dir: spillDir, valueBytes: 60 });
    }
    const big = (await stat(join(spillDir, 'x_list.txt'))).size + (await stat(join(spillDir, 'y_list.txt'))).size;
    console.log(
      `spill run: 2 x ${spillRows.toLocaleString('en-US')} rows, ${(big / 1e9).toFixed(2)} GB together, DuckDB memory limit 1 GB; load before: ${load()}`,
    );
    const spill = runChild('spill', spillDir, 1024);
    console.log(
      line(spill, spillRows),
      steps(spill),
      `completed; output ${((await stat(join(spillDir, 'spill.out.csv'))).size / 1e9).toFixed(2)} GB`,
    );
    console.log(`load after: ${load()}`);
    if (!keep) await rm(join(spillDir, 'spill.out.csv'), { force: true });
  }
  if (!keep) for (const v of ['bare', 'stage', 'pandas']) await rm(join(dir, `${v}.out.csv`), { force: true });
  void readFile;
}

await main();
