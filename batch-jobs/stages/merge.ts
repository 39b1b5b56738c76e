/**
 * merge: the one engine job of a `dataset` pipeline. Reads the batch's inputs and their header
 * rows, plans the merge, and runs it on the pipeline's engine:
 * - `duckdb`: streams both inputs from the object store to local disk, runs the SQL with a memory
 *   limit from the container's memory and a spill directory on local disk, and streams the output
 *   back (a multipart upload) to `results/<pipeline>/<batch>/<name>.csv|tsv`;
 * - `emr-serverless`: writes the Spark SQL script and its PySpark runner under `work/<runId>/spark/`,
 *   starts a job run, waits for its final state, and writes a manifest of the output parts.
 * Then it notifies once (counts, the first rows, a link, the workbook when the output has at most
 * 100,000 rows) and ends the run SUCCEEDED; cleanup follows as the next job.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline as pipe } from 'node:stream/promises';
import Papa from 'papaparse';
import { EMRServerlessClient } from '@aws-sdk/client-emr-serverless';
import { requireShape, type DatasetPipelineConfig } from '../../runtime/config/schema';
import { datasetKeys, type DatasetRunInfo, type MergeCounts } from '../../runtime/dataset-run';
import { EnvironmentError, InputError } from '../../runtime/errors';
import { moveRun, succeed } from '../../runtime/lifecycle';
import { LOG_EVENTS } from '../../runtime/log';
import type { RunRecord } from '../../runtime/model';
import type { MailAttachment } from '../../runtime/ports';
import { layoutFromBytes, readLayout } from '../engines/delimited-header';
import { containerMemoryBytes, duckdbMemoryLimit, runDuckdbMerge } from '../engines/duckdb-merge';
import { EmrServerlessSpark, SPARK_RUNNER_PY } from '../engines/emr-serverless';
import { planMerge, type InputLayout, type MergePlan } from '../engines/merge-plan';
import { sparkMergeScript } from '../engines/spark-sql';
import { createResultWorkbook } from '../workbook/result-workbook';
import { nowOf, type StageContext } from './context';
import { mergeResultMail, PREVIEW_ROWS } from './merge-mail';

/** Outputs up to this many rows are also sent as a workbook. */
export const WORKBOOK_MAX_ROWS = 100_000;
const XLSX_TYPE = 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';

export interface MergeStageOptions {
  /** The EMR Serverless adapter (tests give one with a capturing client). @default - built from the environment */
  spark?: EmrServerlessSpark;
}

export interface MergeStageResult {
  counts: MergeCounts;
  outputKeys: string[];
  emailed: 'sent' | 'already-sent';
}

