/**
 * on-job-failed: AWS Batch reported a job FAILED (after its retries). Ends the run as FAILED with
 * a reason a person can act on, emails the recipients once, and starts cleanup once. A failure
 * of cleanup itself after a successful run leaves the run SUCCEEDED (the results were delivered).
 * A scheduled SFTP pull that failed for good (it belongs to no run) is recorded as a failed run of
 * its target pipeline and emailed to that pipeline's recipients and the operators, once.
 */
import { ExitCode } from '../../runtime/errors';
import { openRun } from '../../runtime/lifecycle';
import { printable } from '../../runtime/mail/messages';
import { batchJobStateChangeSchema, describeProblems, quote, type BatchJobDetail } from '../../runtime/events';
import type { Stage } from '../../runtime/model';
import { STAGES } from '../../runtime/model';
import { failRun } from '../../runtime/run/fail-run';
import { nowOf, type HandlerDeps } from '../../runtime/run/deps';

/** The parts of an EventBridge "Batch Job State Change" detail this handler reads (schema: runtime/events.ts). */
export type BatchJobFailedDetail = BatchJobDetail;

export type JobFailedOutcome = { action: 'failed-run'; runId: string } | { action: 'ignored'; why: string };

const STAGE_LABEL: Record<Stage, string> = {
  split: 'reading and splitting the file',
  fanout: 'processing the work items',
  consolidate: 'writing the result workbook',
  cleanup: 'cleaning up',
};

const EXIT_TEXT: Record<number, string> = {
  [ExitCode.BAD_INPUT]: 'the input file cannot be used',
  [ExitCode.BAD_CONFIG]: 'the job is misconfigured (environment or pipeline config); tell the platform team',
  [ExitCode.STORAGE]: 'the storage bucket could not be read or written',
  [ExitCode.TABLE]: 'the run table could not be read or written',
  [ExitCode.MAIL]: 'the mail service refused the message',
  [ExitCode.INTERNAL]: 'an unexpected error in the job (a bug); tell the platform team',
  137: 'the job ran out of memory or was killed',
  143: 'the job was stopped (for example its host was reclaimed) too many times',
};

export function describeJobFailure(d: BatchJobFailedDetail, stage: Stage | undefined): string {
  const last = d.attempts?.[d.attempts.length - 1];
  const exitCode = d.container?.exitCode ?? last?.container?.exitCode;
  const why = [d.statusReason, d.container?.reason ?? last?.container?.reason].filter(Boolean).join('; ');
  const what = stage ? STAGE_LABEL[stage] : `job ${d.jobName}`;
  const where = d.arrayProperties?.index !== undefined ? ` (chunk ${d.arrayProperties.index})` : '';
  const tries = d.attempts && d.attempts.length > 0 ? ` after ${d.attempts.length} attempt(s)` : '';
  if (why && /array child/i.test(why) && exitCode === undefined) {
    return `The step "${what}" failed: at least one chunk failed after all its attempts. Upload the file again to retry; if it fails again, forward this email to the platform team.`;
  }
  const cause = exitCode !== undefined ? (EXIT_TEXT[exitCode] ?? `exit code ${exitCode}`) : why || 'no reason given';
  return `The step "${what}"${where} failed${tries}: ${cause}${why && exitCode !== undefined ? ` (${why})` : ''}. Upload the file again to retry; if it fails again, forward this email to the platform team.`;
}

/**
 * The Lambda's event: an EventBridge "Batch Job State Change". A malformed event is logged with
 * what was wrong and dropped (EventBridge would only deliver it again).
 */
export async function handleJobStateEvent(deps: HandlerDeps, event: unknown): Promise<JobFailedOutcome> {
  const parsed = batchJobStateChangeSchema.safeParse(event);
  if (!parsed.success) {
    const problems = describeProblems(parsed.error);
    deps.log.error('dropped a malformed Batch job state event', { problems, event: quote(event) });
    return { action: 'ignored', why: `not a Batch job state change: ${problems.join('; ')}` };
  }
  return handleJobFailed(deps, parsed.data.detail);
}

