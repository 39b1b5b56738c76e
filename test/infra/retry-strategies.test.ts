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

  it('stays within the conditions AWS Batch accepts', () => {
    assert.ok(stageRetryStrategies('fargate-spot').length <= MAX_EVALUATE_ON_EXIT);
    assert.equal(stageRetryStrategies('ec2-spot').length, NON_RETRYABLE_EXIT_CODES.length + 2);
  });
});
