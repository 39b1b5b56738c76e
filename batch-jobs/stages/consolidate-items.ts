/**
 * The items consolidate writes, each with its outcome (undefined when none was recorded), in
 * input order: a run's own chunks joined with its result parts, one chunk in memory at a time;
 * or, for a redrive (`fanout redrive`), the first run's kept items (outcomes archive) with the new
 * outcomes of the items this run called again. The new outcomes are held in memory: they are the
 * first run's failures only.
 */
import type { ResultLine, RunRecord, WorkItem } from '../../runtime/model';
import type { StageContext } from './context';
import { readChunk, readResultParts } from './fanout';
import { readOutcomesArchive } from './outcomes-archive';

export interface ItemWithOutcome {
  item: WorkItem;
  outcome: ResultLine | undefined;
}

export async function* runItems(ctx: StageContext, run: RunRecord, chunkCount: number): AsyncIterable<ItemWithOutcome> {
  if (run.redriveOf) {
    yield* redriveItems(ctx, run, chunkCount);
    return;
  }
  for (let n = 0; n < chunkCount; n++) {
    const { outcomes } = await readResultParts(ctx, run.runId, n);
    for await (const item of readChunk(ctx, run.runId, n)) yield { item, outcome: outcomes.get(item.i) };
    ctx.progress?.({ stage: 'consolidate', done: n + 1, total: chunkCount });
  }
}

async function* redriveItems(ctx: StageContext, run: RunRecord, chunkCount: number): AsyncIterable<ItemWithOutcome> {
  const original = await ctx.table.getRun(run.redriveOf!);
  if (!original?.outcomesKey) {
    throw new Error(
      `run ${run.runId} redrives run ${run.redriveOf}, which has no kept outcomes (its record expired, or it never consolidated)`,
    );
  }
  const redone = new Map<number, ResultLine | undefined>();
  for (let n = 0; n < chunkCount; n++) {
    const { outcomes } = await readResultParts(ctx, run.runId, n);
    for await (const item of readChunk(ctx, run.runId, n)) redone.set(item.i, outcomes.get(item.i));
  }
  let seen = 0;
  for await (const { o, ...item } of readOutcomesArchive(ctx.store, original.outcomesKey)) {
    yield { item, outcome: redone.has(item.i) ? redone.get(item.i) : o };
    if (++seen % 10_000 === 0) ctx.progress?.({ stage: 'consolidate', done: seen, total: original.counts?.items ?? seen });
  }
}
