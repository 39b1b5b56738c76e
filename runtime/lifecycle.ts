/**
 * The run lifecycle, in one place: the statuses a run goes through, the steps that are claimed
 * once per run, the legal transitions between statuses, and the helpers every caller uses to
 * open, move, fail and succeed a run and to claim a step. Nothing else writes a run's status.
 *
 * ## Statuses (`RunRecord.status`)
 *
 * ```
 *   open ──▶ STARTED                                           items, files
 *   open ──▶ WAITING_FOR_INPUTS ──last input──▶ STARTED          dataset (planned: a merge batch)
 *   open ──▶ FAILED                                            an upload that can be no run (unknown pipeline)
 *
 *   items:   STARTED ──▶ SPLITTING⟲ ──▶ FANNING_OUT ──▶ CONSOLIDATING⟲ ──▶ SUCCEEDED
 *   files:   STARTED ──▶ LISTING⟲ ────▶ FANNING_OUT ──▶ CONSOLIDATING⟲ ──▶ SUCCEEDED   (planned)
 *   dataset: STARTED ──▶ RUNNING_ENGINE⟲ ─────────────────────────────▶ SUCCEEDED   (planned)
 *   also:    STARTED ──▶ FANNING_OUT (split done handled before split's own move was seen)
 *            FANNING_OUT ──▶ SUCCEEDED (consolidate that finds the run still FANNING_OUT)
 *
 *   any status that is not final ──▶ FAILED      a job failed for good, or the input is bad
 *                                ──▶ CANCELLED   `fanout cancel` (bin/ops/runs.ts): ends like FAILED, partial results
 * ```
 *
 * ⟲ marks a status a run may enter again: a retried job (Spot reclaim, crash) repeats its own
 * move. SUCCEEDED, FAILED and CANCELLED are final: nothing leaves them. A run opens in one of
 * `OPENING_STATUSES`. The happy path of each job shape is `SHAPE_PATHS`.
 *
 * Who moves a run (items shape):
 *
 * | to            | by                                   | from                                 |
 * | ------------- | ------------------------------------ | ------------------------------------ |
 * | STARTED       | λ on-intake (`openRun`)              | – (a new run)                        |
 * | SPLITTING     | split job                            | STARTED, SPLITTING                   |
 * | FANNING_OUT   | λ on-split-done, after the chain     | STARTED, SPLITTING (LISTING: files)  |
 * | CONSOLIDATING | consolidate job                      | FANNING_OUT, CONSOLIDATING           |
 * | SUCCEEDED     | consolidate job (`succeed`)          | FANNING_OUT, CONSOLIDATING (RUNNING_ENGINE: dataset) |
 * | FAILED        | `fail`: runtime/run/fail-run.ts (λ on-job-failed, on-intake, on-merge-deadline: a merge batch past its input deadline), a job on bad input | any status not final |
 *
 * A move is one conditional write to the run table ("status is one of the sources"), so two
 * events racing, or an event arriving late, cannot move a run backwards or out of a final status:
 * the losing write answers false, and the caller carries on as a duplicate. Asking for a move the
 * table does not allow at all (to a status nothing leads to, or from a status named as a source
 * that is not one) is a type error where the statuses are literals and an IllegalTransitionError
 * otherwise, before anything is written.
 *
 * ## Steps (`RunRecord.steps`)
 *
 * A step is something done at most once per run, however often the events that ask for it
 * arrive (S3 and SNS deliver at least once, Batch retries jobs, EventBridge repeats). The first
 * caller claims it with a conditional write of a marker (`submitting`, a time), then records what
 * it did (a job id); a caller that fails releases the claim so a retried event can take it again.
 *
 * | step              | claimed by                    | records                               |
 * | ----------------- | ----------------------------- | ------------------------------------- |
 * | split             | λ on-intake                   | the split job id                      |
 * | chain             | λ on-split-done               | `submitted` once the three jobs are   |
 * | fanout            | λ on-split-done (chain)       | the fan-out (array) job id            |
 * | consolidate       | λ on-split-done (chain)       | the consolidate job id                |
 * | cleanup           | λ on-split-done (chain)       | the cleanup job id                    |
 * | result-email      | consolidate job               | the time the result email was sent    |
 * | failure-email     | fail-run, or a partial consolidate | the time the failure email was sent |
 * | failure-cleanup   | fail-run                      | the cleanup job id after a failure    |
 * | partial-results   | fail-run (fan-out failed)     | the partial consolidate job id        |
 * | partial-cleanup   | fail-run (fan-out failed)     | the cleanup job id after it           |
 * | list              | files shape (planned)         | the listing job id                    |
 * | engine            | dataset shape (planned)       | the engine job (Batch or EMR) id      |
 * | cancel            | `fanout cancel` (bin/ops)     | when the run's jobs were terminated  |
 *
 * ## Chunks (`ChunkRecord.status`)
 *
 * PENDING (split wrote it) ──▶ RUNNING (a fan-out child started on it; again on each attempt)
 * ──▶ DONE (every item has an outcome). A retried child sets RUNNING again and resumes.
 *
 * To add a shape's statuses or steps: extend `RUN_STATUSES`, `TRANSITIONS`, `STEPS` and
 * `SHAPE_PATHS` here, and the tests in test/unit/lifecycle.test.ts check the table stays whole.
 */
