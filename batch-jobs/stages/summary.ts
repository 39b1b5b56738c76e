/**
 * summary (the `files` shape's last job before cleanup, run by the consolidate job definition):
 * reads every file's outcome, chunk by chunk, into the summary workbook (file, status, bytes in
 * and out, output, error with its line and column), uploads it to `results/<pipeline>/`, emails
 * it with what list found worth saying (duplicate names that were numbered), and ends the run
 * SUCCEEDED. The converted files are already under `results/<pipeline>/<runId>/`.
 *
 * In partial mode (the fan-out failed for good) it delivers what was done with the failure email,
 * each file without an outcome listed as not processed.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { basename, join } from 'node:path';
import { requireShape } from '../../runtime/config/schema';
import { errorMessage } from '../../runtime/errors';
import { moveRun, once, succeed } from '../../runtime/lifecycle';
import { LOG_EVENTS } from '../../runtime/log';
import { failureSubject } from '../../runtime/mail/messages';
import { keys, type Cell, type ResultLine, type RunRecord } from '../../runtime/model';
import type { MailMessage } from '../../runtime/ports';
import { positionOf } from '../tasks/file-task';
import { FILE_FIELDS, fileRefOf } from '../tasks/file-items';
import { createResultWorkbook, type WorkbookColumn } from '../workbook/result-workbook';
import { nowOf, type StageContext } from './context';
import { readChunk, readResultParts } from './fanout';
import { filesKeys, type ListNotes } from './list';

const XLSX_TYPE = 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';

export interface SummaryResult {
  resultKey: string;
  succeeded: number;
  failed: number;
  bytesIn: number;
  bytesOut: number;
  emailed: 'attachment' | 'link' | 'already-sent';
}

const RESULT_COLUMNS: WorkbookColumn[] = [
  { name: 'File', type: 'text' },
  { name: 'Status', type: 'text' },
  { name: 'Bytes in', type: 'integer' },
  { name: 'Bytes out', type: 'integer' },
  { name: 'Output', type: 'text' },
  { name: 'Error', type: 'text' },
  { name: 'Line', type: 'integer' },
  { name: 'Column', type: 'integer' },
  { name: 'Attempts', type: 'integer' },
];
const ERROR_COLUMNS: WorkbookColumn[] = [
  { name: 'File', type: 'text' },
  { name: 'Error', type: 'text' },
  { name: 'Line', type: 'integer' },
  { name: 'Column', type: 'integer' },
];

const fmt = (n: number) => n.toLocaleString('en-US');

export interface FilesMailFacts {
  run: RunRecord;
  files: number;
  succeeded: number;
  failed: number;
  notProcessed: number;
  bytesIn: number;
  bytesOut: number;
  outputPrefix: string;
  bucket: string;
  renamed: Array<[string, string]>;
  /** The run failed: why (partial results). */
  reason?: string;
}

