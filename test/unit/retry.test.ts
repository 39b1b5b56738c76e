import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PermanentError, TransientError } from '../../runtime/errors';
import { abortableSleep, backoffDelayMs, runWithRetry, type RetryPolicy } from '../../runtime/retry';

const policy: RetryPolicy = { maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 1_000 };
const noSleep = async () => {};

describe('backoffDelayMs', () => {
  it('given the largest jitter draw, doubles the ceiling with each failed attempt', () => {
    const top = () => 0.999999;
    const delays = [1, 2, 3, 4].map((a) => backoffDelayMs(a, policy, undefined, top));
    assert.deepEqual(delays, [99, 199, 399, 799]);
  });

  it('given the smallest jitter draw, waits nothing (full jitter)', () => {
    assert.equal(
      backoffDelayMs(3, policy, undefined, () => 0),
      0,
    );
  });

  it('given many failed attempts, never waits longer than maxDelayMs', () => {
    for (const attempt of [5, 10, 60, 2_000]) {
      assert.ok(backoffDelayMs(attempt, policy, undefined, () => 0.999999) <= policy.maxDelayMs);
    }
  });

  it('given any draw, stays within [0, ceiling]', () => {
    let seed = 1;
    const random = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
    for (let i = 0; i < 1_000; i++) {
      const attempt = 1 + (i % 6);
      const d = backoffDelayMs(attempt, policy, undefined, random);
      assert.ok(d >= 0 && d <= Math.min(1_000, 100 * 2 ** (attempt - 1)), `attempt ${attempt}: ${d}`);
    }
  });

  it('given a Retry-After longer than the back-off, waits the Retry-After', () => {
    assert.equal(
      backoffDelayMs(1, policy, 700, () => 0.5),
      700,
    );
  });

  it('given a Retry-After longer than maxDelayMs, caps it at maxDelayMs', () => {
    assert.equal(
      backoffDelayMs(1, policy, 60_000, () => 0.5),
      1_000,
    );
  });
});