import type { PipelineShape } from './config/common';
import type { ChunkRecord, RunRecord } from './model';
import type { RunTable } from './ports';

export const RUN_STATUSES = [
  'WAITING_FOR_INPUTS',
  'STARTED',
  'SPLITTING',
  'LISTING',
  'RUNNING_ENGINE',
  'FANNING_OUT',
  'CONSOLIDATING',
  'SUCCEEDED',
  'FAILED',
  'CANCELLED',
] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

/**
 * The legal moves: status -> the statuses a run in it may go to. A status listed under itself may
 * be entered again (a retried job). Final statuses lead nowhere.
 */
export const TRANSITIONS = {
  /** dataset (planned): a merge batch whose named inputs have not all arrived. */
  WAITING_FOR_INPUTS: ['STARTED', 'FAILED', 'CANCELLED'],
  /** Opened by on-intake; its first job is submitted. */
  STARTED: ['SPLITTING', 'LISTING', 'RUNNING_ENGINE', 'FANNING_OUT', 'FAILED', 'CANCELLED'],
  /** items: split reads the file and writes chunk files. */
  SPLITTING: ['SPLITTING', 'FANNING_OUT', 'FAILED', 'CANCELLED'],
  /** files (planned): the list job lists the files (zip entries, pull batch, manifest) into chunks. */
  LISTING: ['LISTING', 'FANNING_OUT', 'FAILED', 'CANCELLED'],
  /** dataset (planned): the engine job (DuckDB on Batch, Spark on EMR Serverless) runs, then notifies. */
  RUNNING_ENGINE: ['RUNNING_ENGINE', 'SUCCEEDED', 'FAILED', 'CANCELLED'],
  /** items, files: the fan-out array job runs the task on every item (every file). */
  FANNING_OUT: ['CONSOLIDATING', 'SUCCEEDED', 'FAILED', 'CANCELLED'],
  /** items, files: consolidate writes the result workbook (the summary) and emails it. */
  CONSOLIDATING: ['CONSOLIDATING', 'SUCCEEDED', 'FAILED', 'CANCELLED'],
  SUCCEEDED: [],
  FAILED: [],
  CANCELLED: [],
} as const satisfies Record<RunStatus, readonly RunStatus[]>;

/** Statuses a run may be opened in: FAILED for an upload that can be no run (unknown pipeline). */
export const OPENING_STATUSES = ['STARTED', 'WAITING_FOR_INPUTS', 'FAILED'] as const satisfies readonly RunStatus[];
export type OpeningStatus = (typeof OPENING_STATUSES)[number];

/** Where a run in status `F` may go. */
export type NextStatus<F extends RunStatus> = (typeof TRANSITIONS)[F][number];
/** Statuses some move leads to (a move to any other status cannot be written). */
export type ReachableStatus = NextStatus<RunStatus>;
/** The statuses a run may come from to reach `T`. */
export type SourceOf<T extends RunStatus> = { [F in RunStatus]: T extends NextStatus<F> ? F : never }[RunStatus];

/** Statuses nothing leaves: SUCCEEDED, FAILED, CANCELLED. */
export const TERMINAL_STATUSES: readonly RunStatus[] = RUN_STATUSES.filter((s) => TRANSITIONS[s].length === 0);

export function isTerminal(status: RunStatus): boolean {
  return TRANSITIONS[status].length === 0;
}

/**
 * The happy path of each job shape, status by status (each next one a legal move). Only `items`
 * runs today; the others are planned (docs/architecture.md).
 */
export const SHAPE_PATHS = {
  items: ['STARTED', 'SPLITTING', 'FANNING_OUT', 'CONSOLIDATING', 'SUCCEEDED'],
  dataset: ['WAITING_FOR_INPUTS', 'STARTED', 'RUNNING_ENGINE', 'SUCCEEDED'],
  files: ['STARTED', 'LISTING', 'FANNING_OUT', 'CONSOLIDATING', 'SUCCEEDED'],
} as const satisfies Record<PipelineShape, readonly RunStatus[]>;

export const STEPS = [
  'split',
  'chain',
  'fanout',
  'consolidate',
  'cleanup',
  'result-email',
  'failure-email',
  'failure-cleanup',
  'partial-results',
  'partial-cleanup',
  'list',
  'engine',
  'cancel',
] as const;
/** A step claimed once per run (see the table in this module's header). */
export type Step = (typeof STEPS)[number];

export const CHUNK_STATUSES = ['PENDING', 'RUNNING', 'DONE'] as const;
export type ChunkStatus = (typeof CHUNK_STATUSES)[number];

/** A chunk as split (or list, or a redrive) records it: PENDING, nothing done, no part written. */
export function pendingChunk(runId: string, chunk: number, items: number, at: number): ChunkRecord {
  return { runId, chunk, items, status: 'PENDING', done: 0, failed: 0, retries: 0, attempt: 0, lastPart: -1, updatedAt: at };
}

