/**
 * Retry policy of fan-out tasks: exponential back-off with full jitter, honouring a server's
 * `Retry-After`, and the loop that calls one item's task until it succeeds, fails for good or runs
 * out of attempts.
 *
 * Classification comes from the error classes of `./errors`: a TransientError is retried, a
 * PermanentError fails the item at once, anything else is a bug or an unknown condition and fails
 * the item at once with "unexpected error: ..." (retrying an unknown error blindly could hammer the
 * data source with calls that cannot succeed).
 */
import { setMaxListeners } from 'node:events';
import { PermanentError, TransientError, errorMessage } from './errors';

export interface RetryPolicy {
  /** Calls per item, the first one included (>= 1). */
  maxAttempts: number;
  /** Back-off ceiling after the first failure; it doubles with each further failure. */
  baseDelayMs: number;
  /** Cap of any one delay, an honoured Retry-After included. */
  maxDelayMs: number;
}

/**
 * Exponential back-off with full jitter; honours Retry-After (capped at maxDelayMs).
 * attempt = the attempt that just failed (1-based).
 *
 * The delay is a uniform draw from [0, min(maxDelayMs, baseDelayMs * 2^(attempt-1))]; when the
 * server asked for `retryAfterMs`, the delay is at least that, and never more than maxDelayMs.
 */
export function backoffDelayMs(attempt: number, policy: RetryPolicy, retryAfterMs?: number, random: () => number = Math.random): number {
  const max = Math.max(0, policy.maxDelayMs);
  const exponent = Math.max(0, Math.floor(attempt) - 1);
  // 2^exponent overflows to Infinity for large attempts; Math.min keeps the ceiling at max.
  const ceiling = Math.min(max, Math.max(0, policy.baseDelayMs) * 2 ** exponent);
  const r = Math.min(Math.max(random(), 0), 1);
  let delay = Math.floor(r * ceiling);
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs > 0) {
    delay = Math.max(delay, Math.ceil(retryAfterMs));
  }
  return Math.min(delay, max);
}

export type RetryOutcome<T> = { ok: true; value: T; attempts: number } | { ok: false; error: string; attempts: number };

export interface RunWithRetryOptions {
  /**
   * Stops the loop: a pending back-off ends at once and runWithRetry rejects with the signal's
   * reason (an item interrupted by a shutdown has no outcome: a resumed child calls it again).
   */
  signal?: AbortSignal;
  /** Waits between attempts. @default - a timer, cut short by `signal` */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Source of jitter in [0, 1). @default Math.random */
  random?: () => number;
  /** Called before each back-off: the attempt that failed, its error, the delay about to be waited. */
  onRetry?: (attempt: number, error: Error, delayMs: number) => void;
  /**
   * Back-pressure (adaptive concurrency): refusals that `test` accepts (a 429, a 503 with
   * Retry-After) do not use up an attempt; the item waits and calls again, until it has been
   * refused for longer than `maxWaitMs` since its first refusal, and then fails saying so.
   * @default - every transient failure uses up an attempt
   */
  backPressure?: BackPressurePolicy;
}

export interface BackPressurePolicy {
  /** Whether a transient failure is the source pushing back. */
  test(err: TransientError): boolean;
  /** Longest an item keeps being refused, from its first refusal, before it fails. */
  maxWaitMs: number;
  /** Wait before the next call after the `refusals`-th refusal in a row (the origin's pause holds calls too). */
  delayMs(err: TransientError, refusals: number): number;
  /** Milliseconds, monotonic. */
  now(): number;
}

/**
 * Runs fn until success; TransientError retried up to maxAttempts, PermanentError fails at once; any
 * other error is a failure with "unexpected error: ..." (not retried). Aborted signal stops waiting.
 * With `backPressure`, refusals it accepts are waited out without using up an attempt (up to its
 * maxWaitMs). `fn` gets the call number (1 for the first); the outcome's `attempts` counts calls.
 *
 * Resolves with the outcome (never rejects for an error of `fn`); rejects only when `signal` is
 * aborted, with the signal's reason, so that an interrupted item is not recorded as failed.
 */
