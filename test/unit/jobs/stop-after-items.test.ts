/**
 * The local runner's stop-after-items test hook (batch-jobs/stop-after-items.ts): it stops a fan-out
 * child at exactly the Nth outcome of the attempt, and it is refused outside the local runner, so a
 * job definition that sets it by accident fails at start instead of stopping real runs.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { main } from '../../../batch-jobs/main';
import { STOP_AFTER_ITEMS_ENV, stopAfterItemsHook } from '../../../batch-jobs/stop-after-items';
import { EnvironmentError, ExitCode } from '../../../runtime/errors';

const local = { FANOUT_EVENTS: 'ipc', [STOP_AFTER_ITEMS_ENV]: '4' };

describe('stop-after-items hook', () => {
  it('is off when the variable is not set', () => {
    assert.equal(stopAfterItemsHook({ FANOUT_EVENTS: 'ipc' }, true), undefined);
  });

  it('stops the child once, at the Nth outcome of the attempt', () => {
    // Given N = 4 under the local runner
    const stops: number[] = [];
    let recorded = 0;
    const hook = stopAfterItemsHook(local, true, () => stops.push(recorded));
    assert.ok(hook);
    // When ten outcomes are recorded
    for (recorded = 1; recorded <= 10; recorded++) hook(recorded);
    // Then the stop came once, at the fourth
    assert.deepEqual(stops, [4]);
  });

  it('is refused without an IPC channel to the local runner, saying to remove it', () => {
    assert.throws(
      () => stopAfterItemsHook(local, false, () => assert.fail('must not stop')),
      (err: unknown) =>
        err instanceof EnvironmentError &&
        /FANOUT_TEST_STOP_AFTER_ITEMS is a test hook of the local job runner.*remove it from this job's environment/.test(err.message),
    );
  });

  it('is honoured with an IPC channel whatever FANOUT_EVENTS says (the twin delivers split-done through SNS)', () => {
    assert.equal(typeof stopAfterItemsHook({ [STOP_AFTER_ITEMS_ENV]: '4' }, true), 'function');
  });

  it('names the variable and the value when it is not a whole number >= 1', () => {
    for (const bad of ['0', '2.5', 'ten']) {
      assert.throws(
        () => stopAfterItemsHook({ ...local, [STOP_AFTER_ITEMS_ENV]: bad }, true),
        new RegExp(`${STOP_AFTER_ITEMS_ENV} must be a whole number >= 1, got "${bad}"`),
      );
    }
  });

  it('fails a job that sets it outside the local runner at start, with the bad-config exit code (not retried)', async () => {
    const code = await main(['fanout'], {
      FANOUT_RUN_ID: 'run-1',
      FANOUT_BUCKET: 'bucket',
      FANOUT_TABLE: 'table',
      AWS_REGION: 'eu-west-1',
      [STOP_AFTER_ITEMS_ENV]: '4',
    });
    assert.equal(code, ExitCode.BAD_CONFIG);
  });
});
