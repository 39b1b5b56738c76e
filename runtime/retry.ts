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
export function backoffDelayMs(
  attempt: number,
  policy: RetryPolicy,
  retryAfterMs?: number,
  random: () => number = Math.random,
): number {
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
}

/**
 * Runs fn until success; TransientError retried up to maxAttempts, PermanentError fails at once; any
 * other error is a failure with "unexpected error: ..." (not retried). Aborted signal stops waiting.
 *
 * Resolves with the outcome (never rejects for an error of `fn`); rejects only when `signal` is
 * aborted, with the signal's reason, so that an interrupted item is not recorded as failed.
 */
export async function runWithRetry<T>(
  fn: (attempt: number) => Promise<T>,
  policy: RetryPolicy,
  opts: RunWithRetryOptions = {},
): Promise<RetryOutcome<T>> {
  const { signal, sleep = abortableSleep, random = Math.random, onRetry } = opts;
  const maxAttempts = Math.max(1, Math.floor(policy.maxAttempts));
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(signal);
    let value: T;
    try {
      value = await fn(attempt);
    } catch (err) {
      throwIfAborted(signal);
      if (err instanceof PermanentError) {
        return { ok: false, error: err.message, attempts: attempt };
      }
      if (!(err instanceof TransientError)) {
        return { ok: false, error: `unexpected error: ${errorMessage(err)}`, attempts: attempt };
      }
      if (attempt >= maxAttempts) {
        const tries = attempt === 1 ? '1 attempt' : `${attempt} attempts`;
        return { ok: false, error: `${err.message} (gave up after ${tries})`, attempts: attempt };
      }
      const delayMs = backoffDelayMs(attempt, policy, err.retryAfterMs, random);
      onRetry?.(attempt, err, delayMs);
      if (delayMs > 0) await sleep(delayMs, signal);
      continue;
    }
    return { ok: true, value, attempts: attempt };
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
    const timer = setTimeout(() => {
      stopListening();
      resolve();
    }, ms);
    const stopListening = onAbort(signal, () => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    });
  });
}
