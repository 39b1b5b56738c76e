/**
 * fan-out: one child per chunk. Runs the pipeline's task for every item of its chunk with many
 * requests in flight, retrying transient failures with back-off, and writes outcomes as result
 * parts every few hundred items or seconds, with the chunk's progress in the run table.
 * A child started again resumes from its parts: items with an outcome are not called again.
 * Exit 0 when every item has an outcome; infrastructure failures throw (non-zero exit).
 */
import { ConfigError, maxInFlight, type FilesPipelineConfig, type ItemsPipelineConfig } from '../../runtime/config/schema';
import { errorMessage, TerminatedError } from '../../runtime/errors';
import { LOG_EVENTS } from '../../runtime/log';
import { keys, type ResultLine, type WorkItem } from '../../runtime/model';
import { forEachConcurrent } from '../../runtime/pool';
import { RateLimiter } from '../http/rate-limit';
import { isBackPressure, SourceGuard } from '../http/source-guard';
import { forEachJsonl, readJsonl, toJsonl } from '../records/jsonl';
import { backoffDelayMs, runWithRetry, type BackPressurePolicy, type RetryOutcome } from '../../runtime/retry';
import type { Task, TaskResult } from '../tasks/task';
import { nowOf, type StageContext } from './context';
import { FleetMember } from './fleet';

export interface FanoutOptions {
  /** Builds the pipeline's task (tests may pass their own). */
  createTask: (pipeline: ItemsPipelineConfig) => Task;
  /** Builds a files pipeline's per-file task (batch-jobs/stages/files-shape.ts). @default - files pipelines are refused */
  createFileTask?: (pipeline: FilesPipelineConfig) => Task;
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
    await forEachJsonl<ResultLine>(stream, obj.key, (line) => outcomes.set(line.i, line));
  }
  return { outcomes, lastPart };
}

