/**
 * What the operating commands read and change in the run table: the recent runs, one run's
 * progress per stage and chunk (with calls/s and an ETA from two readings), its live limits
 * (`fanout limit`), and cancelling it (`fanout cancel`: the run ends CANCELLED, its jobs are
 * terminated with Batch's TerminateJob and CancelJob; the on-job-failed handler then delivers the
 * partial results and starts cleanup, as for a failed fan-out).
 */
import { CancelJobCommand, TerminateJobCommand, type BatchClient } from '@aws-sdk/client-batch';
import { ScanCommand, type DynamoDBDocumentClient, type ScanCommandOutput } from '@aws-sdk/lib-dynamodb';
import { failedCallMessage } from '../../runtime/adapters/sdk-errors';
import { maxInFlight } from '../../runtime/config/schema';
import { moveRun, TERMINAL_STATUSES, type RunStatus, type Step } from '../../runtime/lifecycle';
import type { ChunkRecord, RunLimits, RunRecord } from '../../runtime/model';
import type { RunTable } from '../../runtime/ports';
import { OpsError } from './ops-error';

/** Statuses in which a run's limits can change and it can be cancelled. */
export const RUNNING_STATUSES: RunStatus[] = ['STARTED', 'SPLITTING', 'FANNING_OUT'];

export interface RunSummary {
  runId: string;
  pipeline: string;
  input: string;
  status: RunStatus;
  items: number | null;
  succeeded: number | null;
  failed: number | null;
  chunks: number | null;
  startedAt: string;
  tookSeconds: number | null;
  redriveOf: string | null;
  error: string | null;
  resultKey: string | null;
  /** A merge batch WAITING_FOR_INPUTS: the inputs it still lacks, and when it fails if they do not come. */
  waitingFor: string[] | null;
  deadline: string | null;
}

export function summarise(run: RunRecord, now = Date.now()): RunSummary {
  const c = run.counts ?? {};
  const end = run.finishedAt ?? (TERMINAL_STATUSES.includes(run.status) ? undefined : now);
  return {
    runId: run.runId,
    pipeline: run.pipeline,
    input: run.inputName,
    status: run.status,
    items: c.items ?? null,
    succeeded: c.succeeded ?? null,
    failed: c.failed ?? null,
    chunks: c.chunks ?? null,
    startedAt: new Date(run.createdAt).toISOString(),
    tookSeconds: end === undefined ? null : Math.round((end - run.createdAt) / 100) / 10,
    redriveOf: run.redriveOf ?? null,
    error: run.error ?? null,
    resultKey: run.resultKey ?? null,
    waitingFor: run.status === 'WAITING_FOR_INPUTS' ? (run.dataset?.waitingFor ?? []) : null,
    deadline: run.status === 'WAITING_FOR_INPUTS' ? deadlineText(run) : null,
  };
}

function deadlineText(run: RunRecord): string | null {
  const at =
    run.dataset?.deadlineAt ?? (run.config?.shape === 'dataset' ? run.createdAt + run.config.inputDeadlineHours * 3_600_000 : undefined);
  return at === undefined ? null : new Date(at).toISOString();
}

/**
 * The most recent runs, newest first. The run table has no index by time: this scans it for run
 * items (`sk = RUN`, a projection of the fields shown), which reads the whole table once; the
 * table holds one item per run (kept `runRetentionDays`) and the chunks of the runs under way.
 */
export async function listRuns(doc: DynamoDBDocumentClient, tableName: string, last: number): Promise<RunRecord[]> {
  const runs: RunRecord[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    let res: ScanCommandOutput;
    try {
      res = await doc.send(
        new ScanCommand({
          TableName: tableName,
          FilterExpression: 'sk = :run',
          ExpressionAttributeValues: { ':run': 'RUN' },
          ProjectionExpression: 'runId, pipeline, inputName, #s, counts, createdAt, finishedAt, redriveOf, #e, resultKey, dataset',
          ExpressionAttributeNames: { '#s': 'status', '#e': 'error' },
          ExclusiveStartKey: start,
        }),
      );
    } catch (err) {
      throw new OpsError(failedCallMessage(`DynamoDB Scan of table ${tableName} (recent runs)`, err), 1);
    }
    for (const item of res.Items ?? []) runs.push(item as RunRecord);
    start = res.LastEvaluatedKey;
  } while (start);
  return runs.sort((a, b) => b.createdAt - a.createdAt).slice(0, last);
}

export async function requireRun(table: RunTable, runId: string, where: string): Promise<RunRecord> {
  const run = await table.getRun(runId);
  if (!run) throw new OpsError(`no run ${runId} in ${where} (fanout status lists the recent runs)`, 2);
  return run;
}

