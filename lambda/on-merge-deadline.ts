/** Lambda, every 15 minutes (lib/merge-deadline-sweep.ts): merge batches past their input deadline end FAILED. */
import { createAwsClients } from '../runtime/adapters/clients';
import { DynamoWaitingRuns } from '../runtime/adapters/dynamo-waiting-runs';
import { handlerEnvSchema, parseEnv } from '../runtime/env';
import { sweepWaitingRuns, type DeadlineOutcome } from './handlers/merge-deadline';
import { lambdaDeps } from './runtime-deps';

const deps = lambdaDeps(process.env, 'on-merge-deadline');
const finder = new DynamoWaitingRuns(
  createAwsClients(process.env).dynamo,
  parseEnv(handlerEnvSchema, process.env, 'Lambda on-merge-deadline').FANOUT_TABLE,
);

/** One sweep; fails (so the Lambda's error metric and dead-letter queue show it) when a batch could not be handled. */
export async function handler(): Promise<DeadlineOutcome[]> {
  const outcomes = await sweepWaitingRuns(deps, finder);
  const errors = outcomes.filter((o) => o.action === 'error');
  if (errors.length > 0) {
    throw new Error(`${errors.length} waiting merge batch(es) could not be handled: ${errors.map((e) => e.runId).join(', ')}`);
  }
  return outcomes;
}
