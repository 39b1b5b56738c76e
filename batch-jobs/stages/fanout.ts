/**
 * fan-out: one child per chunk. Runs the pipeline's task for every item of its chunk with many
 * requests in flight, retrying transient failures with back-off, and writes outcomes as result
 * parts every few hundred items or seconds, with the chunk's progress in the run table.
 * A child started again resumes from its parts: items with an outcome are not called again.
 * Exit 0 when every item has an outcome; infrastructure failures throw (non-zero exit).
 */
import { requireShape, type ItemsPipelineConfig } from '../../runtime/config/schema';
import { errorMessage, TerminatedError } from '../../runtime/errors';
import { LOG_EVENTS } from '../../runtime/log';
import { keys, type ResultLine, type WorkItem } from '../../runtime/model';
import { forEachConcurrent } from '../../runtime/pool';
import { RateLimiter } from '../http/rate-limit';
import { readJsonl, toJsonl } from '../records/jsonl';
import { runWithRetry } from '../../runtime/retry';
import type { Task, TaskResult } from '../tasks/task';
import { nowOf, type StageContext } from './context';

export interface FanoutOptions {
  /** Builds the pipeline's task (tests may pass their own). */
  createTask: (pipeline: ItemsPipelineConfig) => Task;
  /** Outcomes per result part. @default 500 */
  partItems?: number;
  /** Longest time between two parts, in ms. @default 5000 */
  partIntervalMs?: number;
  /**
   * Called after each outcome this attempt records, with how many it has recorded so far (a test
   * hook: batch-jobs/stop-after-items.ts stops the child there). @default - none
   */
  onOutcome?: (recorded: number) => void;
}

export interface FanoutResult {
  chunk: number;
  items: number;
  /** Items whose outcome was already recorded by an earlier attempt. */
  resumed: number;
  done: number;
  failed: number;
  retries: number;
  parts: number;
}

/** The work items of chunk `n`, streamed in input order. */
export async function* readChunk(ctx: Pick<StageContext, 'store'>, runId: string, n: number): AsyncIterable<WorkItem> {
  const key = keys.chunk(runId, n);
  yield* readJsonl<WorkItem>(await ctx.store.getStream(key), key);
}

/** Reads the outcomes recorded so far for a chunk: item index -> last line, and the highest part number. */
export async function readResultParts(
  ctx: Pick<StageContext, 'store'>,
  runId: string,
  chunk: number,
): Promise<{ outcomes: Map<number, ResultLine>; lastPart: number }> {
  const outcomes = new Map<number, ResultLine>();
  let lastPart = -1;
  for await (const obj of ctx.store.list(keys.resultPartsPrefix(runId, chunk))) {
    const m = /(\d+)\.jsonl$/.exec(obj.key);
    if (!m) continue;
    lastPart = Math.max(lastPart, Number(m[1]));
    const stream = await ctx.store.getStream(obj.key);
    for await (const line of readJsonl<ResultLine>(stream, obj.key)) outcomes.set(line.i, line);
  }
  return { outcomes, lastPart };
}

