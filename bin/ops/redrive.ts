/**
 * `fanout redrive <runId>`: runs again only the items of a finished run that failed or were not
 * processed, as a new run linked to the first (`redriveOf`). The CLI does split's part: it reads
 * the first run's kept outcomes (history/<runId>/outcomes.jsonl.gz), writes the chunk files of
 * the items to redo (their item numbers, rows and cells unchanged), records the chunks and
 * announces "split done" (SNS on AWS; in-process for a kept local run). From there the usual chain
 * runs; consolidate merges the first run's successes with the new outcomes, in input order, into
 * one workbook whose Summary names the first run. Items that failed on their own input cells are
 * not redone (the same cells would fail the same way): the message says to fix the file.
 */
import { createHash } from 'node:crypto';
import { requireShape } from '../../runtime/config/schema';
import { readOutcomesArchive } from '../../batch-jobs/stages/outcomes-archive';
import { toJsonl } from '../../batch-jobs/records/jsonl';
import { openRun, pendingChunk, TERMINAL_STATUSES } from '../../runtime/lifecycle';
import { keys, type ChunkRecord, type RunRecord, type WorkItem } from '../../runtime/model';
import type { ObjectStore, RunTable, SplitDoneNotifier } from '../../runtime/ports';
import { OpsError } from './ops-error';
import { requireRun } from './runs';

export interface RedrivePlan {
  original: RunRecord;
  /** Items that failed or were not processed, and will be called again. */
  redo: number;
  /** Items that failed on their input cells (not redone). */
  badInput: number;
}

/** Checks that the run can be redriven and counts what there is to redo. */
export async function planRedrive(store: ObjectStore, table: RunTable, runId: string, where: string): Promise<RedrivePlan> {
  const original = await requireRun(table, runId, where);
  if (!TERMINAL_STATUSES.includes(original.status)) {
    throw new OpsError(`run ${runId} is still ${original.status}; redrive it once it has ended (fanout status ${runId} --watch)`, 1);
  }
  if (!original.config) throw new OpsError(`run ${runId} names no pipeline (${original.inputKey}); there is nothing to run again`, 1);
  if (!original.outcomesKey) {
    throw new OpsError(
      `run ${runId} kept no outcomes (it ended before its results were written, or was made by an older version); upload the file again instead`,
      1,
    );
  }
  let redo = 0;
  let badInput = 0;
  for await (const a of readOutcomesArchive(store, original.outcomesKey)) {
    if (a.o.s === 'done') continue;
    if (a.x && a.x.length > 0) badInput++;
    else redo++;
  }
  return { original, redo, badInput };
}

/** The redrive's run id: the time and a hash of the first run's id (one a second per run). */
export function redriveRunId(originalRunId: string, now: number): string {
  const stamp = new Date(now)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `${stamp}-r${createHash('sha256').update(`redrive\n${originalRunId}`).digest('hex').slice(0, 9)}`;
}

/**
 * Days the first run's record was kept for (its TTL less its start), so that a redrive lives as long
 * as the run it completes: the deployed stack's `runRetentionDays`, without the CLI having to know
 * the config it was deployed with. Undefined for a record without a TTL.
 */
export function retentionDaysOf(run: RunRecord): number | undefined {
  if (run.expiresAt === undefined) return undefined;
  return Math.max(1, Math.round((run.expiresAt - run.createdAt / 1000) / 86_400));
}

/** Opens the redrive run, writes its chunks and announces them; answers the new run id. */
export async function startRedrive(
  ports: { store: ObjectStore; table: RunTable; notifier: SplitDoneNotifier },
  plan: RedrivePlan,
  opts: {
    now?: number;
    /** Days the redrive's record is kept. @default the first run's own retention, else `fallbackRetentionDays` */
    retentionDays?: number;
    /** Used when the first run's record has no TTL. */
    fallbackRetentionDays: number;
  },
): Promise<string> {
  const { original } = plan;
  const config = requireShape(original.config!, 'items');
  const now = opts.now ?? Date.now();
  const runId = redriveRunId(original.runId, now);
  const created = await openRun(ports.table, {
    runId,
    pipeline: original.pipeline,
    inputKey: original.inputKey,
    inputName: original.inputName,
    status: 'STARTED',
    config,
    sender: original.sender,
    inputColumns: original.inputColumns,
    createdAt: now,
    expiresAt: Math.floor(now / 1000) + (opts.retentionDays ?? retentionDaysOf(original) ?? opts.fallbackRetentionDays) * 86_400,
    redriveOf: original.runId,
    steps: { split: 'fanout redrive' },
  });
  if (!created)
    throw new OpsError(`a redrive of run ${original.runId} was started this very second (${runId}); wait and check fanout status`, 1);
  let chunk: WorkItem[] = [];
  let chunks = 0;
  let items = 0;
  const records: ChunkRecord[] = [];
  const flush = async () => {
    if (chunk.length === 0) return;
    await ports.store.put(keys.chunk(runId, chunks), toJsonl(chunk), { contentType: 'application/x-ndjson' });
    records.push(pendingChunk(runId, chunks, chunk.length, now));
    chunks++;
    chunk = [];
  };
  for await (const { o, ...item } of readOutcomesArchive(ports.store, original.outcomesKey!)) {
    if (o.s === 'done' || (item.x && item.x.length > 0)) continue;
    chunk.push(item);
    items++;
    if (chunk.length >= config.chunkSize) await flush();
  }
  await flush();
  await ports.table.putChunks(records);
  await ports.table.updateRun(runId, {
    // rows: the merged workbook's size (an upper bound for consolidate); items: those redone.
    counts: { rows: original.counts?.rows ?? items, items, chunks, succeeded: 0, failed: 0, retries: 0 },
    splitDoneAt: Date.now(),
  });
  await ports.notifier.publishSplitDone({ runId, pipeline: original.pipeline, chunks, items });
  return runId;
}
