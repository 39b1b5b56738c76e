/**
 * Ending a run as FAILED, the one way: record the reason (first reason wins), email the
 * recipients once, and start cleanup once. Safe to call again for the same run.
 */
import { errorMessage } from '../errors';
import { failureMail } from '../mail/messages';
import { LOG_EVENTS } from '../log';
import type { RunRecord } from '../model';
import { jobName, nowOf, type HandlerDeps } from './deps';

export interface FailRunOptions {
  reason: string;
  /** Submit a cleanup job. @default true */
  cleanup?: boolean;
  /** Who is told. @default - the pipeline's recipients, or the operators when the run has no pipeline */
  recipients?: string[];
}

export async function failRun(deps: HandlerDeps, run: RunRecord, opts: FailRunOptions): Promise<RunRecord> {
  const now = nowOf(deps);
  const log = deps.log.child({ runId: run.runId, pipeline: run.pipeline });
  const marked = await deps.table.updateRun(
    run.runId,
    { status: 'FAILED', error: opts.reason, finishedAt: now },
    { statusIn: ['STARTED', 'SPLITTING', 'FANNING_OUT', 'CONSOLIDATING'] },
  );
  const current = (await deps.table.getRun(run.runId)) ?? run;
  if (marked) log.warn(LOG_EVENTS.runFailed, { reason: opts.reason });
  if (current.status !== 'FAILED') {
    log.info('run already ended; not marking it failed', { status: current.status });
    return current;
  }
  const reason = current.error ?? opts.reason;
  const recipients = opts.recipients ?? current.config?.recipients ?? deps.config.operatorRecipients;
  if (recipients.length > 0 && (await deps.table.claimStep(run.runId, 'failure-email', String(now)))) {
    try {
      const progress = describeProgress(current);
      await deps.mailer.send(
        failureMail({
          from: current.sender,
          to: recipients,
          pipeline: current.pipeline,
          inputName: current.inputName,
          runId: current.runId,
          reason,
          progress,
        }),
      );
      log.info('failure email sent', { to: recipients });
    } catch (err) {
      await deps.table.releaseStep(run.runId, 'failure-email');
      throw err;
    }
  }
  if ((opts.cleanup ?? true) && current.config !== undefined) {
    if (await deps.table.claimStep(run.runId, 'failure-cleanup', 'submitting')) {
      try {
        const { jobId } = await deps.jobs.submit({
          name: jobName(current.pipeline, 'cleanup', run.runId),
          stage: 'cleanup',
          runId: run.runId,
          pipeline: current.pipeline,
          compute: current.config.compute,
        });
        await deps.table.setStep(run.runId, 'failure-cleanup', jobId);
      } catch (err) {
        await deps.table.releaseStep(run.runId, 'failure-cleanup');
        log.error('could not submit cleanup', { error: errorMessage(err) });
        throw err;
      }
    }
  }
  return current;
}

function describeProgress(run: RunRecord): string | undefined {
  const c = run.counts;
  if (!c?.items) return undefined;
  return `The file held ${c.rows?.toLocaleString('en-US') ?? '?'} rows in ${c.items.toLocaleString('en-US')} work items.`;
}