export async function runWithRetry<T>(
  fn: (attempt: number) => Promise<T>,
  policy: RetryPolicy,
  opts: RunWithRetryOptions = {},
): Promise<RetryOutcome<T>> {
  const { signal, sleep = abortableSleep, random = Math.random, onRetry, backPressure } = opts;
  const maxAttempts = Math.max(1, Math.floor(policy.maxAttempts));
  // `call` counts every call (what the outcome reports); `attempt` only those that use up the budget.
  let attempt = 0;
  let refusedSince: number | undefined;
  let refusals = 0;
  for (let call = 1; ; call++) {
    throwIfAborted(signal);
    let value: T;
    try {
      value = await fn(call);
    } catch (err) {
      throwIfAborted(signal);
      if (err instanceof PermanentError) {
        return { ok: false, error: err.message, attempts: call };
      }
      if (!(err instanceof TransientError)) {
        return { ok: false, error: `unexpected error: ${errorMessage(err)}`, attempts: call };
      }
      if (backPressure?.test(err)) {
        const now = backPressure.now();
        refusedSince ??= now;
        refusals++;
        if (now - refusedSince >= backPressure.maxWaitMs) {
          const waited = Math.round((now - refusedSince) / 1000);
          return {
            ok: false,
            error: `${err.message} (the data source kept refusing the call for ${waited} s, past retry.maxWaitMs ${backPressure.maxWaitMs} ms; ${call} calls)`,
            attempts: call,
          };
        }
        const delayMs = Math.max(0, backPressure.delayMs(err, refusals));
        onRetry?.(attempt, err, delayMs);
        if (delayMs > 0) await sleep(delayMs, signal);
        continue;
      }
      refusals = 0;
      attempt++;
      if (attempt >= maxAttempts) {
        const tries = attempt === 1 ? '1 attempt' : `${attempt} attempts`;
        return { ok: false, error: `${err.message} (gave up after ${tries})`, attempts: call };
      }
      const delayMs = backoffDelayMs(attempt, policy, err.retryAfterMs, random);
      onRetry?.(attempt, err, delayMs);
      if (delayMs > 0) await sleep(delayMs, signal);
      continue;
    }
    return { ok: true, value, attempts: call };
  }
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortReason(signal);
}

/**
 * Calls `fn` once when `signal` aborts; returns the function that stops listening. One shutdown
 * signal is shared by every request and waiter in flight, so the signal gets no listener limit.
 */
export function onAbort(signal: AbortSignal | undefined, fn: () => void): () => void {
  if (signal === undefined) return () => {};
  setMaxListeners(0, signal);
  signal.addEventListener('abort', fn, { once: true });
  return () => signal.removeEventListener('abort', fn);
}

/** What listens to a shared abort signal (see onSharedAbort). */
export interface AbortTarget {
  abortNow(): void;
}

const sharedAbortTargets = new WeakMap<AbortSignal, Set<AbortTarget>>();

/**
 * Calls `target.abortNow()` when `signal` aborts; returns the set to delete `target` from to stop
 * listening. Every request and back-off of a fan-out child shares one shutdown signal: one
 * listener per signal and a set of targets, instead of an event listener (and a closure) each.
 */
export function onSharedAbort(signal: AbortSignal | undefined, target: AbortTarget): Set<AbortTarget> | undefined {
  if (signal === undefined) return undefined;
  let targets = sharedAbortTargets.get(signal);
  if (!targets) {
    const set = new Set<AbortTarget>();
    targets = set;
    sharedAbortTargets.set(signal, set);
    signal.addEventListener(
      'abort',
      () => {
        for (const t of set) t.abortNow();
        set.clear();
      },
      { once: true },
    );
  }
  targets.add(target);
  return targets;
}

