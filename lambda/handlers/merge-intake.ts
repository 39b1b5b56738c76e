/**
 * Intake of a `dataset` (merge) pipeline: the files of one merge arrive in a folder of their own,
 * `intake/<pipeline>/<batch>/`. Each S3 event lists the folder and checks for its siblings:
 * - while a named input is missing, the batch is a run WAITING_FOR_INPUTS that says which input
 *   it lacks (the local CLI prints it; a failure email repeats it);
 * - when the last one has arrived, the run moves to STARTED and the merge job (then cleanup) is
 *   submitted, once: the run id comes from the batch folder, so duplicated and reordered events
 *   find the same run, and the `engine` step is claimed once.
 * A file that is no input is ignored and named in the emails. One batch folder is one merge: a
 * batch that ran is not run again (upload to a new folder to merge again).
 */
import { createHash } from 'node:crypto';
import { matchesPattern, MERGE_ROLES, type MergeRole } from '../../runtime/config/merge-schema';
import type { DatasetPipelineConfig } from '../../runtime/config/schema';
import type { DatasetRunInfo } from '../../runtime/dataset-run';
import { errorMessage } from '../../runtime/errors';
import type { RunRecord } from '../../runtime/model';
import type { ObjectInfo } from '../../runtime/ports';
import { moveRun, openRun } from '../../runtime/lifecycle';
import { failRun } from '../../runtime/run/fail-run';
import { nowOf, submitChain, type HandlerDeps } from '../../runtime/run/deps';

/** A created object under `intake/<pipeline>/`, as on-intake hands it on. */
export interface DatasetObjectEvent {
  bucket: string;
  key: string;
  eventTime: string;
}

export type DatasetIntakeOutcome =
  | { action: 'ignored'; why: string }
  | { action: 'waiting'; runId: string; lacking: string[] }
  | { action: 'started'; runId: string; jobId: string }
  | { action: 'duplicate'; runId: string }
  | { action: 'rejected'; runId: string; reason: string };

/** The run id of a batch folder: readable, and the same for every event of the folder. */
export function batchRunId(bucket: string, prefix: string, batch: string): string {
  const hash = createHash('sha256').update(`${bucket}\n${prefix}`).digest('hex').slice(0, 10);
  const readable = batch
    .replace(/[^A-Za-z0-9-]/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 40);
  return `${readable || 'batch'}-${hash}`;
}

export interface BatchContents {
  /** The object of each role found (exactly one). */
  inputs: Partial<Record<MergeRole, ObjectInfo>>;
  /** Roles with no file yet, described for a person. */
  lacking: string[];
  /** Roles matched by more than one file. */
  ambiguous: string[];
  /** Objects that are no input. */
  ignored: string[];
}

/** Sorts the objects of a batch folder into the pipeline's inputs and the rest. */
export function classifyBatch(pipeline: DatasetPipelineConfig, prefix: string, objects: ObjectInfo[]): BatchContents {
  const out: BatchContents = { inputs: {}, lacking: [], ambiguous: [], ignored: [] };
  const files = objects.filter((o) => !o.key.endsWith('/'));
  const direct = files.filter((o) => !o.key.slice(prefix.length).includes('/'));
  const used = new Set<string>();
  for (const role of MERGE_ROLES) {
    const pattern = pipeline.merge.inputs[role];
    const matches = direct.filter((o) => matchesPattern(pattern, o.key.slice(prefix.length)));
    if (matches.length === 0) out.lacking.push(`${role} input ${pattern}`);
    else if (matches.length > 1) {
      out.ambiguous.push(`${role} input ${pattern} matches ${matches.map((m) => m.key.slice(prefix.length)).join(', ')}`);
    } else out.inputs[role] = matches[0]!;
    for (const m of matches) used.add(m.key);
  }
  out.ignored = files.filter((o) => !used.has(o.key)).map((o) => o.key);
  return out;
}

