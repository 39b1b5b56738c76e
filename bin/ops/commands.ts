/**
 * The operating commands of `fanout` (argument parsing and output; the work is in runs.ts,
 * redrive.ts, submit.ts and estimate.ts):
 *
 *   fanout status [runId] [--watch] [--json]                 (--stack <appName> | --local DIR)
 *   fanout limit <runId> --rate N | --concurrency N [--json]
 *   fanout cancel <runId> [--json]
 *   fanout redrive <runId> [--wait] [--json]
 *   fanout submit <file> --pipeline P [--wait] [--json]
 *   fanout estimate <file> --pipeline P [--latency-ms N | --sample N] [--json]
 *   fanout sweep [--now ISO] [--json]                        (--local DIR; bin/ops/sweep.ts)
 *
 * Exit codes as `fanout run`: 0 done (a run that ended SUCCEEDED, or a command that did its work),
 * 1 failed (a waited-for run that failed or was cancelled, an AWS call that failed), 2 usage error
 * (unknown run id, stack not deployed, no credentials, bad arguments).
 */
import { existsSync } from 'node:fs';
import { basename, relative } from 'node:path';
import { userInfo } from 'node:os';
import { loadPipelinesConfig } from '../../config/pipelines';
import { DEFAULT_RUN_RETENTION_DAYS, findPipeline, loadConfigFile, parseAppConfig, type AppConfig } from '../../runtime/config/schema';
import { readLiveEndpoints } from '../../local/kept-run';
import { runLocal, type LocalRunResult } from '../../local/local-run';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { TERMINAL_STATUSES } from '../../runtime/lifecycle';
import { OpsError } from './ops-error';
import { cancelRun, listRuns, runDetail, setLimits, summarise, type CallSample, type RunDetail, type RunSummary } from './runs';
import { openTarget, type OpsTarget } from './target';
import { planRedrive, startRedrive } from './redrive';
import { sweepLocal, sweepText } from './sweep';
import {
  DEFAULT_PRICES_FILE,
  estimate as estimateRun,
  estimateText,
  loadPrices,
  readFileShape,
  sampleLatency,
  type Latency,
} from './estimate';

export interface OpsIo {
  out: NodeJS.WritableStream & { isTTY?: boolean };
  err: NodeJS.WritableStream & { isTTY?: boolean };
}

export const OPS_USAGE = `Operating a pipeline (on a deployed stack or a kept local run):
  fanout status [runId] [--watch] [--json]           recent runs, or one run per stage and chunk
  fanout limit <runId> --rate N | --concurrency N    change a running run's fleet-wide limits
  fanout cancel <runId>                              stop a run; partial results are emailed
  fanout redrive <runId> [--wait]                    run only the failed items again, one merged workbook
  fanout submit <file> --pipeline P [--wait]         upload to the intake folder (and watch the run)
  fanout estimate <file> --pipeline P [--latency-ms N | --sample N] [--config FILE.json]
      [--failure-rate R] [--retry-after-rate R] [--retry-after-ms N] [--parallel N] [--start-seconds N]
                                                     items, chunks, wall time and AWS cost, before uploading
  fanout sweep [--now ISO] --local DIR               merge batches past their input deadline end FAILED
  Each takes --stack <appName> (credentials from the usual AWS chain) or --local DIR (a run kept with
  fanout run ... --keep DIR); estimate needs neither.`;

const TARGET_OPTIONS = {
  stack: { type: 'string' },
  local: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const satisfies ParseArgsConfig['options'];

function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O) {
  return parseArgs({ args, allowPositionals: true, options: { ...TARGET_OPTIONS, ...options } });
}

async function withTarget<T>(values: { stack?: string; local?: string }, fn: (t: OpsTarget) => Promise<T>): Promise<T> {
  const target = await openTarget({ stack: values.stack, local: values.local });
  try {
    return await fn(target);
  } finally {
    await target.close();
  }
}

