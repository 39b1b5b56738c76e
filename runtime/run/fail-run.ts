/**
 * Ending a run as FAILED, the one way: record the reason (first reason wins), email the
 * recipients once, and start cleanup once. Safe to call again for the same run.
 *
 * When fan-out fails after items were processed, nothing already done is lost: instead of the
 * plain failure email, a consolidate job in partial mode writes the workbook of what is done
 * (items without an outcome listed as not processed) and sends it with the failure email, then
 * cleanup runs after it. Should that consolidate fail too, the plain email and cleanup follow.
 */
import { errorMessage } from '../errors';
import { fail, once } from '../lifecycle';
import { failureMail } from '../mail/messages';
import { LOG_EVENTS } from '../log';
import type { RunRecord } from '../model';
import { nowOf, submitChain, type HandlerDeps } from './deps';

export interface FailRunOptions {
  reason: string;
  /** Submit a cleanup job. @default true */
  cleanup?: boolean;
  /** Who is told. @default - the pipeline's recipients, or the operators when the run has no pipeline */
  recipients?: string[];
  /** Try to deliver the partial results (fan-out failed after split). @default false */
  partialResults?: boolean;
}

export async function failRun(deps: HandlerDeps, run: RunRecord, opts: FailRunOptions): Promise<RunRecord> {
  const now = nowOf(deps);
  const log = deps.log.child({ runId: run.runId, pipeline: run.pipeline });
  const marked = await fail(deps.table, run.runId, opts.reason, now);
  const current = (await deps.table.getRun(run.runId)) ?? run;
  if (marked) log.warn(LOG_EVENTS.runFailed, { reason: opts.reason });
  // A cancelled run ends like a failed one: what was done is delivered, then cleanup.
  if (current.status !== 'FAILED' && current.status !== 'CANCELLED') {
    log.info('run already ended; not marking it failed', { status: current.status });
    return current;
  }
  const reason = current.error ?? opts.reason;
  if (opts.partialResults && current.config && current.counts?.chunks) {
    // Another event of the same failure started it already: its consolidate sends the email.
    if (current.steps?.['partial-results'] !== undefined) return current;
    if (await submitPartialResults(deps, current)) return current;
  }
  const recipients = opts.recipients ?? current.config?.recipients ?? deps.config.operatorRecipients;
  if (recipients.length > 0) {
    await once(deps.table, run.runId, 'failure-email', String(now), async () => {
      await deps.mailer.send(
        failureMail({
          from: current.sender,
          to: recipients,
          pipeline: current.pipeline,
          inputName: current.inputName,
          runId: current.runId,
          reason,
          progress: describeProgress(current),
          cancelled: current.status === 'CANCELLED',
        }),
      );
      log.info('failure email sent', { to: recipients });
    });
  }
  const config = current.config;
  if ((opts.cleanup ?? true) && config !== undefined) {
    await once(deps.table, run.runId, 'failure-cleanup', 'submitting', async () => {
      try {
        await submitChain(deps, { ...current, config }, [{ step: 'failure-cleanup', stage: 'cleanup' }]);
      } catch (err) {
        log.error('could not submit cleanup', { error: errorMessage(err) });
        throw err;
      }
    });
  }
  return current;
}

/** Consolidate (partial mode), then cleanup after it; false when it could not be submitted. */
async function submitPartialResults(deps: HandlerDeps, run: RunRecord): Promise<boolean> {
  const chainRun = { ...run, config: run.config! };
  // The claim stays when the submission fails: the plain failure email goes out instead, once.
  const partial = await once(deps.table, run.runId, 'partial-results', 'submitting', async () => {
    try {
      const [consolidate] = await submitChain(deps, chainRun, [
        { step: 'partial-results', stage: 'consolidate', label: 'partial', environment: { FANOUT_PARTIAL: '1' } },
      ]);
      try {
        await submitChain(deps, chainRun, [{ step: 'partial-cleanup', stage: 'cleanup' }], consolidate);
      } catch (err) {
        // The partial results still go out; the bucket's lifecycle removes work/ files later.
        deps.log.error('could not submit cleanup after the partial results', { error: errorMessage(err) });
      }
      deps.log.info('partial results submitted', { runId: run.runId, consolidate });
      return true;
    } catch (err) {
      deps.log.error('could not submit the partial results; sending the plain failure email', { error: errorMessage(err) });
      return false;
    }
  });
  return partial.claimed ? partial.value : true;
}

function describeProgress(run: RunRecord): string | undefined {
  const c = run.counts;
  if (!c?.items) return undefined;
  return `The file held ${c.rows?.toLocaleString('en-US') ?? '?'} rows in ${c.items.toLocaleString('en-US')} work items.`;
}