export async function runFanout(ctx: StageContext, opts: FanoutOptions): Promise<FanoutResult> {
  const chunk = ctx.arrayIndex;
  const run = await ctx.table.getRun(ctx.runId);
  if (!run?.config) throw new Error(`run ${ctx.runId} does not exist in the run table, or has no pipeline`);
  const pipeline = requireShape(run.config, 'items');
  const chunkCount = run.counts?.chunks ?? 1;
  if (chunk >= chunkCount) throw new Error(`array index ${chunk} is past the run's ${chunkCount} chunk(s)`);
  const log = ctx.log.child({ runId: ctx.runId, chunk, attempt: ctx.attempt });

  const items: WorkItem[] = [];
  for await (const item of readChunk(ctx, ctx.runId, chunk)) items.push(item);
  const previous = await readResultParts(ctx, ctx.runId, chunk);
  const prior = await ctx.table.getChunk(ctx.runId, chunk);
  const todo = items.filter((it) => !previous.outcomes.has(it.i));
  let done = 0;
  let failed = 0;
  for (const line of previous.outcomes.values()) line.s === 'done' ? done++ : failed++;
  let retries = prior?.retries ?? 0;
  let part = previous.lastPart;
  const resumed = items.length - todo.length;
  log.info('fan-out child starting', { items: items.length, resumed, todo: todo.length });
  await ctx.table.updateChunk(ctx.runId, chunk, { status: 'RUNNING', attempt: ctx.attempt, updatedAt: nowOf(ctx) });

  const partItems = opts.partItems ?? 500;
  const partIntervalMs = opts.partIntervalMs ?? 5_000;
  let pending: ResultLine[] = [];
  let lastFlush = Date.now();
  let flushing: Promise<void> = Promise.resolve();
  // What was last reported, so each progress line carries only what is new (the metrics sum them).
  let reported = { done, failed, retries };
  const flush = (): Promise<void> => {
    if (pending.length === 0) return flushing;
    const lines = pending;
    pending = [];
    lastFlush = Date.now();
    const number = ++part;
    const snapshot = { done, failed, retries };
    // Parts are written one after another so the table's progress never runs ahead of S3.
    flushing = flushing.then(async () => {
      await ctx.store.put(keys.resultPart(ctx.runId, chunk, number), toJsonl(lines), { contentType: 'application/x-ndjson' });
      await ctx.table.updateChunk(ctx.runId, chunk, { ...snapshot, lastPart: number, updatedAt: nowOf(ctx) });
      log.info(LOG_EVENTS.fanoutProgress, {
        part: number,
        done: snapshot.done - reported.done,
        failed: snapshot.failed - reported.failed,
        retries: snapshot.retries - reported.retries,
      });
      reported = snapshot;
    });
    return flushing;
  };
  const timer = setInterval(() => {
    if (Date.now() - lastFlush >= partIntervalMs) void flush().catch(() => undefined);
  }, Math.min(partIntervalMs, 1_000));
  let recorded = 0;
  const record = (line: ResultLine) => {
    line.s === 'done' ? done++ : failed++;
    pending.push(line);
    ctx.progress?.({ stage: 'fanout', index: chunk, done: done + failed, total: items.length });
    if (pending.length >= partItems) void flush().catch(() => undefined);
    opts.onOutcome?.(++recorded);
  };

  // A fleet-wide rate limit is shared by the children that run at once: one per chunk, at most
  // as many as the queue's vCPUs allow (FANOUT_MAX_CHILDREN, set by the infrastructure).
  const maxChildren = ctx.env.FANOUT_MAX_CHILDREN ?? chunkCount;
  const limiter = pipeline.rateLimitPerSecond
    ? new RateLimiter(pipeline.rateLimitPerSecond / Math.max(1, Math.min(chunkCount, maxChildren)))
    : undefined;
  const task = opts.createTask(pipeline);
  try {
    await forEachConcurrent(todo, pipeline.concurrency, async (item) => {
      if (ctx.signal.aborted) return;
      if (item.x && item.x.length > 0) {
        record({ i: item.i, s: 'failed', e: `invalid input: ${item.x.join('; ')}`, a: 0 });
        return;
      }
      let outcome: Awaited<ReturnType<typeof runWithRetry<TaskResult>>>;
      try {
        outcome = await runWithRetry(
          async (attempt) => {
            if (limiter) await limiter.acquire(ctx.signal);
            return task.run(item, { attempt, signal: ctx.signal });
          },
          pipeline.retry,
          {
            signal: ctx.signal,
            onRetry: () => {
              retries++;
            },
          },
        );
      } catch (err) {
        // Cut off by shutdown: not an outcome, the next attempt calls the item again.
        if (ctx.signal.aborted) return;
        throw err;
      }
      if (ctx.signal.aborted && !outcome.ok) return;
      if (outcome.ok) {
        const line: ResultLine = { i: item.i, s: 'done', a: outcome.attempts };
        if (outcome.value.fields) line.f = outcome.value.fields;
        if (outcome.value.perRow) line.p = outcome.value.perRow;
        record(line);
      } else {
        record({ i: item.i, s: 'failed', e: outcome.error, a: outcome.attempts });
      }
    });
  } finally {
    clearInterval(timer);
    await task.close?.().catch((err: unknown) => log.warn('closing the task failed', { error: errorMessage(err) }));
    await flush();
  }
  if (ctx.signal.aborted) {
    throw new TerminatedError(`stopped by a termination signal after ${done + failed} of ${items.length} item(s); the next attempt resumes`);
  }
  await ctx.table.updateChunk(ctx.runId, chunk, { status: 'DONE', done, failed, retries, lastPart: part, updatedAt: nowOf(ctx) });
  const result = { chunk, items: items.length, resumed, done, failed, retries, parts: part + 1 };
  log.info(LOG_EVENTS.fanoutChildDone, { ...result });
  return result;
}