function oneRunId(positionals: string[], command: string): string {
  if (positionals.length !== 1) throw new OpsError(`fanout ${command} takes exactly one run id`, 2);
  return positionals[0]!;
}

const pad = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const num = (n: number | null) => (n === null ? '-' : n.toLocaleString('en-US'));
const secs = (n: number | null) =>
  n === null ? '-' : n >= 3600 ? `${(n / 3600).toFixed(1)} h` : n >= 60 ? `${(n / 60).toFixed(1)} min` : `${n} s`;

function runsTable(runs: RunSummary[]): string {
  if (runs.length === 0) return 'no runs yet\n';
  const header = ['RUN ID', 'PIPELINE', 'INPUT', 'STATUS', 'ITEMS', 'DONE', 'FAILED', 'STARTED', 'TOOK'];
  const rows = runs.map((r) => [
    r.runId + (r.redriveOf ? ' (redrive)' : ''),
    r.pipeline,
    r.input,
    r.status,
    num(r.items),
    num(r.succeeded),
    num(r.failed),
    r.startedAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z'),
    secs(r.tookSeconds),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const waiting = runs.filter((r) => r.waitingFor).map((r) => `${r.runId} ${waitingText(r)}\n`);
  return `${[header, ...rows]
    .map((r) =>
      r
        .map((c, i) => pad(c, widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n${waiting.length > 0 ? `\n${waiting.join('')}` : ''}`;
}

/** What a merge batch waits for: `waiting for right input y_list.txt (fails at 2026-12-02T08:00:00Z)`. */
function waitingText(r: RunSummary): string {
  return `waiting for ${(r.waitingFor ?? []).join(', ') || '?'}${r.deadline ? ` (fails at ${r.deadline.replace(/\.\d+Z$/, 'Z')} unless it arrives)` : ''}`;
}

function bar(done: number, total: number, width = 24): string {
  const f = total > 0 ? Math.min(1, done / total) : 0;
  const n = Math.round(f * width);
  return `[${'#'.repeat(n)}${'-'.repeat(width - n)}] ${String(Math.round(f * 100)).padStart(3)}%`;
}

function detailText(d: RunDetail): string {
  const lines = [
    `Run ${d.runId} (${d.pipeline}, ${d.input}): ${d.status}${d.redriveOf ? ` - redrive of ${d.redriveOf}` : ''}`,
    `  started ${d.startedAt}, ${d.status === 'FANNING_OUT' || d.status === 'SPLITTING' ? 'running for' : 'took'} ${secs(d.tookSeconds)}`,
    `  items ${num(d.items)}, chunks ${num(d.chunks)}; done ${num(d.itemsDone)}, failed ${num(d.itemsFailed)}, retried calls ${num(d.retries)}`,
    `  stages: split ${d.stages.split}, fan-out ${d.stages.fanout}, consolidate ${d.stages.consolidate}, cleanup ${d.stages.cleanup}`,
    `  limits (${d.limits.setBy}): rate ${d.limits.ratePerSecond === null ? 'none' : `${d.limits.ratePerSecond}/s`}, concurrency ${num(d.limits.concurrency)} fleet-wide`,
  ];
  if (d.callsPerSecond !== null) lines.push(`  now: ${d.callsPerSecond} calls/s, ETA ${secs(d.etaSeconds)}`);
  if (d.items) lines.push(`  ${bar(d.itemsDone + d.itemsFailed, d.items)}`);
  for (const c of d.chunkProgress) {
    lines.push(
      `    chunk ${String(c.chunk).padStart(4)} ${pad(c.status, 7)} ${bar(c.done + c.failed, c.items, 16)}  done ${c.done}, failed ${c.failed}, retries ${c.retries}, attempt ${c.attempt}`,
    );
  }
  if (d.waitingFor) lines.push(`  ${waitingText(d)}`);
  if (d.error) lines.push(`  reason: ${d.error}`);
  if (d.resultKey) lines.push(`  result: ${d.resultKey}`);
  return `${lines.join('\n')}\n`;
}

/** Exit code of a run that ended: 0 SUCCEEDED, 1 otherwise, 0 while it still runs. */
const exitFor = (status: string) => (status === 'FAILED' || status === 'CANCELLED' ? 1 : 0);

async function status(io: OpsIo, args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { watch: { type: 'boolean', default: false }, last: { type: 'string' } });
  const json = values.json === true;
  return withTarget(values, async (t) => {
    if (positionals.length === 0) {
      const last = values.last ? Number(values.last) : 20;
      if (!Number.isInteger(last) || last < 1) throw new OpsError(`--last must be a whole number >= 1, got "${values.last}"`, 2);
      const runs = (await listRuns(t.clients.dynamo, t.table.tableName, last)).map((r) => summarise(r));
      io.out.write(json ? `${JSON.stringify({ runs })}\n` : runsTable(runs));
      return 0;
    }
    const runId = oneRunId(positionals, 'status');
    if (!values.watch) {
      const { sample: _, ...d } = await runDetail(t.table, runId, t.describe);
      io.out.write(json ? `${JSON.stringify(d)}\n` : detailText(d));
      return exitFor(d.status);
    }
    // Rates over the last 10 s of readings (progress is saved every 500 items or 5 s).
    const samples: CallSample[] = [];
    for (;;) {
      const { sample, ...d } = await runDetail(t.table, runId, t.describe, { previous: samples.find((s) => s.at >= Date.now() - 10_000) });
      samples.push(sample);
      while (samples.length > 20) samples.shift();
      if (json) io.out.write(`${JSON.stringify(d)}\n`);
      else io.out.write(`${io.out.isTTY ? '\x1b[H\x1b[2J' : ''}${detailText(d)}`);
      if (TERMINAL_STATUSES.includes(d.status)) return exitFor(d.status);
      await new Promise((r) => setTimeout(r, 1_000));
    }
  });
}

function positiveNumber(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new OpsError(`${flag} must be a positive number, got "${v}"`, 2);
  return n;
}

async function limit(io: OpsIo, args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { rate: { type: 'string' }, concurrency: { type: 'string' } });
  const runId = oneRunId(positionals, 'limit');
  const ratePerSecond = positiveNumber(values.rate, '--rate');
  const concurrency = positiveNumber(values.concurrency, '--concurrency');
  if (concurrency !== undefined && !Number.isInteger(concurrency))
    throw new OpsError(`--concurrency must be a whole number, got ${concurrency}`, 2);
  if (ratePerSecond === undefined && concurrency === undefined) throw new OpsError('fanout limit needs --rate N or --concurrency N', 2);
  return withTarget(values, async (t) => {
    const limits = await setLimits(t.table, runId, t.describe, {
      ...(ratePerSecond !== undefined ? { ratePerSecond } : {}),
      ...(concurrency !== undefined ? { concurrency } : {}),
    });
    io.out.write(
      values.json
        ? `${JSON.stringify({ runId, limits })}\n`
        : `run ${runId}: fleet-wide ${[
            limits.ratePerSecond !== undefined ? `rate ${limits.ratePerSecond}/s` : '',
            limits.concurrency !== undefined ? `concurrency ${limits.concurrency}` : '',
          ]
            .filter(Boolean)
            .join(', ')}; running fan-out children take it up within a few seconds\n`,
    );
    return 0;
  });
}

