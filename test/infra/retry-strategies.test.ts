/** Retry strategies of the job stages, built from runtime/errors.ts exit codes. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Action } from 'aws-cdk-lib/aws-batch';
import { ExitCode, NON_RETRYABLE_EXIT_CODES } from '../../runtime/errors';
import { MAX_EVALUATE_ON_EXIT, stageRetryStrategies } from '../../lib/retry-strategies';

describe('stage retry strategies', () => {
  it('evaluates the Spot reclaim first, so a reclaimed job is retried whatever its exit code', () => {
    const [first] = stageRetryStrategies('ec2-spot');
    assert.equal(first!.action, Action.RETRY);
    assert.deepEqual(first!.on, { onStatusReason: 'Host EC2*' });
  });

  it('exits at once on bad input and bad config, before the catch-all retry', () => {
    const strategies = stageRetryStrategies('fargate-spot');
    const exits = strategies.filter((s) => s.action === Action.EXIT).map((s) => s.on);
    assert.deepEqual(exits, [{ onExitCode: String(ExitCode.BAD_INPUT) }, { onExitCode: String(ExitCode.BAD_CONFIG) }]);
    assert.deepEqual(strategies.at(-1)!.on, { onExitCode: '*' });
    assert.equal(strategies.at(-1)!.action, Action.RETRY);
  });

  it('has a condition per non-retryable exit code, between the Spot reclaim and the catch-all', () => {
    assert.equal(stageRetryStrategies('ec2-spot').length, NON_RETRYABLE_EXIT_CODES.length + 2);
  });

  it('refuses more exit codes than the conditions AWS Batch accepts', () => {
    // Given four non-retryable codes: with the Spot reclaim and the catch-all, six conditions
    const codes = [10, 11, 12, 13];
    assert.equal(codes.length + 2, MAX_EVALUATE_ON_EXIT + 1);
    assert.throws(
      () => stageRetryStrategies('fargate-spot', codes),
      /has 4 codes: .* makes 6 retry conditions, more than the 5 AWS Batch accepts/,
    );
    // and three still fit
    assert.equal(stageRetryStrategies('fargate-spot', codes.slice(0, 3)).length, MAX_EVALUATE_ON_EXIT);
  });
});
