/**
 * Adaptive concurrency (AimdLimit: each step on each signal) and the gate every call passes
 * (SourceGuard: the limit, a fleet ceiling, a Retry-After pause of the whole origin). Fake clock.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { AimdLimit, isBackPressure, loadSignalOf, SourceGuard } from '../../../batch-jobs/http/source-guard';
import { TransientError } from '../../../runtime/errors';

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('AimdLimit', () => {
  it('in slow start, adds one per fast success (doubling every round trip)', () => {
    const aimd = new AimdLimit({ max: 100, initial: 4 });
    for (let k = 0; k < 4; k++) aimd.onSuccess(0, 50);
    assert.equal(aimd.limit, 8);
    assert.equal(aimd.inSlowStart, true);
  });

  it('does not grow on a success whose latency is more than twice the baseline', () => {
    const aimd = new AimdLimit({ max: 100, initial: 4 });
    aimd.onSuccess(0, 50);
    assert.equal(aimd.limit, 5);
    aimd.onSuccess(0, 500);
    assert.equal(aimd.limit, 5, 'a slow answer: latency is not flat');
  });

  it('halves on the first refusal, leaves slow start, then cuts to 0.7 once per round of calls', () => {
    const aimd = new AimdLimit({ max: 100, initial: 40 });
    aimd.onSignal('refused', 100, 200);
    assert.equal(aimd.limit, 20);
    assert.equal(aimd.inSlowStart, false);
    aimd.onSignal('refused', 150, 210);
    assert.equal(aimd.limit, 20, 'a call started before the cut says nothing new');
    aimd.onSignal('refused', 205, 300);
    assert.equal(aimd.limit, 14);
  });

  it('after a cut, grows by one per round trip up to 90% of the refused level, then probes a tenth more per probe interval', () => {
    const aimd = new AimdLimit({ max: 100, initial: 20, probeIntervalMs: 5_000 });
    aimd.onSignal('refused', 0, 0); // 20 -> 10; refused at 20
    for (let k = 0; k < 10; k++) aimd.onSuccess(10, 60);
    assert.equal(aimd.limit, 10, 'ten successes at a limit of 10: +1 (not yet over 10.99)');
    aimd.onSuccess(10, 60);
    assert.equal(aimd.limit, 11);
    for (let k = 0; k < 200; k++) aimd.onSuccess(100, 150);
    assert.equal(aimd.window, 18, 'fast growth stops at 90% of 20');
    aimd.onSuccess(4_000, 4_050);
    assert.equal(aimd.window, 18, 'no probe within 5 s of the cut');
    aimd.onSuccess(5_000, 5_050);
    assert.ok(Math.abs(aimd.window - 19.8) < 1e-9, `a probe: a tenth more (${aimd.window})`);
  });

  it('probes sooner each time a probe is not refused, and waits the whole interval again after a cut', () => {
    const aimd = new AimdLimit({ max: 1_000, initial: 10, probeIntervalMs: 4_000 });
    aimd.onSuccess(0, 50); // baseline 50 ms, slow start: 11
    aimd.onSignal('refused', 100, 100); // 11 -> 5.5; refused at 11
    for (let k = 0; k < 100; k++) aimd.onSuccess(200, 250);
    const probes: number[] = [];
    let last = aimd.window;
    for (let t = 300; t < 12_000; t += 10) {
      aimd.onSuccess(t - 50, t);
      if (aimd.window !== last) probes.push(t);
      last = aimd.window;
    }
    // Probes 4 s after the cut, then 2 s, 1 s, 0.5 s... later, down to two round trips.
    assert.deepEqual(probes.slice(0, 4), [4_100, 6_100, 7_100, 7_600]);
    assert.ok(probes.length > 20, `after a while it probes every two round trips (${probes.length} probes)`);
    const before = aimd.window;
    aimd.onSignal('refused', 12_000, 12_000);
    assert.ok(Math.abs(aimd.window - before * 0.7) < 1e-9);
    for (let t = 12_010; t < 16_000; t += 10) aimd.onSuccess(t - 50, t);
    assert.ok(aimd.window <= 0.9 * before + 1e-9, 'no probe within 4 s of the new cut');
  });

  it('cuts by 0.9 on 503s and timeouts only when they make more than 15% of recent calls', () => {
    const aimd = new AimdLimit({ max: 100, initial: 20 });
    // 8% of calls are 503s: a flaky source, not an overloaded one
    for (let k = 0; k < 500; k++) {
      if (k % 12 === 0) aimd.onSignal('loss', k, k + 50);
      else aimd.onSuccess(k, k + 50);
    }
    assert.ok(aimd.limit > 20, `a flaky source does not collapse the limit (${aimd.limit})`);
    const before = aimd.limit;
    for (let k = 0; k < 20; k++) aimd.onSignal('loss', 1_000 + k * 100, 1_050 + k * 100);
    assert.ok(aimd.limit < before, 'a run of 503s cuts it');
    assert.ok(aimd.limit >= before * 0.9 ** 20 && aimd.limit >= 1);
  });

  it('stays between 1 and the maximum', () => {
    const aimd = new AimdLimit({ max: 6, initial: 4 });
    for (let k = 0; k < 50; k++) aimd.onSuccess(0, 10);
    assert.equal(aimd.limit, 6);
    for (let k = 0; k < 50; k++) aimd.onSignal('refused', k * 100, k * 100 + 1);
    assert.equal(aimd.limit, 1);
  });

  it('tells refusals (429, 503 with Retry-After) from losses (503, timeout) and the rest', () => {
    assert.equal(loadSignalOf(new TransientError('429', 1000, 'throttled')), 'refused');
    assert.equal(loadSignalOf(new TransientError('429', undefined, 'throttled')), 'refused');
    assert.equal(loadSignalOf(new TransientError('503', 2000, 'unavailable')), 'refused');
    assert.equal(loadSignalOf(new TransientError('503', undefined, 'unavailable')), 'loss');
    assert.equal(loadSignalOf(new TransientError('timeout', undefined, 'timeout')), 'loss');
    assert.equal(loadSignalOf(new TransientError('reset')), 'other');
    assert.equal(isBackPressure(new TransientError('503', undefined, 'unavailable')), false);
  });
});

describe('SourceGuard', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 }));
  afterEach(() => mock.timers.reset());

  function acquireMany(guard: SourceGuard, n: number, signal?: AbortSignal) {
    const admitted: number[] = [];
    for (let i = 0; i < n; i++)
      void guard.acquire(signal).then(
        () => admitted.push(i),
        () => undefined,
      );
    return admitted;
  }

  it('admits up to the fixed limit, and the next waiter when a call ends', async () => {
    const guard = new SourceGuard({ mode: 'fixed', max: 3, now: () => Date.now() });
    const admitted = acquireMany(guard, 5);
    await flush();
    assert.deepEqual(admitted, [0, 1, 2]);
    guard.succeeded(0);
    await flush();
    assert.deepEqual(admitted, [0, 1, 2, 3]);
  });

  it("keeps under the fleet's ceiling, and lifts it again", async () => {
    const guard = new SourceGuard({ mode: 'fixed', max: 10, now: () => Date.now() });
    guard.setCeiling(2);
    const admitted = acquireMany(guard, 5);
    await flush();
    assert.equal(admitted.length, 2);
    guard.setCeiling(undefined);
    await flush();
    assert.equal(admitted.length, 5);
  });

  it('in auto mode, a Retry-After pauses every call to the origin for that long', async () => {
    const guard = new SourceGuard({ mode: 'auto', max: 64, aimd: { initial: 8 }, now: () => Date.now() });
    const first = acquireMany(guard, 2);
    await flush();
    assert.equal(first.length, 2);

    // when one call is refused with Retry-After: 1
    guard.failed(0, new TransientError('HTTP 429', 1_000, 'throttled'));
    const held = acquireMany(guard, 3);
    await flush();

    // then nobody is admitted for a second, though slots are free
    assert.equal(guard.paused, true);
    assert.equal(held.length, 0);
    mock.timers.tick(999);
    await flush();
    assert.equal(held.length, 0);
    mock.timers.tick(1);
    await flush();
    assert.equal(held.length, 3);
    assert.equal(guard.pauseCount, 1);
    assert.equal(guard.limit, 4, 'and the limit was halved (8 -> 4)');
  });

  it('in fixed mode, a Retry-After holds only the refused item (its own back-off), not the origin', async () => {
    const guard = new SourceGuard({ mode: 'fixed', max: 4, now: () => Date.now() });
    await guard.acquire();
    guard.failed(0, new TransientError('HTTP 429', 1_000, 'throttled'));
    const admitted = acquireMany(guard, 2);
    await flush();
    assert.equal(admitted.length, 2);
    assert.equal(guard.limit, 4);
  });

  it('in auto mode, paces calls at the window per baseline latency, so a fractional window holds on average', async () => {
    const guard = new SourceGuard({ mode: 'auto', max: 64, aimd: { initial: 4 }, now: () => Date.now() });
    // a baseline of 100 ms, then a refusal: the window falls to 2.5 (slow start had reached 5)
    await guard.acquire();
    guard.succeeded(Date.now() - 100);
    await guard.acquire();
    guard.failed(Date.now(), new TransientError('HTTP 429', undefined, 'throttled'));
    assert.equal(guard.aimd?.window, 2.5);
    assert.equal(guard.limit, 3, 'three calls may be in flight');

    // when 20 calls wait, each answered at once, for two seconds
    const started: number[] = [];
    for (let i = 0; i < 20; i++)
      void guard.acquire().then(() => {
        started.push(Date.now());
        guard.release();
      });
    for (let t = 0; t < 2_000; t += 5) {
      await flush();
      mock.timers.tick(5);
    }
    await flush();

    // then one starts every 40 ms (100 ms / 2.5): 2.5 calls per round trip, not 3 at once
    assert.equal(started.length, 20);
    const gaps = started.slice(2).map((t, i) => t - started[i + 1]!);
    assert.ok(
      gaps.every((g) => g >= 40 && g <= 45),
      `gaps ${gaps.join(',')}`,
    );
  });

  it('lets a waiter go when its signal aborts', async () => {
    const guard = new SourceGuard({ mode: 'fixed', max: 1, now: () => Date.now() });
    await guard.acquire();
    const controller = new AbortController();
    const waiting = guard.acquire(controller.signal);
    controller.abort(new Error('stop'));
    await assert.rejects(waiting, /stop/);
    assert.equal(guard.waiting, 0);
  });
});