export async function runMerge(ctx: StageContext, opts: MergeStageOptions = {}): Promise<MergeStageResult> {
  const run = await ctx.table.getRun(ctx.runId);
  if (!run?.config) throw new Error(`run ${ctx.runId} does not exist in the run table, or has no pipeline`);
  const pipeline = requireShape(run.config, 'dataset');
  const dataset = run.dataset;
  const leftKey = dataset?.inputs.left;
  const rightKey = dataset?.inputs.right;
  if (!dataset || !leftKey || !rightKey) throw new Error(`run ${ctx.runId} has no complete batch of inputs to merge`);
  if (run.status === 'FAILED' || run.status === 'SUCCEEDED')
    throw new Error(`run ${ctx.runId} has ended (${run.status}); nothing to merge`);
  const log = ctx.log.child({ runId: ctx.runId, pipeline: run.pipeline, batch: dataset.batch, engine: pipeline.engine });
  await moveRun(ctx.table, ctx.runId, 'RUNNING_ENGINE', { from: ['STARTED', 'RUNNING_ENGINE'] });

  const tmp = await mkdtemp(join(ctx.tmpDir, 'merge-'));
  try {
    let merged: Merged;
    try {
      merged =
        pipeline.engine === 'duckdb'
          ? await mergeOnDuckdb(ctx, run, pipeline, dataset, tmp)
          : await mergeOnSpark(ctx, run, pipeline, dataset, tmp, opts.spark ?? sparkFromEnv(ctx));
    } catch (err) {
      throw err instanceof InputError ? new InputError(`${err.message}\n${batchAdvice(run.pipeline, dataset)}`, err.location) : err;
    }
    const { counts, outputKeys, preview } = merged;
    const rowCounts = {
      rows: counts.leftRows + counts.rightRows,
      items: counts.outputRows,
      succeeded: counts.outputRows,
      failed: 0,
      chunks: 0,
      retries: 0,
    };
    await ctx.table.updateRun(ctx.runId, {
      dataset: { ...dataset, counts, outputKeys, ...(merged.engineRunId ? { engineRunId: merged.engineRunId } : {}) },
      counts: rowCounts,
      resultKey: outputKeys[0],
      extraResultKeys: outputKeys.slice(1),
    });
    log.info('merge done', { ...counts, outputKeys });

    // Notify once: a retried job (the mail went out, then the host was reclaimed) sends nothing twice.
    let emailed: MergeStageResult['emailed'] = 'already-sent';
    const finishedAt = nowOf(ctx);
    if (await ctx.table.claimStep(ctx.runId, 'result-email', String(finishedAt))) {
      try {
        const link = await ctx.store.presignGet(outputKeys[0]!, ctx.resultLinkDays * 86_400);
        const mail = mergeResultMail({
          run: { ...run, finishedAt },
          pipeline,
          dataset,
          counts,
          preview,
          outputKeys,
          bucket: ctx.store.bucket,
          link,
          attachment: merged.workbook?.attachment,
          noWorkbook: merged.workbook?.attachment ? undefined : merged.noWorkbook,
        });
        await sendFitting(ctx, mail);
        emailed = 'sent';
      } catch (err) {
        await ctx.table.releaseStep(ctx.runId, 'result-email');
        throw err;
      }
    }
    await succeed(ctx.table, ctx.runId, finishedAt);
    log.info(LOG_EVENTS.runSucceeded, { outputRows: counts.outputRows, emailed });
    return { counts, outputKeys, emailed };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** What a person does after bad input: a batch folder runs once, so the fixed files go to a new one; what was ignored. */
function batchAdvice(pipeline: string, d: DatasetRunInfo): string {
  const lines = [`Upload the corrected files into a new batch folder, intake/${pipeline}/<new batch name>/ (batch ${d.batch} has run).`];
  if (d.ignored.length > 0)
    lines.push(`Ignored in batch ${d.batch} (not an input of this pipeline): ${d.ignored.map(fileName).join(', ')}.`);
  return lines.join('\n');
}

/** Sends the mail; when the workbook makes it too large, sends it without (the link stays). */
async function sendFitting(ctx: StageContext, mail: ReturnType<typeof mergeResultMail>): Promise<void> {
  const size = mail.attachments?.reduce((n, a) => n + a.content.length, 0) ?? 0;
  const fits = size * 1.37 + 256 * 1024 < ctx.mailer.maxMessageBytes;
  if (mail.attachments && fits) {
    try {
      await ctx.mailer.send(mail);
      return;
    } catch (err) {
      if (!(err instanceof Error && err.name === 'MessageTooLargeError')) throw err;
    }
  }
  const note = mail.attachments ? '\n\n(The workbook was too large to attach; use the link.)' : '';
  await ctx.mailer.send({ ...mail, attachments: undefined, text: mail.text + note });
}

interface Merged {
  counts: MergeCounts;
  outputKeys: string[];
  preview: { header: string[]; rows: string[][] };
  workbook?: { attachment: MailAttachment };
  noWorkbook?: string;
  /** The Spark job run. */
  engineRunId?: string;
}

const fileName = (key: string) => key.split('/').pop() ?? key;

function memoryLimitBytes(ctx: StageContext): number {
  const mib = ctx.env.FANOUT_MERGE_MEMORY_MIB;
  return mib !== undefined ? mib * 1024 * 1024 : duckdbMemoryLimit(containerMemoryBytes());
}

async function mergeOnDuckdb(ctx: StageContext, run: RunRecord, p: DatasetPipelineConfig, d: DatasetRunInfo, tmp: string): Promise<Merged> {
  const leftKey = d.inputs.left!;
  const rightKey = d.inputs.right!;
  const leftPath = join(tmp, 'left.input');
  const rightPath = join(tmp, 'right.input');
  // Both inputs at once, streamed to local disk (DuckDB reads local files; no httpfs download).
  await Promise.all([
    ctx.store.getStream(leftKey).then((s) => pipe(s, createWriteStream(leftPath))),
    ctx.store.getStream(rightKey).then((s) => pipe(s, createWriteStream(rightPath))),
  ]);
  const plan = planMerge(
    p.merge,
    await readLayout(leftPath, fileName(leftKey), 'left', p.merge),
    await readLayout(rightPath, fileName(rightKey), 'right', p.merge),
  );
  const ext = p.merge.output.format;
  const outPath = join(tmp, `${p.merge.output.name}.${ext}`);
  await mkdir(join(tmp, 'spill'), { recursive: true });
  const threads = ctx.env.FANOUT_MERGE_THREADS;
  const memory = memoryLimitBytes(ctx);
  ctx.log.info('merging on DuckDB', {
    memoryLimitMiB: Math.round(memory / 1048576),
    threads: threads ?? 'auto',
    left: leftKey,
    right: rightKey,
  });
  const { counts, timings } = await runDuckdbMerge({
    plan,
    leftPath,
    rightPath,
    outPath,
    memoryLimitBytes: memory,
    tempDir: join(tmp, 'spill'),
    threads,
  });
  ctx.log.info('DuckDB merge finished', { ...timings, outputBytes: (await stat(outPath)).size });
  const outKey = datasetKeys.output(run.pipeline, d.batch, p.merge.output.name, ext);
  await ctx.store.put(outKey, createReadStream(outPath), {
    contentType: ext === 'csv' ? 'text/csv; charset=utf-8' : 'text/tab-separated-values; charset=utf-8',
  });
  const delimiter = plan.outputDelimiter;
  const preview = await readPreview([() => createReadStream(outPath)], delimiter);
  const outputKeys = [outKey];
  const wb = await maybeWorkbook(ctx, run, p, d, plan, counts, tmp, [() => createReadStream(outPath)], outputKeys);
  return { counts, outputKeys, preview, ...wb };
}

/** Opens one output file (or part) when it is its turn. */
type Opener = () => Readable | Promise<Readable>;

/** Header and first rows of the output (parts read in order, each with its own header). */
async function readPreview(streams: Opener[], delimiter: string): Promise<{ header: string[]; rows: string[][] }> {
  let header: string[] = [];
  const rows: string[][] = [];
  for await (const row of csvRows(streams, delimiter)) {
    if (row.header) header = row.values;
    else rows.push(row.values);
    if (rows.length >= PREVIEW_ROWS) break;
  }
  return { header, rows };
}

/** The rows of delimited files (a header line each), in order: `{header: true}` for the first file's header. */
async function* csvRows(streams: Opener[], delimiter: string): AsyncGenerator<{ header: boolean; values: string[] }> {
  for (const [n, openStream] of streams.entries()) {
    const stream = await openStream();
    const parser = Papa.parse(Papa.NODE_STREAM_INPUT, { delimiter, skipEmptyLines: true });
    const parsing = stream.pipe(parser);
    let first = true;
    try {
      for await (const values of parsing as AsyncIterable<string[]>) {
        if (first) {
          first = false;
          if (n === 0) yield { header: true, values };
          continue;
        }
        yield { header: false, values };
      }
    } finally {
      stream.destroy();
      parser.destroy();
    }
  }
}

/** The output as a workbook (formula-safe: every value a text cell), when it has at most WORKBOOK_MAX_ROWS rows. */
async function maybeWorkbook(
  ctx: StageContext,
  run: RunRecord,
  p: DatasetPipelineConfig,
  d: DatasetRunInfo,
  plan: MergePlan,
  counts: MergeCounts,
  tmp: string,
  files: Opener[],
  outputKeys: string[],
): Promise<Pick<Merged, 'workbook' | 'noWorkbook'>> {
  if (counts.outputRows > WORKBOOK_MAX_ROWS) {
    return {
      noWorkbook: `The output has ${counts.outputRows.toLocaleString('en-US')} rows, more than the ${WORKBOOK_MAX_ROWS.toLocaleString('en-US')} sent as a workbook.`,
    };
  }
  const wbDir = join(tmp, 'workbook');
  await mkdir(wbDir, { recursive: true });
  const workbook = await createResultWorkbook({
    dir: wbDir,
    baseName: p.merge.output.name,
    results: plan.output.map((c) => ({ name: c.name, type: 'text' as const })),
    errors: [{ name: 'Ignored file', type: 'text' }],
    expectedRows: { results: counts.outputRows, errors: d.ignored.length, items: 0 },
  });
  try {
    for await (const row of csvRows(files, plan.outputDelimiter)) {
      if (!row.header) await workbook.addResult(row.values);
    }
    for (const key of d.ignored) await workbook.addError([key]);
  } catch (err) {
    await workbook.abort();
    throw err;
  }
  const written = await workbook.finish([
    ['Run ID', run.runId],
    ['Pipeline', run.pipeline],
    ['Batch', d.batch],
    ['Left input', d.inputs.left ?? null],
    ['Right input', d.inputs.right ?? null],
    ['Join', p.merge.how],
    ['Engine', p.engine],
    ['Left rows', counts.leftRows],
    ['Right rows', counts.rightRows],
    ['Output rows', counts.outputRows],
    ['Left rows without a match', counts.leftUnmatched],
    ['Right rows without a match', counts.rightUnmatched],
    ['Keys duplicated on both sides', counts.keysDuplicatedBothSides],
  ]);
  const key = datasetKeys.workbook(run.pipeline, d.batch, p.merge.output.name);
  await ctx.store.put(key, createReadStream(written.workbookPath), { contentType: XLSX_TYPE });
  outputKeys.push(key);
  const content = await readFile(written.workbookPath);
  return { workbook: { attachment: { filename: `${p.merge.output.name}.xlsx`, content, contentType: XLSX_TYPE } } };
}

function sparkFromEnv(ctx: StageContext): EmrServerlessSpark {
  const applicationId = ctx.env.FANOUT_EMR_APPLICATION_ID;
  const executionRoleArn = ctx.env.FANOUT_EMR_JOB_ROLE_ARN;
  if (!applicationId || !executionRoleArn) {
    throw new EnvironmentError(
      `environment variables FANOUT_EMR_APPLICATION_ID and FANOUT_EMR_JOB_ROLE_ARN must be set for an emr-serverless merge (the CDK app sets them; a local run cannot run Spark)`,
    );
  }
  const region = ctx.env.AWS_REGION;
  return new EmrServerlessSpark(new EMRServerlessClient(region ? { region } : {}), {
    applicationId,
    executionRoleArn,
    logUri: `s3://${ctx.store.bucket}/${datasetKeys.sparkLogs(ctx.runId)}`,
  });
}

/** Reads the first bytes of an object (the header row) without downloading all of it. */
async function headBytes(ctx: StageContext, key: string, max = 1024 * 1024): Promise<{ bytes: Buffer; total: number }> {
  const info = await ctx.store.head(key);
  const stream = await ctx.store.getStream(key);
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      n += chunk.length;
      if (n >= max) break;
    }
  } finally {
    stream.destroy();
  }
  const bytes = Buffer.concat(chunks).subarray(0, max);
  return { bytes, total: info?.size ?? bytes.length };
}

