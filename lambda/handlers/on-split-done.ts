/**
 * on-split-done: split announced the run's chunks. Submits fan-out (an array job, one child per
 * chunk; a plain job for one chunk), consolidate depending on it, and cleanup depending on that.
 * The chain is claimed once per run, so a duplicated message submits nothing twice.
 */
import { errorMessage } from '../../runtime/errors';
import { describeProblems, quote, snsEventSchema, splitDoneMessageSchema } from '../../runtime/events';
import { isTerminal, moveRun, once } from '../../runtime/lifecycle';
import type { SplitDoneMessage } from '../../runtime/ports';
import { submitChain, type HandlerDeps } from '../../runtime/run/deps';

export type SplitDoneOutcome =
  | { action: 'submitted'; fanout: string; consolidate: string; cleanup: string }
  | { action: 'duplicate' }
  | { action: 'ignored'; why: string };

/** Reads an SNS message body (runtime/events.ts); anything else is an error naming what was wrong and quoting what arrived. */
export function parseSplitDone(body: string): SplitDoneMessage {
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch {
    throw new Error(`not a split-done message (not JSON): ${quote(body, 200)}`);
  }
  const m = splitDoneMessageSchema.safeParse(raw);
  if (!m.success) {
    throw new Error(
      `not a split-done message (needs runId, pipeline, chunks; ${describeProblems(m.error).join('; ')}): ${quote(body, 200)}`,
    );
  }
  return m.data;
}

/**
 * The Lambda's event: an SNS notification of one or more split-done messages. A malformed event
 * or message is logged with what was wrong and dropped (SNS would only deliver it again); the
 * other messages are handled.
 */
export async function handleSplitDoneEvent(deps: HandlerDeps, event: unknown): Promise<SplitDoneOutcome[]> {
  const envelope = snsEventSchema.safeParse(event);
  if (!envelope.success) {
    const problems = describeProblems(envelope.error);
    deps.log.error('dropped an event that is not an SNS notification', { problems, event: quote(event) });
    return [{ action: 'ignored', why: `not an SNS notification: ${problems.join('; ')}` }];
  }
  const outcomes: SplitDoneOutcome[] = [];
  for (const record of envelope.data.Records) {
    let msg: SplitDoneMessage;
    try {
      msg = parseSplitDone(record.Sns.Message);
    } catch (err) {
      deps.log.error('dropped a malformed split-done message', { error: errorMessage(err), messageId: record.Sns.MessageId });
      outcomes.push({ action: 'ignored', why: errorMessage(err) });
      continue;
    }
    outcomes.push(await handleSplitDone(deps, msg));
  }
  return outcomes;
}

export async function handleSplitDone(deps: HandlerDeps, msg: SplitDoneMessage): Promise<SplitDoneOutcome> {
  const log = deps.log.child({ runId: msg.runId, pipeline: msg.pipeline });
  const run = await deps.table.getRun(msg.runId);
  if (!run) return { action: 'ignored', why: `no run ${msg.runId}` };
  if (isTerminal(run.status)) {
    return { action: 'ignored', why: `run ${msg.runId} has ended (${run.status})` };
  }
  if (!run.config) return { action: 'ignored', why: `run ${msg.runId} has no pipeline` };
  const chunks = run.counts?.chunks ?? msg.chunks;
  if (!Number.isInteger(chunks) || chunks < 1) return { action: 'ignored', why: `run ${msg.runId} has no chunks` };
  const config = run.config;
  const chain = await once(
    deps.table,
    msg.runId,
    'chain',
    'submitting',
    async () => {
      const [fanout, consolidate, cleanup] = (await submitChain(deps, { ...run, config }, [
        { step: 'fanout', stage: 'fanout', arraySize: chunks > 1 ? chunks : undefined },
        { step: 'consolidate', stage: 'consolidate' },
        { step: 'cleanup', stage: 'cleanup' },
      ])) as [string, string, string];
      await deps.table.setStep(run.runId, 'chain', 'submitted');
      await moveRun(deps.table, run.runId, 'FANNING_OUT');
      return { fanout, consolidate, cleanup };
    },
    {
      // Jobs already submitted keep running; only an untouched chain may be claimed again.
      releaseOnError: async (err) => {
        log.error('could not submit the job chain', { error: errorMessage(err) });
        return (await deps.table.getRun(run.runId))?.steps?.fanout === undefined;
      },
    },
  );
  if (!chain.claimed) {
    log.info('duplicate split-done message');
    return { action: 'duplicate' };
  }
  log.info('fan-out, consolidate and cleanup submitted', { chunks, fanout: chain.value.fanout });
  return { action: 'submitted', ...chain.value };
}
