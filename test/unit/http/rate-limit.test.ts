import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { RateLimiter } from '../../../batch-jobs/http/rate-limit';

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('RateLimiter', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 }));
  afterEach(() => mock.timers.reset());

  /** Starts n acquires; returns the order in which they were granted. */
  function startAcquires(limiter: RateLimiter, n: number, signal?: AbortSignal) {
    const granted: number[] = [];
    const settled = Array.from({ length: n }, (_, i) =>
      limiter.acquire(signal).then(
        () => void granted.push(i),
        () => undefined,
      ),
    );
    return { granted, settled };
  }

  it('given a full bucket, grants the burst at once and makes the rest wait', async () => {
    const limiter = new RateLimiter(10, 3, { now: () => Date.now() });
    const { granted } = startAcquires(limiter, 10);
    await flush();
    assert.equal(granted.length, 3);
    assert.equal(limiter.waiting, 7);
  });

  it('given waiting callers, grants one token per 1/rate seconds', async () => {
    const limiter = new RateLimiter(10, 1, { now: () => Date.now() });
    const { granted } = startAcquires(limiter, 20);
    await flush();
    const counts: number[] = [granted.length];
    for (let step = 0; step < 5; step++) {
      mock.timers.tick(100);
      await flush();
      counts.push(granted.length);
    }
    assert.deepEqual(counts, [1, 2, 3, 4, 5, 6]);
  });

  it('given one second of waiting at 50/s, grants burst + 50 tokens, no more', async () => {
    const limiter = new RateLimiter(50, 5, { now: () => Date.now() });
    const { granted } = startAcquires(limiter, 200);
    await flush();
    for (let t = 0; t < 1_000; t += 10) {
      mock.timers.tick(10);
      await flush();
    }
    assert.equal(granted.length, 5 + 50);
  });

  it('given several waiters, grants them in arrival order', async () => {
    const limiter = new RateLimiter(10, 1, { now: () => Date.now() });
    const { granted } = startAcquires(limiter, 6);
    for (let step = 0; step < 6; step++) {
      mock.timers.tick(100);
      await flush();
    }
    assert.deepEqual(granted, [0, 1, 2, 3, 4, 5]);
  });

  it('given a caller arriving while others wait, queues it behind them even after a refill', async () => {
    const limiter = new RateLimiter(10, 1, { now: () => Date.now() });
    const order: string[] = [];
    void limiter.acquire().then(() => order.push('first'));
    void limiter.acquire().then(() => order.push('waiting'));
    await flush();
    mock.timers.tick(50); // half a token: the waiter is still waiting
    void limiter.acquire().then(() => order.push('late'));
    mock.timers.tick(50);
    await flush();
    mock.timers.tick(100);
    await flush();
    assert.deepEqual(order, ['first', 'waiting', 'late']);
  });

  it('given a waiter whose signal aborts, rejects it and hands its turn to the next', async () => {
    const limiter = new RateLimiter(10, 1, { now: () => Date.now() });
    await limiter.acquire();
    const controller = new AbortController();
    const aborted = limiter.acquire(controller.signal);
    const next = limiter.acquire();
    controller.abort(new Error('stop'));
    await assert.rejects(aborted, /stop/);
    assert.equal(limiter.waiting, 1);
    mock.timers.tick(100);
    await next;
    assert.equal(limiter.grantedCount, 2);
  });

  it('given a rate that is not positive, refuses it', () => {
    assert.throws(() => new RateLimiter(0), /positive/);
  });

  it('given a new share of the fleet rate, serves the waiters at the new rate from then on', async () => {
    const limiter = new RateLimiter(10, 1, { now: () => Date.now() });
    const { granted } = startAcquires(limiter, 40);
    await flush();
    for (let t = 0; t < 500; t += 5) {
      mock.timers.tick(5);
      await flush();
    }
    assert.equal(granted.length, 1 + 5, 'burst + half a second at 10/s');
    limiter.setRate(40);
    for (let t = 0; t < 500; t += 5) {
      mock.timers.tick(5);
      await flush();
    }
    assert.equal(granted.length, 6 + 20, 'then half a second at 40/s');
    assert.equal(limiter.ratePerSecond, 40);
  });
});