export async function runFanout(ctx: StageContext, opts: FanoutOptions): Promise<FanoutResult> {
  const chunk = ctx.arrayIndex;
  const run = await ctx.table.getRun(ctx.runId);
  if (!run?.config) throw new Error(`run ${ctx.runId} does not exist in the run table, or has no pipeline`);
  // Items and files (one file per work item) fan out the same way.
  const config = run.config;
  if (config.shape === 'dataset') throw new ConfigError(`pipeline ${config.name}`, ['a dataset pipeline has no fan-out']);
  // Items and files (one file per work item) fan out the same way; files: a fixed number in flight, no rate limit.
  const pipeline: Pick<ItemsPipelineConfig, 'name' | 'concurrency' | 'maxConcurrency' | 'rateLimitPerSecond' | 'retry'> =
    config.shape === 'items'
      ? config
      : {
          name: config.name,
          concurrency: config.concurrency,
          maxConcurrency: config.concurrency,
          rateLimitPerSecond: undefined,
          retry: { ...config.retry, maxWaitMs: 0 },
        };
  const chunkCount = run.counts?.chunks ?? 1;
  if (chunk >= chunkCount) throw new Error(`array index ${chunk} is past the run's ${chunkCount} chunk(s)`);
  const log = ctx.log.child({ runId: ctx.runId, chunk, attempt: ctx.attempt });

  let task: Task;
  if (config.shape === 'items') task = opts.createTask(config);
  else if (opts.createFileTask) task = opts.createFileTask(config);
  else throw new ConfigError(`pipeline ${config.name}`, ['this fan-out was started without a per-file task']);

  // Stops the work when a part cannot be saved or the fleet's share cannot be read: no new call
  // starts, calls in flight are cut, and the child fails with that error's exit code.
  const stop = new AbortController();
  let fatal: unknown;
  const stopWork = (err: unknown) => {
    if (fatal !== undefined) return;
    fatal = err;
    log.error('stopping: progress can no longer be saved', { error: errorMessage(err) });
    stop.abort(err);
  };
  const signal = AbortSignal.any([ctx.signal, stop.signal]);

  // The child joins its fleet first, so the wait for a share that counts it runs while the chunk is read.
  // Calls in flight toward the source (fixed, or adaptive with concurrency "auto"), and this
  // child's share of the fleet's rate and concurrency ceiling, kept through the run table.
  const guard = new SourceGuard({ mode: pipeline.concurrency === 'auto' ? 'auto' : 'fixed', max: maxInFlight(pipeline) });
  let limiter: RateLimiter | undefined;
  const fleet = new FleetMember({
    table: ctx.table,
    runId: ctx.runId,
    child: chunk,
    chunks: chunkCount,
    ratePerSecond: pipeline.rateLimitPerSecond,
    log,
    onShare: (share) => {
      log.info('fleet share', { ...share });
      guard.setCeiling(share.concurrency);
      if (share.ratePerSecond === undefined) {
        // No rate any more: let anyone waiting on the old one go.
        limiter?.setRate(Number.MAX_SAFE_INTEGER);
        limiter = undefined;
      } else if (limiter) limiter.setRate(share.ratePerSecond);
      else limiter = new RateLimiter(share.ratePerSecond);
    },
  });
  const fleetDone = new AbortController();
  const fleetLoop = fleet.run(AbortSignal.any([signal, fleetDone.signal])).catch(stopWork);

  const items: WorkItem[] = [];
  let previous: Awaited<ReturnType<typeof readResultParts>>;
  let prior: Awaited<ReturnType<StageContext['table']['getChunk']>>;
  try {
    const key = keys.chunk(ctx.runId, chunk);
    await forEachJsonl<WorkItem>(await ctx.store.getStream(key), key, (item) => items.push(item));
    previous = await readResultParts(ctx, ctx.runId, chunk);
    prior = await ctx.table.getChunk(ctx.runId, chunk);
    await ctx.table.updateChunk(ctx.runId, chunk, { status: 'RUNNING', attempt: ctx.attempt, updatedAt: nowOf(ctx) });
  } catch (err) {
    fleetDone.abort();
    await fleetLoop;
    await fleet.leave().catch(() => undefined);
    await task.close?.().catch(() => undefined);
    throw err;
  }
  const todo = items.filter((it) => !previous.outcomes.has(it.i));
  let done = 0;
  let failed = 0;
  for (const line of previous.outcomes.values()) line.s === 'done' ? done++ : failed++;
  let retries = prior?.retries ?? 0;
  let part = previous.lastPart;
  const resumed = items.length - todo.length;
  log.info('fan-out child starting', { items: items.length, resumed, todo: todo.length, maxChildren: ctx.env.FANOUT_MAX_CHILDREN });

  const partItems = opts.partItems ?? 500;
  const partIntervalMs = opts.partIntervalMs ?? 5_000;
  let pending: ResultLine[] = [];
  let lastFlush = Date.now();
  let flushing: Promise<void> = Promise.resolve();
  // What was last reported, so each progress line carries only what is new (the metrics sum them).
  let reported = { done, failed, retries };
  // Lines handed to a part write that has not finished yet.
  let unsavedInParts = 0;
  const flush = (): Promise<void> => {
    if (pending.length === 0 || fatal !== undefined) return flushing;
    const lines = pending;
    pending = [];
    unsavedInParts += lines.length;
    lastFlush = Date.now();
    const number = ++part;
    const snapshot = { done, failed, retries };
    // Parts are written one after another so the table's progress never runs ahead of S3.
    flushing = flushing.then(async () => {
      try {
        await ctx.store.put(keys.resultPart(ctx.runId, chunk, number), toJsonl(lines), { contentType: 'application/x-ndjson' });
        await ctx.table.updateChunk(ctx.runId, chunk, { ...snapshot, lastPart: number, updatedAt: nowOf(ctx) });
      } catch (err) {
        stopWork(err);
        throw err;
      } finally {
        unsavedInParts -= lines.length;
      }
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
  // Progress for a terminal goes out at most four times a second, not once per item.
  let progressSent = -1;
  const sendProgress = () => {
    if (!ctx.progress || done + failed === progressSent) return;
    progressSent = done + failed;
    ctx.progress({ stage: 'fanout', index: chunk, done: progressSent, total: items.length });
  };
  const timer = setInterval(
    () => {
      if (Date.now() - lastFlush >= partIntervalMs) void flush().catch(() => undefined);
      sendProgress();
    },
    Math.min(partIntervalMs, 250),
  );
  let recorded = 0;
  const record = (line: ResultLine) => {
    line.s === 'done' ? done++ : failed++;
    pending.push(line);
    if (pending.length >= partItems) void flush().catch(() => undefined);
    opts.onOutcome?.(++recorded);
  };

  const backPressure: BackPressurePolicy | undefined =
    guard.mode === 'auto'
      ? {
          test: isBackPressure,
          maxWaitMs: pipeline.retry.maxWaitMs,
          // A Retry-After holds every call to the origin (the guard); without one, back off.
          delayMs: (err, refusals) => (err.retryAfterMs !== undefined ? 0 : backoffDelayMs(refusals, pipeline.retry)),
          now: () => performance.now(),
        }
      : undefined;
  const onRetry = () => {
    retries++;
  };

  const timed = guard.mode === 'auto';
  // One call of the task through the guard and the limiter (no closure per item: this runs thousands of times a second).
  const callOnce = async (item: WorkItem, attempt: number): Promise<TaskResult> => {
    if (signal.aborted || !guard.tryAcquire()) await guard.acquire(signal);
    let startedAt: number;
    try {
      if (limiter) await limiter.acquire(signal);
      startedAt = timed ? performance.now() : 0;
    } catch (err) {
      guard.release();
      throw err;
    }
    try {
      const result = await task.run(item, { attempt, signal });
      guard.succeeded(startedAt);
      return result;
    } catch (err) {
      guard.failed(startedAt, err);
      throw err;
    }
  };
  const retryOptions = { signal, onRetry, backPressure };

  try {
    await Promise.race([fleet.whenReady(), new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }))]);
    await forEachConcurrent(todo, maxInFlight(pipeline), async (item) => {
      // Storage back-pressure: while two parts' worth of outcomes are unsaved (a slow or failing
      // PUT), start nothing new; so a child whose PUT fails loses at most those two parts.
      while (unsavedInParts + pending.length >= 2 * partItems && !signal.aborted) await flushing.catch(() => undefined);
      if (signal.aborted) return;
      if (item.x && item.x.length > 0) {
        record({ i: item.i, s: 'failed', e: `invalid input: ${item.x.join('; ')}`, a: 0 });
        return;
      }
      let outcome: RetryOutcome<TaskResult>;
      try {
        outcome = await runWithRetry((attempt) => callOnce(item, attempt), pipeline.retry, retryOptions);
      } catch (err) {
        // Cut off by shutdown: not an outcome, the next attempt calls the item again.
        if (signal.aborted) return;
        throw err;
      }
      if (signal.aborted && !outcome.ok) return;
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
    fleetDone.abort();
    await fleetLoop;
    await fleet.leave().catch((err: unknown) => log.warn('leaving the fleet failed', { error: errorMessage(err) }));
    await task.close?.().catch((err: unknown) => log.warn('closing the task failed', { error: errorMessage(err) }));
    if (fatal === undefined) await flush().catch(() => undefined);
    sendProgress();
  }
  if (fatal !== undefined) throw fatal;
  if (ctx.signal.aborted) {
    throw new TerminatedError(
      `stopped by a termination signal after ${done + failed} of ${items.length} item(s); the next attempt resumes`,
    );
  }
  log.info('fan-out source guard', {
    concurrency: pipeline.concurrency,
    finalLimit: guard.limit,
    originPauses: guard.pauseCount,
    fleetLive: fleet.share.live,
  });
  await ctx.table.updateChunk(ctx.runId, chunk, { status: 'DONE', done, failed, retries, lastPart: part, updatedAt: nowOf(ctx) });
  const result = { chunk, items: items.length, resumed, done, failed, retries, parts: part + 1 };
  log.info(LOG_EVENTS.fanoutChildDone, { ...result });
  return result;
}