async function cancel(io: OpsIo, args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {});
  const runId = oneRunId(positionals, 'cancel');
  return withTarget(values, async (t) => {
    const outcome = await cancelRun(t.table, t.live ? t.clients.batch : undefined, runId, t.describe, { who: userInfo().username });
    if (values.json) io.out.write(`${JSON.stringify({ ...outcome, status: 'CANCELLED' })}\n`);
    else {
      io.out.write(
        t.live
          ? `run ${runId} CANCELLED: terminated ${outcome.terminated.length} job(s), cancelled ${outcome.cancelled.length}; ` +
              'the partial results email and cleanup follow\n'
          : `run ${runId} CANCELLED; no process runs its jobs (the kept run's process has ended)\n`,
      );
    }
    return 0;
  });
}

/** Follows a run until it ends, printing what `status --watch` prints; answers its exit code. */
async function follow(io: OpsIo, t: OpsTarget, runId: string, json: boolean): Promise<number> {
  const samples: CallSample[] = [];
  let lastLine = '';
  for (;;) {
    const { sample, ...d } = await runDetail(t.table, runId, t.describe, { previous: samples.find((s) => s.at >= Date.now() - 10_000) });
    samples.push(sample);
    if (TERMINAL_STATUSES.includes(d.status)) {
      io.out.write(json ? `${JSON.stringify(d)}\n` : detailText(d));
      return exitFor(d.status);
    }
    const line = `${d.status} ${bar(d.itemsDone + d.itemsFailed, d.items ?? 0)} done ${d.itemsDone}, failed ${d.itemsFailed}`;
    if (!json && line !== lastLine) io.err.write(`${line}\n`);
    lastLine = line;
    await new Promise((r) => setTimeout(r, 1_000));
  }
}

