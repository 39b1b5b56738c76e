/**
 * on-split-done: split announced the run's chunks. Submits fan-out (an array job, one child per
 * chunk; a plain job for one chunk), consolidate depending on it, and cleanup depending on that.
 * The chain is claimed once per run, so a duplicated message submits nothing twice.
 */
import { errorMessage } from '../../runtime/errors';
import { isTerminal, moveRun, once } from '../../runtime/lifecycle';
import type { SplitDoneMessage } from '../../runtime/ports';
import { submitChain, type HandlerDeps } from '../../runtime/run/deps';

export type SplitDoneOutcome =
  | { action: 'submitted'; fanout: string; consolidate: string; cleanup: string }
  | { action: 'duplicate' }
  | { action: 'ignored'; why: string };

/** Reads an SNS message body; anything else is an error naming what arrived. */
export function parseSplitDone(body: string): SplitDoneMessage {
  let m: Partial<SplitDoneMessage>;
  try {
    m = JSON.parse(body) as Partial<SplitDoneMessage>;
  } catch {
    throw new Error(`not a split-done message (not JSON): ${body.slice(0, 200)}`);
  }
  if (typeof m.runId !== 'string' || typeof m.pipeline !== 'string' || typeof m.chunks !== 'number') {
    throw new Error(`not a split-done message (needs runId, pipeline, chunks): ${body.slice(0, 200)}`);
  }
  return { runId: m.runId, pipeline: m.pipeline, chunks: m.chunks, items: Number(m.items ?? 0) };
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
