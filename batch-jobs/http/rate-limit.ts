/**
 * A token bucket that spaces calls to a data source: `ratePerSecond` tokens a second, at most
 * `burst` saved up. Waiters are served first come, first served (a caller arriving while others
 * wait queues behind them even if a token is free), so no item starves under load.
 *
 * One limiter limits one process. The pipeline's fleet-wide rate (`rateLimitPerSecond`) is shared
 * by the fan-out children actually running (batch-jobs/stages/fleet.ts), which set each child's
 * share here with `setRate` as children come and go.
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
  private rate: number;
  private burstSize: number;
  private readonly fixedBurst: number | undefined;
  private tokens: number;
  private last: number;
  private readonly queue: Waiter[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly clock: RateLimiterClock;
  private granted = 0;

  /**
   * @param ratePerSecond tokens added per second (> 0)
   * @param burst tokens the bucket holds, and so calls that may go at once after a quiet spell.
   *   @default - a fortieth of a second's worth, at least 1 (so a fleet of children stays within
   *   2.5% of its rate over any second, plus one call per child)
   */
  constructor(ratePerSecond: number, burst?: number, clock: RateLimiterClock = { now: () => performance.now() }) {
    if (!Number.isFinite(ratePerSecond) || ratePerSecond <= 0) {
      throw new RangeError(`rate limit must be a positive number of calls per second, got ${ratePerSecond}`);
    }
    const b = burst ?? defaultBurst(ratePerSecond);
    if (!Number.isFinite(b) || b < 1) throw new RangeError(`rate limit burst must be at least 1, got ${b}`);
    this.rate = ratePerSecond;
    this.burstSize = b;
    this.fixedBurst = burst;
    this.tokens = b;
    this.clock = clock;
    this.last = clock.now();
  }

  get ratePerSecond(): number {
    return this.rate;
  }

  get burst(): number {
    return this.burstSize;
  }

  /**
   * Changes the rate from now on (the child's share of the fleet's rate changed). Tokens saved
   * so far are kept, up to the new burst; waiters are rescheduled at the new rate.
   */
  setRate(ratePerSecond: number): void {
    if (!Number.isFinite(ratePerSecond) || ratePerSecond <= 0) {
      throw new RangeError(`rate limit must be a positive number of calls per second, got ${ratePerSecond}`);
    }
    if (ratePerSecond === this.rate) return;
    this.refill();
    this.rate = ratePerSecond;
    this.burstSize = this.fixedBurst ?? defaultBurst(ratePerSecond);
    this.tokens = Math.min(this.tokens, this.burstSize);
    this.stopTimer();
    if (this.queue.length > 0) this.schedule();
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
      this.tokens = Math.min(this.burstSize, this.tokens + (elapsed * this.rate) / 1000);
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
    const waitMs = Math.max(1, Math.ceil(((1 - this.tokens) * 1000) / this.rate));
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

/** A fortieth of a second's worth of tokens, at least 1. */
function defaultBurst(ratePerSecond: number): number {
  return Math.max(1, Math.ceil(ratePerSecond / 40));
}