function localSummary(r: LocalRunResult): string {
  const rel = (p?: string) => (p ? relative(process.cwd(), p) || p : '-');
  return [
    `Run ${r.runId} (${r.pipeline}): ${r.status}${r.run?.redriveOf ? ` - redrive of ${r.run.redriveOf}` : ''}`,
    `  items ${r.items}, succeeded ${r.succeeded}, failed ${r.failed}, chunks ${r.chunks}, ${(r.durationMs / 1000).toFixed(1)} s`,
    ...(r.error ? [`  reason: ${r.error}`] : []),
    `  iam:      ${r.iam.calls} AWS calls checked against the synthesized policies, ${r.iam.denied} denied`,
    `  workbook: ${rel(r.resultFile)}`,
    `  email:    ${rel(r.emailFile)}`,
    '',
  ].join('\n');
}

function localJson(r: LocalRunResult): string {
  const { runId, pipeline, status, items, succeeded, failed, chunks, durationMs } = r;
  return `${JSON.stringify({ runId, pipeline, status, items, succeeded, failed, chunks, redriveOf: r.run?.redriveOf ?? null, resultFile: r.resultFile ?? null, emailFile: r.emailFile ?? null, durationMs, iam: { calls: r.iam.calls, denied: r.iam.denied } })}\n`;
}

async function redrive(io: OpsIo, args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { wait: { type: 'boolean', default: false }, out: { type: 'string', short: 'o' } });
  const runId = oneRunId(positionals, 'redrive');
  const json = values.json === true;
  const target = await openTarget({ stack: values.stack, local: values.local });
  let plan: Awaited<ReturnType<typeof planRedrive>>;
  try {
    plan = await planRedrive(target.store, target.table, runId, target.describe);
    if (plan.redo === 0 || target.kind === 'local') await target.close();
  } catch (err) {
    await target.close();
    throw err;
  }
  const bad =
    plan.badInput > 0
      ? `; ${plan.badInput} item(s) failed on their own input cells and are not run again: fix those rows and upload them as a new file`
      : '';
  if (plan.redo === 0) {
    io.out.write(
      json
        ? `${JSON.stringify({ runId, redo: 0, badInput: plan.badInput, started: null })}\n`
        : `run ${runId} has nothing to redo: no item failed or was left unprocessed${bad}; nothing started\n`,
    );
    return 0;
  }
  io.err.write(`run ${runId}: running ${plan.redo} failed or not processed item(s) again${bad}\n`);
  if (target.kind === 'local') {
    // A kept local run: the redrive runs here, on the kept folder, with a job runner of its own.
    if (readLiveEndpoints(target.dir!))
      throw new OpsError(`a fanout run process is still using ${target.dir}; redrive once it has ended`, 1);
    const config = parseAppConfig({ sender: plan.original.sender, pipelines: [plan.original.config] }, `run ${runId}`);
    const result = await runLocal({
      pipeline: plan.original.pipeline,
      config,
      keepDir: target.dir,
      outDir: values.out,
      begin: ({ store, table, notifier }) =>
        startRedrive({ store, table, notifier }, plan, { fallbackRetentionDays: config.runRetentionDays }),
    });
    io.out.write(json ? localJson(result) : localSummary(result));
    return result.status === 'SUCCEEDED' ? 0 : 1;
  }
  try {
    const newRunId = await startRedrive({ store: target.store, table: target.table, notifier: target.notifier! }, plan, {
      fallbackRetentionDays: DEFAULT_RUN_RETENTION_DAYS,
    });
    if (!values.wait) {
      io.out.write(
        json
          ? `${JSON.stringify({ runId, redo: plan.redo, badInput: plan.badInput, started: newRunId })}\n`
          : `redrive run ${newRunId} started; follow it with fanout status ${newRunId} --stack ${values.stack} --watch\n`,
      );
      return 0;
    }
    return await follow(io, target, newRunId, json);
  } finally {
    await target.close();
  }
}