async function mergeOnSpark(
  ctx: StageContext,
  run: RunRecord,
  p: DatasetPipelineConfig,
  d: DatasetRunInfo,
  tmp: string,
  spark: EmrServerlessSpark,
): Promise<Merged> {
  const s3 = (key: string) => `s3://${ctx.store.bucket}/${key}`;
  const layouts: InputLayout[] = [];
  for (const role of ['left', 'right'] as const) {
    const key = d.inputs[role]!;
    const { bytes, total } = await headBytes(ctx, key);
    layouts.push(layoutFromBytes(bytes, total, fileName(key), role, p.merge));
  }
  const plan = planMerge(p.merge, layouts[0]!, layouts[1]!);
  const partsPrefix = datasetKeys.outputParts(run.pipeline, d.batch, p.merge.output.name);
  const statsPrefix = datasetKeys.sparkStats(ctx.runId);
  const script = sparkMergeScript(plan, {
    left: s3(d.inputs.left!),
    right: s3(d.inputs.right!),
    output: s3(partsPrefix),
    stats: s3(statsPrefix),
  });
  await ctx.store.put(datasetKeys.sparkScript(ctx.runId), script, { contentType: 'text/plain; charset=utf-8' });
  await ctx.store.put(datasetKeys.sparkRunner(ctx.runId), SPARK_RUNNER_PY, { contentType: 'text/x-python; charset=utf-8' });
  const jobRunId =
    d.engineRunId ??
    (await spark.start({
      name: `batch-fanout ${run.pipeline} ${d.batch}`,
      clientToken: ctx.runId.slice(0, 64),
      entryPoint: s3(datasetKeys.sparkRunner(ctx.runId)),
      entryPointArguments: [s3(datasetKeys.sparkScript(ctx.runId))],
      tags: { 'batch-fanout:run': ctx.runId, 'batch-fanout:pipeline': run.pipeline },
    }));
  await ctx.table.updateRun(ctx.runId, { dataset: { ...d, engineRunId: jobRunId } });
  ctx.log.info('Spark job run started; waiting for its final state', { jobRunId });
  const outcome = await spark.wait(jobRunId, ctx.signal, (state) => ctx.log.debug('Spark job run state', { jobRunId, state }));
  if (outcome.state !== 'SUCCESS') {
    // A malformed row makes Spark's FAILFAST reader fail the job: the details name it.
    const malformed = /Malformed|FAILFAST|MALFORMED/i.test(outcome.details);
    const reason = `the Spark job run ${jobRunId} ended ${outcome.state}: ${outcome.details || 'no details'} (logs: ${s3(datasetKeys.sparkLogs(ctx.runId))})`;
    if (malformed) throw new InputError(`An input has a malformed row (FAILFAST): ${reason}`);
    throw new Error(reason);
  }
  // Statistics: one JSON line, in the one part file of the stats folder.
  let stats: Record<string, unknown> | undefined;
  for await (const o of ctx.store.list(statsPrefix)) {
    if (!/part-.*\.json$/.test(o.key)) continue;
    const line = (await ctx.store.getBytes(o.key)).toString('utf8').trim();
    if (line) stats = JSON.parse(line.split('\n')[0]!) as Record<string, unknown>;
  }
  if (!stats) throw new Error(`the Spark job run ${jobRunId} wrote no statistics under ${s3(statsPrefix)}`);
  const parts: { key: string; size: number }[] = [];
  for await (const o of ctx.store.list(partsPrefix)) if (/part-[^/]*$/.test(o.key)) parts.push({ key: o.key, size: o.size });
  const num = (k: string) => Number(stats[k] ?? 0);
  const counts: MergeCounts = {
    leftRows: num('left_rows'),
    rightRows: num('right_rows'),
    outputRows:
      num('matched_pairs') +
      (p.merge.how === 'left' || p.merge.how === 'full' ? num('left_unmatched') : 0) +
      (p.merge.how === 'right' || p.merge.how === 'full' ? num('right_unmatched') : 0),
    leftUnmatched: num('left_unmatched'),
    rightUnmatched: num('right_unmatched'),
    keysDuplicatedBothSides: num('keys_duplicated_both_sides'),
    leftEmptyKeys: num('left_empty_keys'),
    rightEmptyKeys: num('right_empty_keys'),
  };
  const manifestKey = datasetKeys.manifest(run.pipeline, d.batch, p.merge.output.name);
  const manifest = {
    runId: ctx.runId,
    engine: 'emr-serverless',
    jobRunId,
    format: p.merge.output.format,
    headerInEachPart: true,
    columns: plan.output.map((c) => c.name),
    rows: counts.outputRows,
    parts: parts.map((x) => ({ key: x.key, bytes: x.size })),
  };
  await ctx.store.put(manifestKey, JSON.stringify(manifest, null, 2), { contentType: 'application/json' });
  const files: Opener[] = parts.map((x) => () => ctx.store.getStream(x.key));
  const preview = await readPreview(files, plan.outputDelimiter);
  const outputKeys = [manifestKey];
  const wb = await maybeWorkbook(ctx, run, p, d, plan, counts, tmp, files, outputKeys);
  return { counts, outputKeys, preview, ...wb, engineRunId: jobRunId };
}
