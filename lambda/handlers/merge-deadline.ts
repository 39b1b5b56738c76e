/**
 * The deadline of a merge batch that waits for inputs: a batch folder whose named inputs have not
 * all arrived `inputDeadlineHours` after its first file (the run's `dataset.deadlineAt`) ends
 * FAILED, and the failure email names the input it still lacks (listed again at the deadline, so
 * a file that arrived meanwhile is not named; a batch found complete, its last S3 event lost, is
 * handed to the intake, which starts it). On AWS a scheduled Lambda sweeps the waiting runs
 * every 15 minutes (lib/merge-deadline-sweep.ts); locally `fanout sweep --local DIR` runs the same
 * sweep. A batch whose last input arrives at the same moment either starts or fails, never both:
 * both moves are conditional writes from WAITING_FOR_INPUTS.
 */
import type { WaitingRunFinder } from '../../runtime/adapters/dynamo-waiting-runs';
import { requireShape } from '../../runtime/config/schema';
import { errorMessage } from '../../runtime/errors';
import type { RunRecord } from '../../runtime/model';
import type { ObjectInfo } from '../../runtime/ports';
import { failRun } from '../../runtime/run/fail-run';
import { nowOf, type HandlerDeps } from '../../runtime/run/deps';
import { classifyBatch, handleDatasetObject } from './merge-intake';

export type DeadlineOutcome =
  | { runId: string; action: 'failed'; lacking: string[]; reason: string }
  | { runId: string; action: 'not-due'; deadlineAt: number }
  | { runId: string; action: 'not-waiting' }
  /** Every input was there at the deadline (the last event was lost): the sweep hands the batch to the intake, which starts it. */
  | { runId: string; action: 'started' | 'duplicate' | 'waiting' | 'rejected' | 'ignored' }
  | { runId: string; action: 'error'; error: string };

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

/** The deadline of a waiting run: its own, or (a run opened before deadlines existed) its start plus the pipeline's hours. */
export function deadlineOf(run: RunRecord): number | undefined {
  if (run.dataset?.deadlineAt !== undefined) return run.dataset.deadlineAt;
  if (run.config?.shape !== 'dataset') return undefined;
  return run.createdAt + run.config.inputDeadlineHours * 3_600_000;
}

/** Fails one waiting run when its deadline has passed. */
export async function expireWaitingRun(deps: HandlerDeps, runId: string): Promise<DeadlineOutcome> {
  const run = await deps.table.getRun(runId);
  if (run?.status !== 'WAITING_FOR_INPUTS' || !run.dataset || !run.config) return { runId, action: 'not-waiting' };
  const deadlineAt = deadlineOf(run);
  const now = nowOf(deps);
  if (deadlineAt === undefined || now < deadlineAt) return { runId, action: 'not-due', deadlineAt: deadlineAt ?? Number.NaN };
  const pipeline = requireShape(run.config, 'dataset');
  const { prefix, batch } = run.dataset;
  const objects: ObjectInfo[] = [];
  for await (const o of deps.store.list(prefix)) objects.push(o);
  const contents = classifyBatch(pipeline, prefix, objects);
  if (contents.lacking.length === 0) {
    // Every input is there (the last one's event was lost): the intake starts the batch, as that event would have.
    const key = contents.inputs.right?.key ?? contents.inputs.left?.key ?? prefix;
    const o = await handleDatasetObject(deps, { bucket: deps.store.bucket, key, eventTime: iso(now) }, pipeline);
    deps.log.info('a waiting merge batch had all its inputs at its deadline; handed to the intake', { runId, outcome: o.action });
    return { runId, action: o.action };
  }
  const lacking = contents.lacking;
  const hours = pipeline.inputDeadlineHours;
  const reason = [
    `Batch ${batch} (${prefix}) did not get all its inputs within ${hours} hour${hours === 1 ? '' : 's'} of its first file ` +
      `(deadline ${iso(deadlineAt)}): it still lacks ${lacking.join(', ')}.`,
    `Upload all the files of the merge (${pipeline.merge.inputs.left} and ${pipeline.merge.inputs.right}) into a new batch folder, ` +
      `intake/${pipeline.name}/<new batch name>/; this batch will not run.`,
    ...(contents.ignored.length > 0
      ? [`Ignored in this batch (not an input of this pipeline): ${contents.ignored.map((k) => k.slice(prefix.length)).join(', ')}.`]
      : []),
  ].join('\n');
  const ended = await failRun(deps, { ...run, dataset: { ...run.dataset, waitingFor: lacking } }, { reason, cleanup: false });
  if (ended.status !== 'FAILED') return { runId, action: 'not-waiting' };
  deps.log.warn('merge batch missed its input deadline', { runId, pipeline: pipeline.name, batch, lacking, deadlineAt: iso(deadlineAt) });
  return { runId, action: 'failed', lacking, reason };
}

/** One sweep: every waiting run whose deadline has passed ends FAILED; one run's error does not stop the others. */
export async function sweepWaitingRuns(deps: HandlerDeps, finder: WaitingRunFinder): Promise<DeadlineOutcome[]> {
  const outcomes: DeadlineOutcome[] = [];
  for await (const runId of finder.waitingRunIds()) {
    try {
      outcomes.push(await expireWaitingRun(deps, runId));
    } catch (err) {
      deps.log.error('could not expire a waiting merge batch; the next sweep tries again', { runId, error: errorMessage(err) });
      outcomes.push({ runId, action: 'error', error: errorMessage(err) });
    }
  }
  return outcomes;
}