function loadConfig(path: string | undefined): AppConfig {
  return path ? loadConfigFile(path) : loadPipelinesConfig();
}

async function submit(io: OpsIo, args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    pipeline: { type: 'string', short: 'p' },
    config: { type: 'string', short: 'c' },
    wait: { type: 'boolean', default: false },
    out: { type: 'string', short: 'o' },
  });
  if (positionals.length !== 1) throw new OpsError('fanout submit takes exactly one file', 2);
  const file = positionals[0]!;
  if (!existsSync(file)) throw new OpsError(`no such file: ${file}`, 2);
  if (!values.pipeline) throw new OpsError('--pipeline is required', 2);
  const json = values.json === true;
  const key = `intake/${values.pipeline}/${basename(file)}`;
  if (values.local && !readLiveEndpoints(values.local)) {
    // No process serves the kept folder: run the pipeline here on it (as fanout run --keep does).
    const config = loadConfig(values.config);
    if (!findPipeline(config, values.pipeline))
      throw new OpsError(`no pipeline "${values.pipeline}" in ${values.config ?? 'config/pipelines.ts'}`, 2);
    const result = await runLocal({ file, pipeline: values.pipeline, config, keepDir: values.local, outDir: values.out });
    io.out.write(json ? localJson(result) : localSummary(result));
    return result.status === 'SUCCEEDED' ? 0 : 1;
  }
  return withTarget(values, async (t) => {
    const since = Date.now() - 60_000;
    const { createReadStream } = await import('node:fs');
    await t.store.put(key, createReadStream(file));
    if (!values.wait) {
      io.out.write(
        json
          ? `${JSON.stringify({ key: `s3://${t.store.bucket}/${key}` })}\n`
          : `uploaded to s3://${t.store.bucket}/${key}; fanout status --${values.stack ? `stack ${values.stack}` : `local ${values.local}`} shows its run\n`,
      );
      return 0;
    }
    // The run id comes from the S3 event: find the run this upload opened.
    let runId: string | undefined;
    while (!runId) {
      const runs = await listRuns(t.clients.dynamo, t.table.tableName, 50);
      runId = runs.find((r) => r.inputName === basename(file) && r.pipeline === values.pipeline && r.createdAt >= since)?.runId;
      if (!runId) await new Promise((r) => setTimeout(r, 1_000));
    }
    if (!json) io.err.write(`run ${runId} opened\n`);
    return follow(io, t, runId, json);
  });
}

