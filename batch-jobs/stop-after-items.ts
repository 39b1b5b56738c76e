/**
 * A test hook of the local job runner: with FANOUT_TEST_STOP_AFTER_ITEMS=N in its environment, a
 * fan-out child sends itself SIGTERM once this attempt has recorded N outcomes. It then stops as on
 * a Spot reclaim or a job timeout (main.ts's SIGTERM handler: save the parts, exit 143), so a test
 * can stop a child after N items whatever the machine's load, instead of racing a wall-clock
 * timeout against a slow data source. The local runner sets it per attempt
 * (LocalJobRunnerOptions.stopAfterItems); give N below the attempt's item count, or the child
 * may finish first.
 *
 * Honoured only under the local runner: an IPC channel to the parent process (the local runner
 * starts every job with one; split's announcement goes through the twin's SNS, so FANOUT_EVENTS
 * is no longer the marker). A Batch container has none, so a job definition that sets it by accident fails at
 * start with exit code 11 (bad configuration, not retried) and a message saying to remove it;
 * lib/ sets no FANOUT_TEST_ variable (test/infra/compute-stack.test.ts checks every job definition).
 */
import type { Env } from '../runtime/env';
import { EnvironmentError } from '../runtime/errors';

export const STOP_AFTER_ITEMS_ENV = 'FANOUT_TEST_STOP_AFTER_ITEMS';

/**
 * The fan-out `onOutcome` hook the environment asks for, or undefined when the variable is not set.
 * Throws an EnvironmentError when it is set outside the local runner or is not a whole number >= 1.
 */
export function stopAfterItemsHook(
  env: Env,
  hasIpcChannel: boolean,
  stop: () => void = () => process.kill(process.pid, 'SIGTERM'),
): ((recorded: number) => void) | undefined {
  const raw = env[STOP_AFTER_ITEMS_ENV];
  if (raw === undefined || raw.trim() === '') return undefined;
  if (!hasIpcChannel) {
    throw new EnvironmentError(
      `environment variable ${STOP_AFTER_ITEMS_ENV} is a test hook of the local job runner and is refused here ` +
        `(no IPC channel to a local runner): remove it from this job's environment`,
    );
  }
  const limit = Number(raw);
  if (!Number.isInteger(limit) || limit < 1) {
    throw new EnvironmentError(`environment variable ${STOP_AFTER_ITEMS_ENV} must be a whole number >= 1, got "${raw}"`);
  }
  return (recorded) => {
    if (recorded === limit) stop();
  };
}
