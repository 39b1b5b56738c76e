/**
 * Bounded concurrency over a (possibly async, possibly endless) stream of items: at most
 * `concurrency` calls of `fn` are in flight, items are pulled one at a time as slots free up (so a
 * streamed chunk file is never read ahead of the work), and completion order is not preserved.
 *
 * The first error thrown by `fn` (or by the iterator) stops the pulling of new items; the calls
 * already in flight are allowed to settle, then that first error is thrown. Later errors are
 * dropped (the first one is the cause).
 */
export async function forEachConcurrent<T>(
  items: Iterable<T> | AsyncIterable<T>,
  concurrency: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`concurrency must be a whole number >= 1, got ${concurrency}`);
  }
  const isAsync = Symbol.asyncIterator in Object(items);
  const iterator: Iterator<T> | AsyncIterator<T> = isAsync
    ? (items as AsyncIterable<T>)[Symbol.asyncIterator]()
    : (items as Iterable<T>)[Symbol.iterator]();

  let failed = false;
  let firstError: unknown;
  let exhausted = false;
  // Pulls are chained: iterators are not required to support overlapping next() calls.
  let pulling: Promise<unknown> = Promise.resolve();

  const fail = (err: unknown) => {
    if (!failed) {
      failed = true;
      firstError = err;
    }
  };

  const pull = (): Promise<IteratorResult<T> | undefined> => {
    const next = pulling.then(async () => {
      if (failed || exhausted) return undefined;
      const result = await iterator.next();
      if (result.done) exhausted = true;
      return result;
    });
    pulling = next.catch(() => undefined);
    return next;
  };

  const worker = async () => {
    for (;;) {
      let result: IteratorResult<T> | undefined;
      try {
        result = await pull();
      } catch (err) {
        exhausted = true; // an iterator that threw is finished
        fail(err);
        return;
      }
      if (result === undefined || result.done) return;
      try {
        await fn(result.value);
      } catch (err) {
        fail(err);
        return;
      }
    }
  };

  // A synchronous source (an array of work items) is pulled in place: no promise per pull.
  const syncIterator = iterator as Iterator<T>;
  const syncWorker = async () => {
    for (;;) {
      if (failed || exhausted) return;
      let result: IteratorResult<T>;
      try {
        result = syncIterator.next();
      } catch (err) {
        exhausted = true;
        fail(err);
        return;
      }
      if (result.done) {
        exhausted = true;
        return;
      }
      try {
        await fn(result.value);
      } catch (err) {
        fail(err);
        return;
      }
    }
  };

  await Promise.all(Array.from({ length: concurrency }, isAsync ? worker : syncWorker));

  if (failed && !exhausted && typeof iterator.return === 'function') {
    // Let the source release what it holds (a file stream, a network body).
    try {
      await iterator.return();
    } catch {
      // the first error is the one that matters
    }
  }
  if (failed) throw firstError;
}