export type StageState = 'waiting' | 'running' | 'done' | 'failed' | 'cancelled' | 'skipped';

export interface RunDetail extends RunSummary {
  stages: { split: StageState; fanout: StageState; consolidate: StageState; cleanup: StageState };
  chunkProgress: Array<Pick<ChunkRecord, 'chunk' | 'items' | 'status' | 'done' | 'failed' | 'retries' | 'attempt'>>;
  /** Items with an outcome so far (chunks), or the run's counts once it ended. */
  itemsDone: number;
  itemsFailed: number;
  retries: number;
  /** Calls per second between the two readings (items with an outcome plus retried calls). */
  callsPerSecond: number | null;
  etaSeconds: number | null;
  limits: { ratePerSecond: number | null; concurrency: number | null; setBy: 'pipeline' | 'fanout limit' };
}

function stageStates(run: RunRecord, chunks: ChunkRecord[]): RunDetail['stages'] {
  const ended = TERMINAL_STATUSES.includes(run.status);
  const stopped: StageState = run.status === 'CANCELLED' ? 'cancelled' : 'failed';
  const split: StageState = run.splitDoneAt ? 'done' : ended ? stopped : run.steps?.split ? 'running' : 'waiting';
  const allDone = chunks.length > 0 && chunks.every((c) => c.status === 'DONE');
  const fanout: StageState =
    run.status === 'CONSOLIDATING' || run.status === 'SUCCEEDED' || allDone
      ? 'done'
      : ended
        ? run.splitDoneAt
          ? stopped
          : 'skipped'
        : run.status === 'FANNING_OUT'
          ? 'running'
          : 'waiting';
  const consolidate: StageState =
    run.status === 'SUCCEEDED' || (ended && run.resultKey)
      ? 'done'
      : run.status === 'CONSOLIDATING'
        ? 'running'
        : ended
          ? 'skipped'
          : 'waiting';
  const cleanup: StageState = run.cleanedAt ? 'done' : ended ? 'running' : 'waiting';
  return { split, fanout, consolidate, cleanup };
}

/** A reading of a run's calls so far (items with an outcome plus retried calls). */
export interface CallSample {
  at: number;
  calls: number;
}

/**
 * One run in detail. The call rate is measured between `previous` (a reading `--watch` made a few
 * seconds earlier) and now; without it, it is the average since fan-out started. Chunk progress
 * is written with each result part (every 500 items or 5 s), so rates over shorter spans jump.
 */
export async function runDetail(
  table: RunTable,
  runId: string,
  where: string,
  opts: { previous?: CallSample; now?: () => number } = {},
): Promise<RunDetail & { sample: CallSample }> {
  const now = opts.now ?? Date.now;
  const run = await requireRun(table, runId, where);
  const chunks = run.counts?.chunks && !run.cleanedAt ? await table.getChunks(runId, run.counts.chunks) : [];
  const callsOf = (cs: ChunkRecord[]) => cs.reduce((s, c) => s + c.done + c.failed + c.retries, 0);
  const at = now();
  const calls = callsOf(chunks);
  const previous = opts.previous ?? (run.splitDoneAt ? { at: run.splitDoneAt, calls: 0 } : undefined);
  const ended = TERMINAL_STATUSES.includes(run.status);
  const itemsDone = chunks.length > 0 ? chunks.reduce((s, c) => s + c.done, 0) : (run.counts?.succeeded ?? 0);
  const itemsFailed = chunks.length > 0 ? chunks.reduce((s, c) => s + c.failed, 0) : (run.counts?.failed ?? 0);
  const retries = chunks.length > 0 ? chunks.reduce((s, c) => s + c.retries, 0) : (run.counts?.retries ?? 0);
  const rate = previous && at > previous.at && !ended ? ((calls - previous.calls) * 1000) / (at - previous.at) : null;
  const itemRate = rate !== null && calls > 0 ? rate * ((itemsDone + itemsFailed) / calls) : null;
  const remaining = (run.counts?.items ?? 0) - itemsDone - itemsFailed;
  const config = run.config?.shape === 'items' ? run.config : undefined;
  return {
    ...summarise(run, at),
    stages: stageStates(run, chunks),
    chunkProgress: chunks.map(({ chunk, items, status, done, failed, retries: r, attempt }) => ({
      chunk,
      items,
      status,
      done,
      failed,
      retries: r,
      attempt,
    })),
    itemsDone,
    itemsFailed,
    retries,
    callsPerSecond: rate === null ? null : Math.round(rate * 10) / 10,
    etaSeconds: itemRate && itemRate > 0 && remaining > 0 ? Math.round(remaining / itemRate) : null,
    limits: {
      ratePerSecond: run.limits?.ratePerSecond ?? config?.rateLimitPerSecond ?? null,
      concurrency: run.limits?.concurrency ?? (config ? maxInFlight(config) * Math.max(1, run.counts?.chunks ?? 1) : null),
      setBy: run.limits ? 'fanout limit' : 'pipeline',
    },
    sample: { at, calls },
  };
}