export async function handleDatasetObject(
  deps: HandlerDeps,
  ev: DatasetObjectEvent,
  pipeline: DatasetPipelineConfig,
): Promise<DatasetIntakeOutcome> {
  const base = `intake/${pipeline.name}/`;
  const rest = ev.key.slice(base.length);
  const slash = rest.indexOf('/');
  const now = nowOf(deps);
  const expiresAt = Math.floor(now / 1000) + deps.config.runRetentionDays * 86_400;
  if (slash <= 0) {
    // A file straight under the pipeline folder: no batch to gather it with.
    const runId = batchRunId(ev.bucket, ev.key, rest);
    const reason =
      `${rest} was uploaded straight into intake/${pipeline.name}/. A merge takes its files from a folder of their own: ` +
      `upload ${pipeline.merge.inputs.left} and ${pipeline.merge.inputs.right} into intake/${pipeline.name}/<batch name>/ (any new folder name).`;
    const run: RunRecord & { status: 'STARTED' } = {
      runId,
      pipeline: pipeline.name,
      inputKey: ev.key,
      inputName: rest,
      status: 'STARTED',
      config: pipeline,
      sender: deps.config.sender,
      createdAt: now,
      expiresAt,
    };
    if (!(await openRun(deps.table, run))) return { action: 'duplicate', runId };
    await failRun(deps, run, { reason, cleanup: false });
    return { action: 'rejected', runId, reason };
  }
  const batch = rest.slice(0, slash);
  const prefix = `${base}${batch}/`;
  const runId = batchRunId(ev.bucket, prefix, batch);
  const log = deps.log.child({ runId, pipeline: pipeline.name, batch, key: ev.key });

  const objects: ObjectInfo[] = [];
  for await (const o of deps.store.list(prefix)) objects.push(o);
  const contents = classifyBatch(pipeline, prefix, objects);
  const dataset: DatasetRunInfo = {
    batch,
    prefix,
    inputs: Object.fromEntries(Object.entries(contents.inputs).map(([role, o]) => [role, o.key])),
    ignored: contents.ignored,
    ...(contents.lacking.length > 0 ? { waitingFor: contents.lacking } : {}),
    deadlineAt: now + pipeline.inputDeadlineHours * 3_600_000,
  };
  const waiting: RunRecord & { status: 'WAITING_FOR_INPUTS' } = {
    runId,
    pipeline: pipeline.name,
    inputKey: prefix,
    inputName: batch,
    status: 'WAITING_FOR_INPUTS',
    config: pipeline,
    sender: deps.config.sender,
    createdAt: now,
    expiresAt,
    dataset,
  };
  if (!(await openRun(deps.table, waiting))) {
    const existing = await deps.table.getRun(runId);
    if (existing && existing.status !== 'WAITING_FOR_INPUTS' && !(existing.status === 'STARTED' && existing.steps?.engine === undefined)) {
      log.info('the batch has started already; nothing to do (upload to a new batch folder to merge again)', { status: existing.status });
      return { action: 'duplicate', runId };
    }
  }

  if (contents.ambiguous.length > 0) {
    const reason = [
      `The batch folder ${prefix} holds more than one file for an input, so the merge cannot tell which to use:`,
      ...contents.ambiguous.map((a) => `  - ${a}`),
      ...(contents.lacking.length > 0 ? [`It also still lacks: ${contents.lacking.join(', ')}.`] : []),
      'Upload exactly one file per input into a new batch folder.',
    ].join('\n');
    await failRun(deps, { ...waiting, status: 'WAITING_FOR_INPUTS' }, { reason, cleanup: false });
    return { action: 'rejected', runId, reason };
  }

  if (contents.lacking.length > 0) {
    // Still waiting: the record opened by the batch's first event says for what (with two inputs
    // there is only one thing a batch can still lack; a late event must not overwrite a started run).
    log.info('batch waiting for inputs', { lacking: contents.lacking, ignored: contents.ignored });
    return { action: 'waiting', runId, lacking: contents.lacking };
  }

  // The last input has arrived: start the run, once.
  const moved = await moveRun(deps.table, runId, 'STARTED', { patch: { dataset, createdAt: now }, from: ['WAITING_FOR_INPUTS'] });
  if (!moved) {
    const existing = await deps.table.getRun(runId);
    if (existing?.status !== 'STARTED' || existing.steps?.engine !== undefined) return { action: 'duplicate', runId };
  }
  if (!(await deps.table.claimStep(runId, 'engine', 'submitting'))) return { action: 'duplicate', runId };
  try {
    const [jobId] = await submitChain(deps, { runId, pipeline: pipeline.name, config: pipeline }, [
      { step: 'engine', stage: 'merge' },
      { step: 'cleanup', stage: 'cleanup' },
    ]);
    log.info('batch complete; merge submitted', { jobId, inputs: dataset.inputs, ignored: dataset.ignored });
    return { action: 'started', runId, jobId: jobId! };
  } catch (err) {
    await deps.table.releaseStep(runId, 'engine');
    log.error('could not submit the merge; the event will be retried', { error: errorMessage(err) });
    throw err;
  }
}