async function estimate(io: OpsIo, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      pipeline: { type: 'string', short: 'p' },
      config: { type: 'string', short: 'c' },
      'latency-ms': { type: 'string' },
      'failure-rate': { type: 'string' },
      'retry-after-rate': { type: 'string' },
      'retry-after-ms': { type: 'string' },
      'start-seconds': { type: 'string' },
      sample: { type: 'string' },
      parallel: { type: 'string' },
      prices: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 1) throw new OpsError('fanout estimate takes exactly one file', 2);
  const file = positionals[0]!;
  if (!existsSync(file)) throw new OpsError(`no such file: ${file}`, 2);
  if (!values.pipeline) throw new OpsError('--pipeline is required', 2);
  if (values['latency-ms'] !== undefined && values.sample !== undefined) throw new OpsError('give --latency-ms or --sample, not both', 2);
  const config = loadConfig(values.config);
  const found = findPipeline(config, values.pipeline);
  if (!found) throw new OpsError(`no pipeline "${values.pipeline}" in ${values.config ?? 'config/pipelines.ts'}`, 2);
  if (found.shape !== 'items')
    throw new OpsError(`pipeline ${found.name} is a ${found.shape} pipeline; estimate knows items pipelines only`, 2);
  const sample = values.sample !== undefined ? positiveNumber(values.sample, '--sample') : undefined;
  const shape = await readFileShape(file, found, sample ?? 0);
  let latency: Latency;
  if (sample !== undefined) {
    latency = await sampleLatency(
      found,
      shape.firstItems.filter((i) => !i.x?.length),
      process.env,
    );
  } else {
    const given = positiveNumber(values['latency-ms'], '--latency-ms');
    const share = values['failure-rate'] === undefined ? 0 : Number(values['failure-rate']);
    if (!(share >= 0 && share < 1)) throw new OpsError(`--failure-rate must be in [0, 1), got "${values['failure-rate']}"`, 2);
    const paused = values['retry-after-rate'] === undefined ? 0 : Number(values['retry-after-rate']);
    if (!(paused >= 0 && paused <= share)) {
      throw new OpsError(
        `--retry-after-rate must be in [0, --failure-rate] (refusals with Retry-After are failures too), got "${values['retry-after-rate']}"`,
        2,
      );
    }
    latency = {
      meanMs: given ?? 100,
      transientShare: share,
      pausedShare: paused,
      retryAfterMs: positiveNumber(values['retry-after-ms'], '--retry-after-ms') ?? 1000,
      source: given ? 'given (--latency-ms)' : 'assumed 100 ms: give --latency-ms N or --sample N',
    };
  }
  const start = values['start-seconds'];
  const childStartSeconds = start === undefined ? undefined : Number(start);
  if (childStartSeconds !== undefined && !(childStartSeconds >= 0))
    throw new OpsError(`--start-seconds must be 0 or more, got "${start}"`, 2);
  const pricesFile = values.prices ?? DEFAULT_PRICES_FILE;
  const e = estimateRun(shape, found, await loadPrices(pricesFile), {
    latency,
    parallel: values.parallel !== undefined ? positiveNumber(values.parallel, '--parallel') : undefined,
    childStartSeconds,
  });
  io.out.write(values.json ? `${JSON.stringify(e)}\n` : estimateText(e, relative(process.cwd(), pricesFile) || pricesFile));
  return 0;
}

async function sweep(io: OpsIo, args: string[]): Promise<number> {
  const { values } = parse(args, { now: { type: 'string' }, config: { type: 'string' } });
  const now = values.now === undefined ? Date.now() : Date.parse(values.now);
  if (Number.isNaN(now)) throw new OpsError(`--now must be an ISO 8601 time such as 2026-12-02T08:00:00Z, got "${values.now}"`, 2);
  const config = loadConfig(values.config);
  return withTarget(values, async (t) => {
    const outcomes = await sweepLocal(t, config, now);
    io.out.write(values.json ? `${JSON.stringify({ outcomes })}\n` : sweepText(outcomes));
    return outcomes.some((o) => o.action === 'error') ? 1 : 0;
  });
}

export const OPS_COMMANDS: Record<string, (io: OpsIo, args: string[]) => Promise<number>> = {
  status,
  limit,
  cancel,
  redrive,
  submit,
  estimate,
  sweep,
};