/**
 * Sets a running run's fleet-wide limits with the fan-out's shared limiter (RunTable.setFleetLimit:
 * copied to every fleet shard); running fan-out children take them up at their next epoch.
 */
export async function setLimits(
  table: RunTable,
  runId: string,
  where: string,
  change: { ratePerSecond?: number; concurrency?: number },
  now = Date.now(),
): Promise<RunLimits> {
  const run = await requireRun(table, runId, where);
  if (!RUNNING_STATUSES.includes(run.status)) {
    throw new OpsError(`run ${runId} is ${run.status}: only a run that is splitting or fanning out takes new limits`, 1);
  }
  const limits: RunLimits = { ...run.limits, ...change, updatedAt: Math.max(now, (run.limits?.updatedAt ?? 0) + 1) };
  // The children read the fleet limit from the fleet shards (the fan-out's shared limiter); the
  // run record keeps what the operator set, for status.
  await table.setFleetLimit(runId, change);
  if (!(await table.updateRun(runId, { limits }, { statusIn: RUNNING_STATUSES }))) {
    throw new OpsError(`run ${runId} ended while its limits were being changed`, 1);
  }
  return limits;
}

export interface CancelOutcome {
  runId: string;
  /** TerminateJob sent (split, fan-out: started or not). */
  terminated: string[];
  /** CancelJob sent (the chain's consolidate and cleanup, which had not started). */
  cancelled: string[];
}

/** A job id recorded under a step, not a claim marker. */
function jobIdOf(run: RunRecord, step: Step): string | undefined {
  const v = run.steps?.[step];
  return v && v !== 'submitting' && v !== 'submitted' ? v : undefined;
}

/**
 * Ends a running run CANCELLED (first), then terminates its split and fan-out jobs and cancels the
 * consolidate and cleanup waiting on them. Running fan-out children get SIGTERM, save their
 * progress and stop; the failure event of the fan-out job makes on-job-failed deliver the partial
 * results (items without an outcome as "not processed") and start cleanup.
 */
export async function cancelRun(
  table: RunTable,
  batch: BatchClient | undefined,
  runId: string,
  where: string,
  opts: { who: string; now?: number },
): Promise<CancelOutcome> {
  const run = await requireRun(table, runId, where);
  if (TERMINAL_STATUSES.includes(run.status)) throw new OpsError(`run ${runId} has already ended (${run.status}); nothing to cancel`, 1);
  if (run.status === 'CONSOLIDATING') {
    throw new OpsError(`run ${runId} is writing its results (CONSOLIDATING); it ends in moments, nothing to cancel`, 1);
  }
  const now = opts.now ?? Date.now();
  const reason = `Cancelled by ${opts.who} with fanout cancel at ${new Date(now).toISOString()}.`;
  const moved = await moveRun(table, runId, 'CANCELLED', {
    patch: { error: reason, finishedAt: now },
    from: ['STARTED', 'SPLITTING', 'FANNING_OUT'],
  });
  if (!moved || !(await table.claimStep(runId, 'cancel', String(now)))) {
    const current = await table.getRun(runId);
    throw new OpsError(`run ${runId} changed to ${current?.status ?? 'gone'} while being cancelled; nothing to cancel`, 1);
  }
  const outcome: CancelOutcome = { runId, terminated: [], cancelled: [] };
  if (!batch) return outcome;
  const send = async (command: TerminateJobCommand | CancelJobCommand, jobId: string, what: string) => {
    try {
      await batch.send(command);
    } catch (err) {
      throw new OpsError(failedCallMessage(`AWS Batch ${what} of job ${jobId} (run ${runId}); the run is marked CANCELLED`, err), 1);
    }
  };
  const jobReason = `fanout cancel of run ${runId} by ${opts.who}`.slice(0, 1024);
  for (const step of ['split', 'fanout'] as const) {
    const jobId = jobIdOf(run, step);
    if (!jobId) continue;
    await send(new TerminateJobCommand({ jobId, reason: jobReason }), jobId, 'TerminateJob');
    outcome.terminated.push(jobId);
  }
  for (const step of ['consolidate', 'cleanup'] as const) {
    const jobId = jobIdOf(run, step);
    if (!jobId) continue;
    await send(new CancelJobCommand({ jobId, reason: jobReason }), jobId, 'CancelJob');
    outcome.cancelled.push(jobId);
  }
  return outcome;
}