/** The summary email's text. */
export function filesMail(
  f: FilesMailFacts,
  delivery: { attachment?: MailMessage['attachments']; link?: { url: string; expiresAt: Date }; resultKey: string },
): MailMessage {
  const { run } = f;
  const lines = f.reason
    ? [
        `Your batch ${run.inputName} could not be converted completely by the ${run.pipeline} pipeline.`,
        '',
        'What went wrong:',
        ...f.reason.split('\n').map((l) => `  ${l}`),
        '',
      ]
    : [`Your batch ${run.inputName} has been converted by the ${run.pipeline} pipeline.`, ''];
  lines.push(
    `  Files:            ${fmt(f.files)}`,
    `  Converted:        ${fmt(f.succeeded)}`,
    `  Failed:           ${fmt(f.failed - f.notProcessed)}`,
    ...(f.notProcessed > 0 ? [`  Not processed:    ${fmt(f.notProcessed)}`] : []),
    `  Bytes in / out:   ${fmt(f.bytesIn)} / ${fmt(f.bytesOut)}`,
    `  Run id:           ${run.runId}`,
    '',
    `The converted files are stored under s3://${f.bucket}/${f.outputPrefix}, each at its path in the batch.`,
  );
  if (f.failed > 0)
    lines.push(`The "Errors" sheet lists each file that failed with the reason, and the line and column where there is one.`);
  if (f.renamed.length > 0) {
    lines.push('', `${fmt(f.renamed.length)} file name(s) appeared more than once in the batch; the later ones were numbered:`);
    for (const [from, to] of f.renamed.slice(0, 20)) lines.push(`  ${from} -> ${to}`);
    if (f.renamed.length > 20)
      lines.push(`  ... and ${fmt(f.renamed.length - 20)} more (the workbook lists every file under the name used)`);
  }
  lines.push('');
  if (delivery.attachment) lines.push(`The summary workbook is attached (${delivery.attachment[0]!.filename}).`);
  if (delivery.link) {
    lines.push(
      'The summary workbook is too large to attach; download it here:',
      delivery.link.url,
      `(the link works until ${delivery.link.expiresAt.toISOString()})`,
    );
  }
  lines.push('', `Stored as: s3://${f.bucket}/${delivery.resultKey}`);
  const state = f.failed > 0 ? `${fmt(f.succeeded)} converted, ${fmt(f.failed)} failed` : `all ${fmt(f.succeeded)} converted`;
  return {
    from: run.sender,
    to: run.config!.recipients,
    subject: f.reason
      ? `${failureSubject(run.pipeline, run.inputName)} - partial results: ${state}`
      : `[batch-fanout] ${run.pipeline}: ${run.inputName} - ${state}`,
    text: lines.join('\n'),
    attachments: delivery.attachment,
  };
}

