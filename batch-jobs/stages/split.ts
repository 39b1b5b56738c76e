/**
 * split: streams the uploaded file, validates it against the pipeline's schema, forms work
 * items and writes chunk files of at most `chunkSize` items, records the chunks in the run table,
 * and announces "split done". Bad input ends the run FAILED with a reason naming file, sheet,
 * row and column (exit code BAD_INPUT, which Batch does not retry).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { MAX_ARRAY_SIZE, requireShape } from '../../runtime/config/schema';
import { InputError } from '../../runtime/errors';
import { isTerminal, moveRun, pendingChunk } from '../../runtime/lifecycle';
import { keys, type ChunkRecord } from '../../runtime/model';
import { writeChunks } from '../records/chunker';
import { openRecords } from '../records/reader';
import { nowOf, type StageContext } from './context';

export interface SplitResult {
  rows: number;
  items: number;
  chunks: number;
  invalidItems: number;
}

export async function runSplit(ctx: StageContext): Promise<SplitResult> {
  const run = await ctx.table.getRun(ctx.runId);
  if (!run) throw new Error(`run ${ctx.runId} does not exist in the run table`);
  if (!run.config) throw new InputError(`the upload ${run.inputKey} names no pipeline`);
  if (isTerminal(run.status)) {
    ctx.log.info('run has ended; nothing to split', { status: run.status });
    return { rows: run.counts?.rows ?? 0, items: run.counts?.items ?? 0, chunks: run.counts?.chunks ?? 0, invalidItems: 0 };
  }
  const pipeline = requireShape(run.config, 'items');
  await moveRun(ctx.table, ctx.runId, 'SPLITTING');

  const input = await ctx.store.getStream(run.inputKey).catch((err: unknown) => {
    if (err instanceof Error && err.name === 'ObjectNotFoundError') {
      throw new InputError(
        `${run.inputName} is no longer in the bucket (it was deleted or replaced before it could be read). Upload it again.`,
        { file: run.inputName },
      );
    }
    throw err;
  });
  const source = await openRecords(input, {
    fileName: run.inputName,
    columns: pipeline.input.columns,
    sheet: pipeline.input.sheet,
    headerSearchRows: pipeline.input.headerSearchRows,
    limits: pipeline.input.limits,
  });
  const tmp = await mkdtemp(join(ctx.tmpDir, 'split-'));
  let result: SplitResult;
  try {
    let written = 0;
    result = await writeChunks(source.rows, {
      chunkSize: pipeline.chunkSize,
      maxChunks: MAX_ARRAY_SIZE,
      groupBy: pipeline.input.groupBy,
      tmpDir: tmp,
      writeChunk: async (n, body) => {
        await ctx.store.put(keys.chunk(ctx.runId, n), body, { contentType: 'application/x-ndjson' });
        written++;
        ctx.progress?.({ stage: 'split', done: written, total: 0 });
      },
    });
  } catch (err) {
    // The chunker does not know the file: say which one it is.
    if (err instanceof InputError && !err.location.file) {
      throw new InputError(`${run.inputName}: ${err.message}`, { ...err.location, file: run.inputName });
    }
    throw err;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  if (result.items === 0) {
    throw new InputError(
      `${run.inputName}${source.sheet ? `, sheet "${source.sheet}",` : ''} has a header row but no data rows. Add the rows to process and upload it again.`,
      { file: run.inputName, sheet: source.sheet },
    );
  }

  const now = nowOf(ctx);
  const chunks: ChunkRecord[] = [];
  for (let n = 0; n < result.chunks; n++) {
    chunks.push(pendingChunk(ctx.runId, n, Math.min(pipeline.chunkSize, result.items - n * pipeline.chunkSize), now));
  }
  await ctx.table.putChunks(chunks);
  await ctx.table.updateRun(ctx.runId, {
    counts: { rows: result.rows, items: result.items, chunks: result.chunks, succeeded: 0, failed: 0, retries: 0 },
    inputColumns: source.columns,
    ...(source.notes.length > 0 ? { inputNotes: source.notes } : {}),
    splitDoneAt: now,
  });
  await ctx.notifier.publishSplitDone({
    runId: ctx.runId,
    pipeline: pipeline.name,
    chunks: result.chunks,
    items: result.items,
  });
  ctx.log.info('split done', { ...result, kind: source.kind, sheet: source.sheet });
  return result;
}
