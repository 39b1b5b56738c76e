/**
 * Batch retry strategies of the job stages, keyed on the exit codes of `runtime/errors.ts`:
 * a Spot reclaim or a lost host is retried, bad input or bad config exits at once (a retry
 * cannot help), any other non-zero exit (storage, table, mail, a crash) is retried.
 */
import * as batch from 'aws-cdk-lib/aws-batch';
import type { ComputeKind } from '../runtime/config/schema';
import { NON_RETRYABLE_EXIT_CODES } from '../runtime/errors';

/** Where a pipeline's jobs run (the pipelines config's `compute`). */
export type { ComputeKind };

/**
 * Status reason AWS Batch reports when the capacity under a job is taken back: an EC2 Spot
 * instance reclaimed or a host terminated ("Host EC2 (instance i-...) terminated."), or a
 * Fargate Spot task interrupted ("Your Spot Task was interrupted.").
 */
export const SPOT_RECLAIM_STATUS_REASON: Readonly<Record<ComputeKind, string>> = {
  'ec2-spot': 'Host EC2*',
  'fargate-spot': 'Your Spot Task was interrupted*',
};

/** AWS Batch evaluates at most this many conditions per retry strategy. */
export const MAX_EVALUATE_ON_EXIT = 5;

/**
 * The stage retry strategies for a compute kind, in the order Batch evaluates them (first match
 * wins; a failure that matches none is retried, as Batch documents). `nonRetryableExitCodes`
 * exit at once; a list too long for Batch's five conditions throws.
 */
export function stageRetryStrategies(
  compute: ComputeKind,
  nonRetryableExitCodes: readonly number[] = NON_RETRYABLE_EXIT_CODES,
): batch.RetryStrategy[] {
  const strategies = [
    batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.custom({ onStatusReason: SPOT_RECLAIM_STATUS_REASON[compute] })),
    ...nonRetryableExitCodes.map((code) => batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom({ onExitCode: String(code) }))),
    batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.NON_ZERO_EXIT_CODE),
  ];
  if (strategies.length > MAX_EVALUATE_ON_EXIT) {
    throw new Error(
      `NON_RETRYABLE_EXIT_CODES has ${nonRetryableExitCodes.length} codes: with the Spot reclaim and catch-all rules that makes ` +
        `${strategies.length} retry conditions, more than the ${MAX_EVALUATE_ON_EXIT} AWS Batch accepts`,
    );
  }
  return strategies;
}