export async function handleJobFailed(deps: HandlerDeps, d: BatchJobFailedDetail): Promise<JobFailedOutcome> {
  if (d.status !== 'FAILED') return { action: 'ignored', why: `status ${d.status}` };
  const runId = d.parameters?.runId;
  const stageParam = d.parameters?.stage;
  const stage = (STAGES as readonly string[]).includes(stageParam ?? '') ? (stageParam as Stage) : undefined;
  if (!runId && d.parameters?.source) return pullFailed(deps, d, d.parameters.source);
  if (!runId) return { action: 'ignored', why: `job ${d.jobName} has no runId parameter` };
  const run = await deps.table.getRun(runId);
  if (!run) return { action: 'ignored', why: `no run ${runId}` };
  const log = deps.log.child({ runId, pipeline: run.pipeline, jobId: d.jobId, stage });
  if (d.statusReason && /dependent job/i.test(d.statusReason)) {
    // The job that failed first sends its own event, with the real reason; act on that one.
    return { action: 'ignored', why: `job ${d.jobName} only failed because a job it depends on failed` };
  }
  if (run.status === 'CANCELLED') {
    // `fanout cancel` stopped the run's jobs: the consolidate and cleanup of its original chain
    // fail with it. The first stopped job delivers what was done (partial results, then cleanup).
    const baseJobId = d.jobId.split(':')[0];
    if (baseJobId === run.steps?.consolidate || baseJobId === run.steps?.cleanup) {
      return { action: 'ignored', why: `job ${d.jobName} of cancelled run ${runId} was cancelled with it` };
    }
    if (d.arrayProperties?.index !== undefined) {
      // The array job's own event comes once every child has stopped and saved its progress.
      return { action: 'ignored', why: `child ${d.arrayProperties.index} of a job of cancelled run ${runId}` };
    }
    await failRun(deps, run, {
      reason: run.error ?? 'the run was cancelled',
      cleanup: stage !== 'cleanup',
      partialResults: stage === 'fanout' && baseJobId !== run.steps?.['partial-results'],
    });
    return { action: 'failed-run', runId };
  }
  if (run.status === 'SUCCEEDED') {
    log.warn('a job failed after the run succeeded; results were delivered', { statusReason: d.statusReason });
    return { action: 'ignored', why: `run ${runId} had succeeded` };
  }
  // The run's own error (e.g. split's input error) beats the job's generic status.
  const reason = run.error ?? describeJobFailure(d, stage);
  const partialFailed = stage === 'consolidate' && run.steps?.['partial-results'] !== undefined;
  await failRun(deps, run, {
    reason,
    // The cleanup that waited for a failed partial consolidate fails with it: submit another.
    cleanup: stage !== 'cleanup',
    partialResults: stage === 'fanout' && !partialFailed,
  });
  return { action: 'failed-run', runId };
}

/** Why a pull failed, for the people who rely on its files: what to check, and where the detail is. */
export function describePullFailure(
  d: BatchJobFailedDetail,
  source: { name: string; user: string; host: string; port: number; folder: string; schedule: string },
): string {
  const last = d.attempts?.[d.attempts.length - 1];
  const exitCode = d.container?.exitCode ?? last?.container?.exitCode;
  const stream = d.container?.logStreamName ?? last?.container?.logStreamName;
  const where = `${source.user}@${source.host}:${source.port} ${source.folder}`;
  const tries = d.attempts && d.attempts.length > 0 ? ` after ${d.attempts.length} attempt(s)` : '';
  const cause =
    exitCode === ExitCode.BAD_CONFIG
      ? "the connection was refused for good: the server presented a host key other than the pinned hostKeySha256, or it refused our private key for that user, or the source config is wrong. Compare the fingerprints in the job log, and check the key in the source's secret"
      : exitCode !== undefined
        ? (EXIT_TEXT[exitCode] ?? `exit code ${exitCode}`)
        : [d.statusReason, d.container?.reason].filter(Boolean).join('; ') || 'no reason given';
  return (
    `The scheduled SFTP pull of source "${source.name}" (${where}) failed${tries}: ${cause}. ` +
    'No file was copied twice and none half-copied; the next scheduled pull ' +
    `(${source.schedule}) tries again${stream ? `. The job's log stream is ${stream}` : ''}.`
  );
}

async function pullFailed(deps: HandlerDeps, d: BatchJobFailedDetail, sourceName: string): Promise<JobFailedOutcome> {
  const source = deps.config.sources.find((s) => s.name === sourceName);
  if (!source) return { action: 'ignored', why: `job ${d.jobName} names source "${printable(sourceName)}", which is not in the config` };
  const pipeline = deps.config.pipelines.find((p) => p.name === source.pipeline);
  const now = nowOf(deps);
  // One record per failed job (EventBridge may deliver its event twice): its id is the job's.
  const runId = `pull-${d.jobId.replace(/[^A-Za-z0-9-]/g, '-')}`.slice(0, 100);
  const reason = describePullFailure(d, source);
  const created = await openRun(deps.table, {
    runId,
    pipeline: source.pipeline,
    inputKey: `sftp://${source.host}:${source.port}${source.folder.startsWith('/') ? '' : '/'}${source.folder}`,
    inputName: `SFTP pull of ${source.name}`,
    status: 'FAILED',
    sender: deps.config.sender,
    createdAt: now,
    finishedAt: now,
    error: reason,
    expiresAt: Math.floor(now / 1000) + deps.config.runRetentionDays * 86_400,
  });
  if (!created) return { action: 'ignored', why: `the failure of pull job ${d.jobId} is recorded already` };
  const recipients = [...new Set([...(pipeline?.recipients ?? []), ...deps.config.operatorRecipients])];
  await failRun(deps, (await deps.table.getRun(runId))!, { reason, cleanup: false, recipients });
  return { action: 'failed-run', runId };
}
