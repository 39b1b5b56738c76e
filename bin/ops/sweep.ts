/**
 * `fanout sweep --local DIR [--now ISO]`: the merge input-deadline sweep of the deployed stack
 * (the on-merge-deadline Lambda, every 15 minutes) run once against a kept local run: every merge
 * batch WAITING_FOR_INPUTS past its deadline ends FAILED and its recipients are emailed which input
 * it lacks. `--now` sweeps as if it were that time (to try a deadline without waiting for it).
 */
import { DynamoWaitingRuns } from '../../runtime/adapters/dynamo-waiting-runs';
import { SesMailer } from '../../runtime/adapters/ses-mailer';
import type { AppConfig } from '../../runtime/config/schema';
import { createLogger } from '../../runtime/log';
import type { JobSubmitter } from '../../runtime/ports';
import { sweepWaitingRuns, type DeadlineOutcome } from '../../lambda/handlers/merge-deadline';
import { OpsError } from './ops-error';
import type { OpsTarget } from './target';

/** A kept local run's jobs are run by `fanout run`; the sweep submits none (a complete batch is reported instead). */
const noJobs: JobSubmitter = {
  submit: async () => {
    throw new Error('this batch has all its inputs now; fanout sweep starts no jobs in a kept local run: upload it again with fanout run');
  },
};

export async function sweepLocal(t: OpsTarget, config: AppConfig, now: number): Promise<DeadlineOutcome[]> {
  if (t.kind !== 'local') {
    throw new OpsError('a deployed stack sweeps itself every 15 minutes (the on-merge-deadline Lambda); fanout sweep takes --local DIR', 2);
  }
  const deps = {
    config,
    store: t.store,
    table: t.table,
    jobs: noJobs,
    mailer: new SesMailer(t.clients.ses),
    log: createLogger({ sink: () => {}, fields: { command: 'sweep' } }),
    now: () => now,
  };
  return sweepWaitingRuns(deps, new DynamoWaitingRuns(t.clients.dynamo, t.table.tableName));
}

/** One line per waiting batch the sweep looked at. */
export function sweepText(outcomes: DeadlineOutcome[]): string {
  if (outcomes.length === 0) return 'no merge batch is waiting for inputs\n';
  return outcomes
    .map((o) => {
      switch (o.action) {
        case 'failed':
          return `${o.runId}: FAILED, still lacking ${o.lacking.join(', ')}; the recipients were emailed\n`;
        case 'not-due':
          return `${o.runId}: waiting, fails at ${new Date(o.deadlineAt).toISOString()} unless its inputs arrive\n`;
        case 'error':
          return `${o.runId}: ${o.error}\n`;
        default:
          return `${o.runId}: ${o.action}\n`;
      }
    })
    .join('');
}