describe('runWithRetry', () => {
  it('given a call that succeeds at once, returns its value after one attempt', async () => {
    const out = await runWithRetry(async () => 42, policy, { sleep: noSleep });
    assert.deepEqual(out, { ok: true, value: 42, attempts: 1 });
  });

  it('given transient failures then success, retries and counts the attempts', async () => {
    const retries: number[] = [];
    const out = await runWithRetry(
      async (attempt) => {
        if (attempt < 3) throw new TransientError('HTTP 503');
        return 'ok';
      },
      policy,
      { sleep: noSleep, onRetry: (a) => retries.push(a) },
    );
    assert.deepEqual(out, { ok: true, value: 'ok', attempts: 3 });
    assert.deepEqual(retries, [1, 2]);
  });

  it('given a permanent failure, fails at once without retrying', async () => {
    let calls = 0;
    const out = await runWithRetry(
      async () => {
        calls++;
        throw new PermanentError('HTTP 404 Not Found from GET http://x/');
      },
      policy,
      { sleep: noSleep },
    );
    assert.deepEqual(out, { ok: false, error: 'HTTP 404 Not Found from GET http://x/', attempts: 1 });
    assert.equal(calls, 1);
  });

  it('given transient failures every time, gives up after maxAttempts with the last reason', async () => {
    let calls = 0;
    const out = await runWithRetry(
      async () => {
        calls++;
        throw new TransientError(`HTTP 503 #${calls}`);
      },
      policy,
      { sleep: noSleep },
    );
    assert.equal(calls, 4);
    assert.deepEqual(out, { ok: false, error: 'HTTP 503 #4 (gave up after 4 attempts)', attempts: 4 });
  });

  it('given an unknown error, fails at once as unexpected', async () => {
    let calls = 0;
    const out = await runWithRetry(
      async () => {
        calls++;
        throw new TypeError('cannot read properties of undefined');
      },
      policy,
      { sleep: noSleep },
    );
    assert.deepEqual(out, { ok: false, error: 'unexpected error: cannot read properties of undefined', attempts: 1 });
    assert.equal(calls, 1);
  });

  it('given a Retry-After on the error, waits at least that long before the next attempt', async () => {
    const waits: number[] = [];
    await runWithRetry(
      async (attempt) => {
        if (attempt === 1) throw new TransientError('HTTP 429', 800);
        return 1;
      },
      policy,
      { sleep: async (ms) => void waits.push(ms), random: () => 0 },
    );
    assert.deepEqual(waits, [800]);
  });

  it('given the signal aborts during a back-off, rejects with the abort reason and makes no further call', async () => {
    const controller = new AbortController();
    let calls = 0;
    const run = runWithRetry(
      async () => {
        calls++;
        throw new TransientError('HTTP 503');
      },
      { maxAttempts: 5, baseDelayMs: 60_000, maxDelayMs: 60_000 },
      { signal: controller.signal, random: () => 0.9 },
    );
    setImmediate(() => controller.abort(new Error('shutting down')));
    await assert.rejects(run, /shutting down/);
    assert.equal(calls, 1);
  });

  describe('with back-pressure (concurrency "auto")', () => {
    /** A fake clock the sleeps move forward. */
    function clock() {
      let now = 0;
      return { now: () => now, sleep: async (ms: number) => void (now += ms) };
    }
    const backPressure = (c: { now(): number }, maxWaitMs = 900_000) => ({
      test: (err: TransientError) => err.kind === 'throttled',
      maxWaitMs,
      delayMs: (err: TransientError) => err.retryAfterMs ?? 1_000,
      now: c.now,
    });

    it('given refusals, waits them out without using up an attempt', async () => {
      const c = clock();
      let calls = 0;
      const out = await runWithRetry(
        async () => {
          calls++;
          if (calls <= 10) throw new TransientError('HTTP 429', 1_000, 'throttled');
          if (calls <= 12) throw new TransientError('HTTP 500');
          return 'ok';
        },
        { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 1 },
        { sleep: c.sleep, backPressure: backPressure(c) },
      );
      assert.deepEqual(out, { ok: true, value: 'ok', attempts: 13 }, '10 refusals and 2 failures within 3 attempts');
    });

    it('given other transient failures, still gives up after maxAttempts', async () => {
      const c = clock();
      const out = await runWithRetry(
        async () => {
          throw new TransientError('HTTP 503', undefined, 'unavailable');
        },
        { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 1 },
        { sleep: c.sleep, backPressure: backPressure(c) },
      );
      assert.equal(out.ok, false);
      assert.equal(out.attempts, 3);
    });

    it('given refusals past maxWaitMs, fails and says the source kept refusing', async () => {
      const c = clock();
      let calls = 0;
      const out = await runWithRetry(
        async () => {
          calls++;
          throw new TransientError('HTTP 429 Too Many Requests from GET http://x/', 60_000, 'throttled');
        },
        { maxAttempts: 5, baseDelayMs: 1, maxDelayMs: 1 },
        { sleep: c.sleep, backPressure: backPressure(c, 15 * 60_000) },
      );
      assert.equal(out.ok, false);
      assert.equal(calls, 16, 'refused at 0, 1, ..., 15 minutes');
      if (!out.ok) assert.match(out.error, /HTTP 429 .*kept refusing the call for 900 s, past retry\.maxWaitMs 900000 ms; 16 calls/);
    });
  });
});

describe('abortableSleep', () => {
  it('given sleeps of different lengths, each ends after its own, the shortest first; an aborted one rejects and leaves the others', async () => {
    const ended: string[] = [];
    const controller = new AbortController();
    const sleep = (ms: number, signal?: AbortSignal) =>
      abortableSleep(ms, signal).then(
        () => void ended.push(`${ms}`),
        (err: unknown) => void ended.push(`${ms} aborted: ${(err as Error).message}`),
      );
    const all = Promise.all([sleep(60), sleep(20), sleep(40, controller.signal), sleep(0), sleep(30)]);
    controller.abort(new Error('stop'));
    await all;
    assert.deepEqual(ended, ['40 aborted: stop', '0', '20', '30', '60']);
  });
});