/** A move the lifecycle does not allow; raised before anything is written. */
export class IllegalTransitionError extends Error {
  override readonly name = 'IllegalTransitionError';
  constructor(
    readonly from: RunStatus | undefined,
    readonly to: RunStatus,
    why: string,
  ) {
    super(`illegal run transition ${from ?? '(new run)'} -> ${to}: ${why} (see runtime/lifecycle.ts)`);
  }
}

function statusList(statuses: readonly string[]): string {
  return statuses.length <= 1 ? (statuses[0] ?? '') : `${statuses.slice(0, -1).join(', ')} or ${statuses.at(-1)}`;
}

/** Whether a run in `from` may go to `to`. */
export function canMove(from: RunStatus, to: RunStatus): boolean {
  return (TRANSITIONS[from] as readonly RunStatus[]).includes(to);
}

/** Throws an IllegalTransitionError saying where `from` may go when it may not go to `to`. */
export function assertTransition(from: RunStatus, to: RunStatus): void {
  if (!(RUN_STATUSES as readonly string[]).includes(from)) {
    throw new IllegalTransitionError(from, to, `"${from}" is not a run status (${RUN_STATUSES.join(', ')})`);
  }
  if (canMove(from, to)) return;
  const next = TRANSITIONS[from];
  throw new IllegalTransitionError(
    from,
    to,
    next.length === 0 ? `${from} is final, a run leaves it for nothing` : `from ${from} a run goes only to ${statusList(next)}`,
  );
}

/** Every status from which a run may reach `to`. */
export function sourcesOf(to: RunStatus): RunStatus[] {
  return RUN_STATUSES.filter((from) => canMove(from, to));
}

/** Run fields a move may write beside the status (the status itself only through these helpers). */
export type RunPatch = Partial<Omit<RunRecord, 'runId' | 'status' | 'steps'>>;

export interface MoveOptions<T extends RunStatus> {
  /** Fields written in the same conditional update. @default - none */
  readonly patch?: RunPatch;
  /** Only from these statuses (each must be a legal source of `to`). @default - every legal source */
  readonly from?: readonly SourceOf<T>[];
}

/**
 * Moves a run to `to` with one conditional write: only when its stored status is a legal source
 * (or one of `from`). True when it moved; false when the run is elsewhere (it moved on, ended,
 * or does not exist): a duplicate or late event, which the caller treats as such.
 */
export async function moveRun<T extends ReachableStatus>(
  table: RunTable,
  runId: string,
  to: T,
  opts: MoveOptions<T> = {},
): Promise<boolean> {
  const sources = opts.from ?? (sourcesOf(to) as SourceOf<T>[]);
  if (sources.length === 0) {
    throw new IllegalTransitionError(undefined, to, `no status leads to ${to}; a run is opened in it (openRun) or not at all`);
  }
  for (const from of sources) assertTransition(from, to);
  return table.updateRun(runId, { ...opts.patch, status: to }, { statusIn: [...sources] });
}

/** Ends a run FAILED with a reason for a person, when it has not ended already (first reason wins). */
export function fail(table: RunTable, runId: string, reason: string, at: number): Promise<boolean> {
  return moveRun(table, runId, 'FAILED', { patch: { error: reason, finishedAt: at } });
}

/** Ends a run SUCCEEDED (its results were delivered), when it has not ended already. */
export function succeed(table: RunTable, runId: string, at: number, patch: RunPatch = {}): Promise<boolean> {
  return moveRun(table, runId, 'SUCCEEDED', { patch: { ...patch, finishedAt: at } });
}

/**
 * Writes a new run record in an opening status; false when a run with this id exists already
 * (a duplicated event). Any other status is an IllegalTransitionError.
 */
export async function openRun(table: RunTable, run: RunRecord & { status: OpeningStatus }): Promise<boolean> {
  if (!(OPENING_STATUSES as readonly RunStatus[]).includes(run.status)) {
    throw new IllegalTransitionError(undefined, run.status, `a run opens as ${statusList(OPENING_STATUSES)}`);
  }
  return table.createRun(run);
}

export type Claimed<T> = { claimed: true; value: T } | { claimed: false };

export interface OnceOptions {
  /**
   * Whether to release the claim when `work` throws, so a retried event can take the step again.
   * @default - always release
   */
  readonly releaseOnError?: (err: unknown) => Promise<boolean> | boolean;
}

/**
 * Does `work` once per run for `step`: claims the step with `marker` and runs `work` when the
 * claim is new; answers `{ claimed: false }` without running it when another caller holds it.
 * When `work` throws, the claim is released (unless `releaseOnError` says not) and the error
 * rethrown.
 */
export async function once<T>(
  table: RunTable,
  runId: string,
  step: Step,
  marker: string,
  work: () => Promise<T>,
  opts: OnceOptions = {},
): Promise<Claimed<T>> {
  if (!(await table.claimStep(runId, step, marker))) return { claimed: false };
  try {
    return { claimed: true, value: await work() };
  } catch (err) {
    if (opts.releaseOnError === undefined || (await opts.releaseOnError(err))) await table.releaseStep(runId, step);
    throw err;
  }
}
