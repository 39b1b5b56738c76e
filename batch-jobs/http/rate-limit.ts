/**
 * A token bucket that spaces calls to a data source: `ratePerSecond` tokens a second, at most
 * `burst` saved up. Waiters are served first come, first served (a caller arriving while others
 * wait queues behind them even if a token is free), so no item starves under load.
 *
 * One limiter limits one process. The pipeline's fleet-wide rate (`rateLimitPerSecond`) is shared
 * by dividing it among the fan-out children that run at once.
 */
import { abortReason, onAbort } from '../../runtime/retry';

interface Waiter {
  resolve: () => void;
  /** Stops listening to the waiter's abort signal. */
  stopListening: () => void;
}

export interface RateLimiterClock {
  /** Milliseconds from any fixed point, never going backwards. @default performance.now */
  now(): number;
}

export class RateLimiter {
  readonly ratePerSecond: number;
  readonly burst: number;
  private tokens: number;
  private last: number;
  private readonly queue: Waiter[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly clock: RateLimiterClock;
  private granted = 0;

  /**
   * @param ratePerSecond tokens added per second (> 0)
   * @param burst tokens the bucket holds, and so calls that may go at once after a quiet spell.
   *   @default - a twentieth of a second's worth, at least 1
   */
  constructor(ratePerSecond: number, burst?: number, clock: RateLimiterClock = { now: () => performance.now() }) {
    if (!Number.isFinite(ratePerSecond) || ratePerSecond <= 0) {
      throw new RangeError(`rate limit must be a positive number of calls per second, got ${ratePerSecond}`);
    }
    const b = burst ?? Math.max(1, Math.ceil(ratePerSecond / 20));
    if (!Number.isFinite(b) || b < 1) throw new RangeError(`rate limit burst must be at least 1, got ${b}`);
    this.ratePerSecond = ratePerSecond;
    this.burst = b;
    this.tokens = b;
    this.clock = clock;
    this.last = clock.now();
  }

  /** Tokens handed out so far. */
  get grantedCount(): number {
    return this.granted;
  }

  /** Callers waiting for a token. */
  get waiting(): number {
    return this.queue.length;
  }

  /** Resolves when the caller may make one call; rejects with the signal's reason if it aborts first. */
  acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (this.queue.length === 0) {
      this.refill();
      if (this.tokens >= 1) {
        this.tokens -= 1;
        this.granted++;
        return Promise.resolve();
      }
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        stopListening: onAbort(signal, () => {
          const at = this.queue.indexOf(waiter);
          if (at >= 0) this.queue.splice(at, 1);
          if (this.queue.length === 0) this.stopTimer();
          reject(abortReason(signal!));
        }),
      };
      this.queue.push(waiter);
      this.schedule();
    });
  }

  private refill(): void {
    const now = this.clock.now();
    const elapsed = now - this.last;
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.ratePerSecond) / 1000);
    }
    this.last = now;
  }

  private schedule(): void {
    if (this.timer !== undefined) return;
    this.refill();
    while (this.queue.length > 0 && this.tokens >= 1) {
      const waiter = this.queue.shift()!;
      this.tokens -= 1;
      this.granted++;
      waiter.stopListening();
      waiter.resolve();
    }
    if (this.queue.length === 0) return;
    const waitMs = Math.max(1, Math.ceil(((1 - this.tokens) * 1000) / this.ratePerSecond));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.schedule();
    }, waitMs);
  }

  private stopTimer(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }
}