export function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const err = new Error(reason === undefined ? 'the operation was aborted' : `aborted: ${String(reason)}`);
  err.name = 'AbortError';
  return err;
}

/** setTimeout as a promise that rejects with the signal's reason when the signal aborts. */
export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    new Sleep(ms, signal, resolve, reject);
  });
}

/**
 * The sleeps in progress, in a binary heap by wake time, with one timer for the earliest. Back-off
 * delays are random, so a Node timer each would cost a timer list each (Node keeps one per
 * distinct duration); a flaky source makes thousands of them a minute.
 */
class Sleeps {
  private readonly heap: Sleep[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** When the timer fires (performance.now() ms); Infinity when none is set. */
  private timerAt = Number.POSITIVE_INFINITY;

  add(sleep: Sleep): void {
    sleep.index = this.heap.length;
    this.heap.push(sleep);
    this.up(sleep.index);
    if (sleep.wakeAt < this.timerAt) this.arm(sleep.wakeAt);
  }

  remove(sleep: Sleep): void {
    const at = sleep.index;
    if (at < 0) return;
    sleep.index = -1;
    const last = this.heap.pop()!;
    if (last !== sleep) {
      this.heap[at] = last;
      last.index = at;
      this.down(at);
      this.up(last.index);
    }
    if (this.heap.length === 0 && this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.timerAt = Number.POSITIVE_INFINITY;
    }
  }

  /** The timer fired: every sleep past its wake time ends; the timer is set for the next one. */
  due(): void {
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    const now = performance.now();
    while (this.heap.length > 0 && this.heap[0]!.wakeAt <= now) {
      const sleep = this.heap[0]!;
      this.remove(sleep);
      sleep.over();
    }
    if (this.heap.length > 0) this.arm(this.heap[0]!.wakeAt);
  }

  private arm(at: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = at;
    // Node runs a timer past its largest delay (about 24.8 days) after 1 ms: wait at most that, then again.
    this.timer = setTimeout(sleepsDue, Math.min(TIMER_MAX_MS, Math.max(1, Math.ceil(at - performance.now()))), this);
  }

  private up(at: number): void {
    const heap = this.heap;
    const item = heap[at]!;
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (heap[parent]!.wakeAt <= item.wakeAt) break;
      heap[at] = heap[parent]!;
      heap[at]!.index = at;
      at = parent;
    }
    heap[at] = item;
    item.index = at;
  }

  private down(at: number): void {
    const heap = this.heap;
    const item = heap[at]!;
    for (;;) {
      const left = 2 * at + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && heap[right]!.wakeAt < heap[left]!.wakeAt ? right : left;
      if (heap[child]!.wakeAt >= item.wakeAt) break;
      heap[at] = heap[child]!;
      heap[at]!.index = at;
      at = child;
    }
    heap[at] = item;
    item.index = at;
  }
}

function sleepsDue(sleeps: Sleeps): void {
  sleeps.due();
}

const sleeps = new Sleeps();
const TIMER_MAX_MS = 2 ** 31 - 1;

/** One back-off in progress: its wake time, its place in the heap and among the signal's targets, in one object. */
class Sleep implements AbortTarget {
  readonly wakeAt: number;
  /** Where it is in the heap; -1 once it has ended. */
  index = -1;
  private readonly listening: Set<AbortTarget> | undefined;

  constructor(
    ms: number,
    private readonly signal: AbortSignal | undefined,
    private readonly resolve: () => void,
    private readonly reject: (err: Error) => void,
  ) {
    // As setTimeout: NaN, negative and infinite delays are (about) none.
    this.wakeAt = performance.now() + (Number.isFinite(ms) && ms > 0 ? ms : 0);
    sleeps.add(this);
    this.listening = onSharedAbort(signal, this);
  }

  over(): void {
    this.listening?.delete(this);
    this.resolve();
  }

  abortNow(): void {
    sleeps.remove(this);
    this.reject(abortReason(this.signal!));
  }
}