export async function runSummary(ctx: StageContext): Promise<SummaryResult> {
  const run = await ctx.table.getRun(ctx.runId);
  if (!run?.config) throw new Error(`run ${ctx.runId} does not exist in the run table, or has no pipeline`);
  const pipeline = requireShape(run.config, 'files');
  const partial = ctx.env.FANOUT_PARTIAL === true;
  if (run.status === 'FAILED' && !partial) throw new Error(`run ${ctx.runId} has failed; nothing to summarise`);
  if (!partial) await moveRun(ctx.table, ctx.runId, 'CONSOLIDATING', { from: ['FANNING_OUT', 'CONSOLIDATING'] });
  const log = ctx.log.child({ runId: ctx.runId, pipeline: pipeline.name });
  const chunkCount = run.counts?.chunks ?? 0;
  const notes: ListNotes = await ctx.store
    .getBytes(filesKeys.notes(ctx.runId))
    .then((b) => JSON.parse(b.toString()) as ListNotes)
    .catch(() => ({ renamed: [] }));
  const tmp = await mkdtemp(join(ctx.tmpDir, 'summary-'));
  try {
    const resultKey = keys.result(run.pipeline, run.inputName, run.runId);
    const workbook = await createResultWorkbook({
      dir: tmp,
      baseName: basename(resultKey, '.xlsx'),
      results: RESULT_COLUMNS,
      errors: ERROR_COLUMNS,
      expectedRows: { results: run.counts?.items, errors: run.counts?.items },
    });
    let succeeded = 0;
    let failed = 0;
    let notProcessed = 0;
    let bytesIn = 0;
    let bytesOut = 0;
    try {
      for (let n = 0; n < chunkCount; n++) {
        const { outcomes } = await readResultParts(ctx, ctx.runId, n);
        for await (const item of readChunk(ctx, ctx.runId, n)) {
          const file = fileRefOf(item);
          let outcome: ResultLine | undefined = outcomes.get(item.i);
          if (!outcome) {
            notProcessed++;
            outcome = {
              i: item.i,
              s: 'failed',
              e: partial ? 'not processed: the run failed before this file had an outcome' : 'no outcome was recorded for this file',
              a: 0,
            };
          }
          const inBytes =
            typeof outcome.f?.[FILE_FIELDS.bytesIn] === 'number' ? (outcome.f[FILE_FIELDS.bytesIn] as number) : (file.size ?? null);
          const outBytes = typeof outcome.f?.[FILE_FIELDS.bytesOut] === 'number' ? (outcome.f[FILE_FIELDS.bytesOut] as number) : null;
          const at = outcome.e ? positionOf(outcome.e) : {};
          if (outcome.s === 'done') {
            succeeded++;
            bytesIn += inBytes ?? 0;
            bytesOut += outBytes ?? 0;
          } else failed++;
          const output = (outcome.f?.[FILE_FIELDS.output] as Cell | undefined) ?? null;
          await workbook.addResult([
            file.path,
            outcome.s,
            inBytes,
            outBytes,
            output,
            outcome.e ?? null,
            at.line ?? null,
            at.column ?? null,
            outcome.a,
          ]);
          if (outcome.s === 'failed') await workbook.addError([file.path, outcome.e ?? null, at.line ?? null, at.column ?? null]);
        }
        ctx.progress?.({ stage: 'summary', done: n + 1, total: chunkCount });
      }
    } catch (err) {
      await workbook.abort();
      throw err;
    }
    const finishedAt = nowOf(ctx);
    const chunkRecords = await ctx.table.getChunks(ctx.runId, chunkCount);
    const retries = chunkRecords.reduce((sum, c) => sum + (c.retries ?? 0), 0);
    const counts = { ...run.counts, succeeded, failed, retries };
    const outputPrefix = filesKeys.outputPrefix(run.pipeline, run.runId);
    const files = await workbook.finish([
      ['Run ID', run.runId],
      ['Pipeline', run.pipeline],
      ['Input', run.inputName],
      ['Input object', `s3://${ctx.store.bucket}/${run.inputKey}`],
      ['Outputs', `s3://${ctx.store.bucket}/${outputPrefix}`],
      ['Started', new Date(run.createdAt).toISOString()],
      ['Finished', new Date(finishedAt).toISOString()],
      ['Files', counts.items ?? null],
      ['Converted', succeeded],
      ['Failed', failed],
      ['Bytes in (converted)', bytesIn],
      ['Bytes out', bytesOut],
      ['Duplicate names numbered', notes.renamed.length],
      ['Retried calls', retries],
    ]);
    await ctx.store.put(resultKey, createReadStream(files.workbookPath), { contentType: XLSX_TYPE });
    await ctx.table.updateRun(ctx.runId, { counts, resultKey, extraResultKeys: [] });

    const facts: FilesMailFacts = {
      run: { ...run, counts, finishedAt },
      files: counts.items ?? succeeded + failed,
      succeeded,
      failed,
      notProcessed,
      bytesIn,
      bytesOut,
      outputPrefix,
      bucket: ctx.store.bucket,
      renamed: notes.renamed,
      reason: partial ? (run.error ?? 'the fan-out failed') : undefined,
    };
    const sent = await once(ctx.table, ctx.runId, partial ? 'failure-email' : 'result-email', String(finishedAt), async () => {
      const size = (await stat(files.workbookPath)).size;
      if (size * 1.37 + 64 * 1024 < ctx.mailer.maxMessageBytes) {
        const attachment = [{ filename: basename(resultKey), content: await readFile(files.workbookPath), contentType: XLSX_TYPE }];
        await ctx.mailer.send(filesMail(facts, { attachment, resultKey }));
        return 'attachment' as const;
      }
      const link = await ctx.store.presignGet(resultKey, ctx.resultLinkDays * 86_400);
      await ctx.mailer.send(filesMail(facts, { link, resultKey }));
      return 'link' as const;
    });
    const emailed = sent.claimed ? sent.value : 'already-sent';
    if (!partial) await succeed(ctx.table, ctx.runId, finishedAt);
    log.info(partial ? 'partial summary delivered' : LOG_EVENTS.runSucceeded, { succeeded, failed, notProcessed, resultKey, emailed });
    return { resultKey, succeeded, failed, bytesIn, bytesOut, emailed };
  } catch (err) {
    log.error('summary failed', { error: errorMessage(err) });
    throw err;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
