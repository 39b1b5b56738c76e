/**
 * consolidate: streams every item, chunk by chunk in input order, joined with its outcome, into
 * the result workbook (Results, Errors, an item sheet when the task has one, Summary); uploads it
 * to `results/<pipeline>/`; emails it (attached when it fits the mail service's limit, otherwise
 * as a presigned link); marks the run SUCCEEDED. Memory holds one chunk's outcomes at a time.
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { requireShape, type ColumnType } from '../../runtime/config/schema';
import { errorMessage } from '../../runtime/errors';
import { moveRun, once, succeed } from '../../runtime/lifecycle';
import { LOG_EVENTS } from '../../runtime/log';
import { partialResultMail, resultMail, type ResultMailOptions } from '../../runtime/mail/messages';
import type { MailMessage } from '../../runtime/ports';
import { keys, type Cell, type ResultLine, type RunRecord } from '../../runtime/model';
import { createResultWorkbook, distinctNames, type WorkbookColumn } from '../workbook/result-workbook';
import type { TaskOutputShape } from '../tasks/task';
import { nowOf, type StageContext } from './context';
import { runItems } from './consolidate-items';
import { createOutcomesArchive } from './outcomes-archive';

export interface ConsolidateOptions {
  describeOutput: (run: RunRecord) => TaskOutputShape;
}

export interface ConsolidateResult {
  resultKey: string;
  extraResultKeys: string[];
  succeeded: number;
  failed: number;
  retries: number;
  emailed: 'attachment' | 'link' | 'already-sent';
}

const XLSX_TYPE = 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';

export async function runConsolidate(ctx: StageContext, opts: ConsolidateOptions): Promise<ConsolidateResult> {
  const run = await ctx.table.getRun(ctx.runId);
  if (!run?.config) throw new Error(`run ${ctx.runId} does not exist in the run table, or has no pipeline`);
  const log = ctx.log.child({ runId: ctx.runId, pipeline: run.pipeline });
  // Partial mode: fan-out failed for good; deliver what was done with the failure email.
  const partial = ctx.env.FANOUT_PARTIAL === true;
  if (run.status === 'FAILED' && !partial) throw new Error(`run ${ctx.runId} has failed; nothing to consolidate`);
  const pipeline = requireShape(run.config, 'items');
  const chunkCount = run.counts?.chunks ?? 0;
  const shape = opts.describeOutput(run);
  const declared = new Map(pipeline.input.columns.map((c) => [c.name, c.type] as const));
  const inputColumns = run.inputColumns ?? pipeline.input.columns.map((c) => c.name);
  const inputCols: WorkbookColumn[] = inputColumns.map((name) => ({ name, type: declared.get(name) ?? 'text' }));
  // Result and run columns never share a header with an input column: `Status` beside an input `status` is `Status (result)`.
  const ours = distinctNames(inputColumns, [...shape.rowColumns.map((c) => c.name), 'Status', 'Error', 'Attempts']);
  const rowCols: WorkbookColumn[] = shape.rowColumns.map((c, j) => ({ name: ours[j]!, type: c.type }));
  const [statusName, errorName, attemptsName] = ours.slice(shape.rowColumns.length) as [string, string, string];
  const statusCols: WorkbookColumn[] = [
    { name: statusName, type: 'text' },
    { name: errorName, type: 'text' },
    { name: attemptsName, type: 'integer' },
  ];
  const ident = pipeline.input.groupBy ? [pipeline.input.groupBy] : inputColumns;
  const [rowsName, errorsErrorName, errorsAttemptsName] = distinctNames(ident, ['Rows', 'Error', 'Attempts']) as [string, string, string];
  const errorCols: WorkbookColumn[] = [
    { name: rowsName, type: 'text' },
    ...(pipeline.input.groupBy ? [{ name: pipeline.input.groupBy, type: 'text' as ColumnType }] : inputCols),
    { name: errorsErrorName, type: 'text' },
    { name: errorsAttemptsName, type: 'integer' },
  ];
  if (!partial) await moveRun(ctx.table, ctx.runId, 'CONSOLIDATING');

  const tmp = await mkdtemp(join(ctx.tmpDir, 'consolidate-'));
  try {
    const resultKey = keys.result(run.pipeline, run.inputName, run.runId);
    const baseName = basename(resultKey, '.xlsx');
    const workbook = await createResultWorkbook({
      dir: tmp,
      baseName,
      results: [...inputCols, ...rowCols, ...statusCols],
      errors: errorCols,
      itemSheet: shape.itemSheet
        ? {
            name: shape.itemSheet.name,
            columns: [
              { name: 'Rows', type: 'text' },
              ...shape.itemSheet.columns,
              ...statusCols.map((c, j) => ({ ...c, name: ['Status', 'Error', 'Attempts'][j]! })),
            ],
          }
        : undefined,
      // A cell cut to Excel's limit is noted in its row's Error column (Results, Errors; the item sheet's own).
      noteColumns: { results: errorName, errors: errorsErrorName, items: 'Error' },
      // Upper bounds: a sheet that fits gets no CSV copy.
      expectedRows: { results: run.counts?.rows, errors: run.counts?.items, items: run.counts?.items },
    });
    let succeeded = 0;
    let failed = 0;
    let missing = 0;
    let rowCount = 0;
    let itemCount = 0;
    // Every item with its outcome, kept after cleanup for `fanout redrive`.
    const archive = createOutcomesArchive(tmp);
    try {
      for await (const entry of runItems(ctx, run, chunkCount)) {
        const item = entry.item;
        let outcome: ResultLine | undefined = entry.outcome;
        itemCount++;
        rowCount += item.d.length;
        if (!outcome) {
          // Never drop a record silently: an item without an outcome is reported as failed.
          missing++;
          outcome = {
            i: item.i,
            s: 'failed',
            e: partial
              ? 'not processed: the run failed before this item had an outcome'
              : 'no outcome was recorded for this item (its fan-out child did not finish it)',
            a: 0,
          };
        }
        outcome.s === 'done' ? succeeded++ : failed++;
        await archive.add(item, outcome);
        // Item-level fields go on each row unless the task has its own item sheet for them.
        const itemFields = shape.itemSheet ? undefined : outcome.f;
        for (let j = 0; j < item.d.length; j++) {
          const row = item.d[j]!;
          const per = outcome.p?.[j];
          const values: Cell[] = inputColumns.map((c) => row[c] ?? null);
          for (const c of shape.rowColumns) values.push(per?.[c.name] ?? itemFields?.[c.name] ?? null);
          values.push(outcome.s, outcome.e ?? null, outcome.a);
          await workbook.addResult(values);
        }
        const rows = item.r.join(', ');
        if (outcome.s === 'failed') {
          const first = item.d[0] ?? {};
          const ident: Cell[] = pipeline.input.groupBy
            ? [item.k ?? (first[pipeline.input.groupBy] as Cell) ?? null]
            : inputColumns.map((c) => first[c] ?? null);
          await workbook.addError([rows, ...ident, outcome.e ?? null, outcome.a]);
        }
        if (shape.itemSheet) {
          const sheet = shape.itemSheet;
          await workbook.addItem([
            rows,
            ...sheet.columns.map((c) => outcome.f?.[c.name] ?? (c.name === sheet.keyColumn ? (item.k ?? null) : null)),
            outcome.s,
            outcome.e ?? null,
            outcome.a,
          ]);
        }
      }
    } catch (err) {
      archive.abort();
      await workbook.abort();
      throw err;
    }
    if (missing > 0) log.warn('items without an outcome were reported as failed', { missing });
    const chunkRecords = await ctx.table.getChunks(ctx.runId, chunkCount);
    const retries = chunkRecords.reduce((sum, c) => sum + (c.retries ?? 0), 0);
    const finishedAt = nowOf(ctx);
    // A redrive's workbook holds the whole first run, merged.
    const counts = { ...run.counts, succeeded, failed, retries, ...(run.redriveOf ? { rows: rowCount, items: itemCount } : {}) };
    const summary: Array<[string, Cell]> = [
      ['Run ID', run.runId],
      ...(run.redriveOf
        ? [['Redrive of', `run ${run.redriveOf}: its failed and not processed items were run again`] as [string, Cell]]
        : []),
      ['Pipeline', run.pipeline],
      ['Input file', run.inputName],
      ['Input object', `s3://${ctx.store.bucket}/${run.inputKey}`],
      ['Started', new Date(run.createdAt).toISOString()],
      ['Split done', run.splitDoneAt ? new Date(run.splitDoneAt).toISOString() : null],
      ['Finished', new Date(finishedAt).toISOString()],
      ['Duration (s)', Math.round((finishedAt - run.createdAt) / 100) / 10],
      ['Rows', counts.rows ?? null],
      ['Work items', counts.items ?? null],
      ['Chunks', chunkCount],
      ['Succeeded', succeeded],
      ['Failed', failed],
      ['Retried calls', retries],
      ...(run.inputNotes ?? []).map((note): [string, Cell] => ['Input note', note]),
    ];
    const files = await workbook.finish(summary);

    await ctx.store.put(resultKey, createReadStream(files.workbookPath), { contentType: XLSX_TYPE });
    const extraResultKeys: string[] = [];
    for (const csv of files.csvPaths) {
      const key = keys.resultFile(run.pipeline, basename(csv));
      await ctx.store.put(key, createReadStream(csv), { contentType: 'text/csv; charset=utf-8' });
      extraResultKeys.push(key);
    }
    const outcomesKey = await archive.finish(ctx.store, keys.outcomes(run.runId));
    const done: RunRecord = { ...run, counts, finishedAt, resultKey, extraResultKeys, outcomesKey };
    await ctx.table.updateRun(ctx.runId, { counts, resultKey, extraResultKeys, outcomesKey });

    const compose = partial
      ? (o: ResultMailOptions) => partialResultMail({ ...o, reason: run.error ?? 'fan-out failed', notProcessed: missing })
      : resultMail;
    const sent = await once(ctx.table, ctx.runId, partial ? 'failure-email' : 'result-email', String(finishedAt), () =>
      sendResult(ctx, done, compose, files.workbookPath, resultKey, [resultKey, ...extraResultKeys], files.truncatedSheets),
    );
    const emailed: ConsolidateResult['emailed'] = sent.claimed ? sent.value : 'already-sent';
    if (partial) {
      log.info('partial results delivered', { succeeded, failed, notProcessed: missing, resultKey, emailed });
      return { resultKey, extraResultKeys, succeeded, failed, retries, emailed };
    }
    await succeed(ctx.table, ctx.runId, finishedAt);
    log.info(LOG_EVENTS.runSucceeded, { succeeded, failed, retries, resultKey, emailed });
    return { resultKey, extraResultKeys, succeeded, failed, retries, emailed };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function sendResult(
  ctx: StageContext,
  run: RunRecord,
  compose: (o: ResultMailOptions) => MailMessage,
  workbookPath: string,
  resultKey: string,
  resultKeys: string[],
  truncatedSheets: string[],
): Promise<'attachment' | 'link'> {
  const to = run.config!.recipients;
  const size = (await stat(workbookPath)).size;
  const base = { run, to, resultKeys, bucket: ctx.store.bucket, truncatedSheets };
  // Base64 grows the attachment by a third; leave room for the text and headers.
  if (size * 1.37 + 64 * 1024 < ctx.mailer.maxMessageBytes && truncatedSheets.length === 0) {
    const content = await readFile(workbookPath);
    try {
      await ctx.mailer.send(compose({ ...base, attachment: { filename: basename(resultKey), content, contentType: XLSX_TYPE } }));
      return 'attachment';
    } catch (err) {
      if (!(err instanceof Error && err.name === 'MessageTooLargeError')) throw err;
      ctx.log.warn('result too large to attach; sending a link', { error: errorMessage(err) });
    }
  }
  const link = await ctx.store.presignGet(resultKey, ctx.resultLinkDays * 86_400);
  await ctx.mailer.send(compose({ ...base, link }));
  return 'link';
}
