import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { forEachConcurrent } from '../../../runtime/pool';

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('forEachConcurrent', () => {
  it('given more items than slots, never has more than N calls in flight and calls every item once', async () => {
    let inFlight = 0;
    let peak = 0;
    const seen: number[] = [];
    await forEachConcurrent(
      Array.from({ length: 100 }, (_, i) => i),
      7,
      async (i) => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        for (let k = 0; k < (i % 5) + 1; k++) await tick();
        seen.push(i);
        inFlight--;
      },
    );
    assert.equal(peak, 7);
    assert.deepEqual(
      seen.sort((a, b) => a - b),
      Array.from({ length: 100 }, (_, i) => i),
    );
  });

  it('given an async iterable, pulls items only as slots free up', async () => {
    let pulled = 0;
    let maxAhead = 0;
    let finished = 0;
    async function* source() {
      for (let i = 0; i < 30; i++) {
        pulled++;
        maxAhead = Math.max(maxAhead, pulled - finished);
        yield i;
      }
    }
    await forEachConcurrent(source(), 4, async () => {
      await tick();
      finished++;
    });
    assert.equal(finished, 30);
    assert.ok(maxAhead <= 4, `pulled ${maxAhead} items ahead of the work`);
  });

  it('given a call that throws, lets the calls in flight settle, starts no new one, then throws the first error', async () => {
    let started = 0;
    let settled = 0;
    const run = forEachConcurrent(
      Array.from({ length: 50 }, (_, i) => i),
      5,
      async (i) => {
        started++;
        await tick();
        if (i === 2) throw new Error('item 2 broke');
        if (i === 3) {
          await tick();
          throw new Error('item 3 broke too');
        }
        await tick();
        settled++;
      },
    );
    await assert.rejects(run, /item 2 broke/);
    assert.equal(started, 5);
    assert.equal(settled, 3);
  });

  it('given a failure, closes the async source', async () => {
    let closed = false;
    async function* source() {
      try {
        for (let i = 0; ; i++) yield i;
      } finally {
        closed = true;
      }
    }
    await assert.rejects(
      forEachConcurrent(source(), 3, async (i) => {
        if (i === 4) throw new Error('boom');
      }),
      /boom/,
    );
    assert.equal(closed, true);
  });

  it('given an iterator that throws, propagates its error', async () => {
    async function* source() {
      yield 1;
      throw new Error('chunk file truncated');
    }
    await assert.rejects(
      forEachConcurrent(source(), 2, async () => {}),
      /chunk file truncated/,
    );
  });

  it('given no items, resolves without calling', async () => {
    let calls = 0;
    await forEachConcurrent([], 4, async () => void calls++);
    assert.equal(calls, 0);
  });

  it('given a concurrency below 1, refuses it', async () => {
    await assert.rejects(
      forEachConcurrent([1], 0, async () => {}),
      /concurrency/,
    );
  });
});
