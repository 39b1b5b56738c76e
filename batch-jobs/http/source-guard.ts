/**
 * How many calls a fan-out child has in flight toward its data source, and when it holds them.
 *
 * - `AimdLimit`: adaptive concurrency, additive increase / multiplicative decrease as in TCP
 *   congestion control. The limit starts small and doubles every round trip (slow start) while
 *   calls succeed with flat latency; the source pushing back (429, or 503 with Retry-After) cuts
 *   it (to half in slow start, to 0.7 after), once per round of calls: a refusal of a call that
 *   started before the last cut says nothing new. Other load signals (503 without Retry-After,
 *   timeouts) cut it by 0.9 only when they make more than 15% of recent calls, so the random
 *   503s of a flaky source do not collapse it. After a cut the limit grows back quickly to 90% of
 *   the level that was refused, then probes above it: a tenth more `probeIntervalMs` after the
 *   cut, and sooner after each probe that is not refused (half the time, down to two round
 *   trips), so capacity that others give up is found in seconds. Always between 1 and the maximum.
 *   The limit is a real number (`window`).
 * - `SourceGuard`: the gate every call passes. It admits calls up to the limit (fixed, or the
 *   AIMD limit with `concurrency: "auto"`), under a fleet-wide ceiling (`setCeiling`, from the
 *   run table), and, in auto mode, a `Retry-After` pauses every call to the origin for that long,
 *   not just the refused one. In auto mode calls are also paced, `window` per baseline latency:
 *   a window of 2.5 keeps 2.5 calls in flight on average (not 2 or 3), and calls do not leave in
 *   bursts that a source with a small burst allowance would refuse (after a pause, say).
 *   Waiters are served first come, first served.
 */
import type { TransientError } from '../../runtime/errors';
import { abortReason, onAbort } from '../../runtime/retry';

export interface AimdOptions {
  /** Most calls in flight (>= 1). */
  max: number;
  /** Limit at start. @default - min(max, 4) */
  initial?: number;
  /** Factor kept on a refusal after slow start. @default 0.7 */
  backoffRatio?: number;
  /** A success grows the limit only when its latency is at most this many times the baseline. @default 2 */
  latencyTolerance?: number;
  /** Above the level last refused, one more call in flight per this many ms of successes. @default 5000 */
  probeIntervalMs?: number;
  /** Share of recent calls answered 503 (no Retry-After) or timed out above which the limit is cut. @default 0.15 */
  lossThreshold?: number;
}

/** The signals AimdLimit reacts to. */
export type LoadSignal = 'refused' | 'loss' | 'other';

export class AimdLimit {
  readonly max: number;
  private value: number;
  private slowStart = true;
  private baselineMs: number | undefined;
  private lastCutAt = Number.NEGATIVE_INFINITY;
  /** The limit when the source last refused (growth slows above 90% of it). */
  private refusedAt = Number.POSITIVE_INFINITY;
  private lastProbeAt = Number.NEGATIVE_INFINITY;
  /** Time between probes: `probeIntervalMs` after a cut, halved after each probe that is not refused. */
  private probeGapMs: number;
  /** Exponentially weighted share of recent calls that were a loss signal. */
  private lossShare = 0;
  private readonly backoffRatio: number;
  private readonly tolerance: number;
  private readonly probeIntervalMs: number;
  private readonly lossThreshold: number;

  constructor(opts: AimdOptions) {
    if (!Number.isInteger(opts.max) || opts.max < 1)
      throw new RangeError(`the concurrency maximum must be a whole number >= 1, got ${opts.max}`);
    this.max = opts.max;
    this.value = Math.min(opts.max, Math.max(1, opts.initial ?? 4));
    this.backoffRatio = opts.backoffRatio ?? 0.7;
    this.tolerance = opts.latencyTolerance ?? 2;
    this.probeIntervalMs = opts.probeIntervalMs ?? 5_000;
    this.probeGapMs = this.probeIntervalMs;
    this.lossThreshold = opts.lossThreshold ?? 0.15;
  }

  /** Whole calls allowed in flight now. */
  get limit(): number {
    return Math.max(1, Math.min(this.max, Math.floor(this.value)));
  }

  /**
   * The limit as a real number (calls per round trip): the guard paces calls at `window` per
   * baseline latency, so a share of 2.6 calls in flight is kept on average, not rounded to 2 or 3.
   */
  get window(): number {
    return Math.max(1, Math.min(this.max, this.value));
  }

  /** Whether the limit still doubles every round trip (no refusal seen yet). */
  get inSlowStart(): boolean {
    return this.slowStart;
  }

  /** The lowest recent latency of a successful call, ms (what "flat" is measured against). */
  get baseline(): number | undefined {
    return this.baselineMs;
  }

  /** A call that started at `startedAt` succeeded at `now`. */
  onSuccess(startedAt: number, now: number): void {
    const latency = Math.max(0, now - startedAt);
    this.lossShare *= 0.98;
    // The baseline follows new lows at once and drifts up slowly, so a source that got slower for good is learned.
    this.baselineMs = this.baselineMs === undefined || latency < this.baselineMs ? latency : this.baselineMs * 1.002 + 0.01;
    if (latency > this.baselineMs * this.tolerance + 1) return;
    if (this.slowStart) {
      this.value = Math.min(this.max, this.value + 1);
    } else if (this.value < 0.9 * this.refusedAt) {
      this.value = Math.min(this.max, 0.9 * this.refusedAt, this.value + 1 / this.value);
    } else if (now - this.lastProbeAt >= this.probeGapMs) {
      // Probe above the refused level: a tenth more (at least a quarter call), and sooner each time
      // it is not refused, so capacity others give up (a child that finished) is found in seconds.
      this.lastProbeAt = now;
      this.value = Math.min(this.max, this.value + Math.max(0.25, this.value / 10));
      this.probeGapMs = Math.max(this.minProbeGapMs(), this.probeGapMs / 2);
    }
  }

  private minProbeGapMs(): number {
    return Math.max(1, 2 * (this.baselineMs ?? 0));
  }

  /** A call that started at `startedAt` ended at `now` with a load signal. */
  onSignal(signal: LoadSignal, startedAt: number, now: number): void {
    if (signal === 'other') {
      this.lossShare *= 0.98;
      return;
    }
    if (signal === 'loss') {
      this.lossShare = this.lossShare * 0.98 + 0.02;
      if (this.lossShare <= this.lossThreshold || startedAt < this.lastCutAt) return;
      this.cut(0.9, now);
      return;
    }
    this.lossShare *= 0.98;
    if (startedAt < this.lastCutAt) return;
    this.refusedAt = this.value;
    this.cut(this.slowStart ? 0.5 : this.backoffRatio, now);
    this.slowStart = false;
  }

  private cut(ratio: number, now: number): void {
    this.value = Math.max(1, this.value * ratio);
    this.lastCutAt = now;
    this.lastProbeAt = now;
    this.probeGapMs = this.probeIntervalMs;
  }
}

/** Classifies a transient failure for AimdLimit: a refusal (429, 503 with Retry-After), a loss (503, timeout) or neither. */
export function loadSignalOf(err: TransientError): LoadSignal {
  if (err.kind === 'throttled' || (err.kind === 'unavailable' && err.retryAfterMs !== undefined)) return 'refused';
  if (err.kind === 'unavailable' || err.kind === 'timeout') return 'loss';
  return 'other';
}

/** Whether a failure is the source pushing back: waited out, not counted against the item's attempts (auto mode). */
export function isBackPressure(err: TransientError): boolean {
  return loadSignalOf(err) === 'refused';
}

export interface SourceGuardOptions {
  /** `fixed`: at most `max` in flight; `auto`: the AIMD limit, between 1 and `max`. */
  mode: 'fixed' | 'auto';
  max: number;
  /** AIMD tuning (auto mode). */
  aimd?: Omit<AimdOptions, 'max'>;
  /** Milliseconds, monotonic. @default performance.now */
  now?: () => number;
}

interface Waiter {
  resolve: () => void;
  stopListening: () => void;
}

export class SourceGuard {
  readonly mode: 'fixed' | 'auto';
  readonly max: number;
  readonly aimd: AimdLimit | undefined;
  private ceiling = Number.POSITIVE_INFINITY;
  private inFlightCount = 0;
  private readonly queue: Waiter[] = [];
  private pausedUntil = 0;
  /** Auto mode: the earliest start of the next call (pacing). */
  private nextAt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly now: () => number;
  private pauses = 0;

  constructor(opts: SourceGuardOptions) {
    if (!Number.isInteger(opts.max) || opts.max < 1) throw new RangeError(`concurrency must be a whole number >= 1, got ${opts.max}`);
    this.mode = opts.mode;
    this.max = opts.max;
    this.aimd = opts.mode === 'auto' ? new AimdLimit({ ...opts.aimd, max: opts.max }) : undefined;
    this.now = opts.now ?? (() => performance.now());
  }

  /** Calls allowed in flight now: the fixed or adaptive limit (its window rounded up: pacing keeps the average), under the fleet's ceiling. */
  get limit(): number {
    const own = this.aimd ? Math.ceil(this.aimd.window) : this.max;
    return Math.max(1, Math.min(own, this.ceiling));
  }

  /**
   * Auto mode: the time between two calls, the baseline latency over the window (0 until a
   * baseline is known). Pacing spreads the window's calls over a round trip instead of sending
   * them in bursts (a source with a small burst allowance refuses bursts), and keeps a fractional
   * window on average.
   */
  private gapMs(): number {
    const aimd = this.aimd;
    if (aimd === undefined || aimd.baseline === undefined) return 0;
    const window = Math.min(aimd.window, this.ceiling);
    return aimd.baseline / window;
  }

  get inFlight(): number {
    return this.inFlightCount;
  }

  get waiting(): number {
    return this.queue.length;
  }

  /** Times the origin was paused by a Retry-After. */
  get pauseCount(): number {
    return this.pauses;
  }

  /** Whether calls are held by a Retry-After now. */
  get paused(): boolean {
    return this.now() < this.pausedUntil;
  }

  /** The fleet's share of a concurrency ceiling for this child (`fanout limit --concurrency`); undefined lifts it. */
  setCeiling(ceiling: number | undefined): void {
    this.ceiling = ceiling === undefined ? Number.POSITIVE_INFINITY : Math.max(1, Math.floor(ceiling));
    this.admit();
  }

  /**
   * Takes a slot now if one is free (nobody waiting, under the limit, no pause, pacing allows)
   * and says whether it did: the caller then needs no promise. Otherwise, `acquire`.
   */
  tryAcquire(): boolean {
    if (this.queue.length === 0 && this.inFlightCount < this.limit && (this.pausedUntil === 0 || !this.paused) && this.paced()) {
      this.inFlightCount++;
      return true;
    }
    return false;
  }

  /** Waits for a slot (and the end of any pause). Rejects when `signal` aborts. */
  acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (this.tryAcquire()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        stopListening: onAbort(signal, () => {
          const at = this.queue.indexOf(waiter);
          if (at >= 0) this.queue.splice(at, 1);
          reject(abortReason(signal!));
        }),
      };
      this.queue.push(waiter);
      this.admit();
    });
  }

  /** The call that started at `startedAt` succeeded: frees its slot and lets the limit grow. */
  succeeded(startedAt: number): void {
    this.aimd?.onSuccess(startedAt, this.now());
    this.release();
  }

  /**
   * The call that started at `startedAt` failed: frees its slot; in auto mode a load signal moves
   * the limit, and a refusal with Retry-After pauses every call to the origin for that long.
   */
  failed(startedAt: number, err: unknown): void {
    if (this.aimd && isTransient(err)) {
      const signal = loadSignalOf(err);
      this.aimd.onSignal(signal, startedAt, this.now());
      if (signal === 'refused' && err.retryAfterMs !== undefined && err.retryAfterMs > 0) this.pause(err.retryAfterMs);
    }
    this.release();
  }

  /** Holds every new call for `ms` (a longer pause already running wins). */
  pause(ms: number): void {
    const until = this.now() + ms;
    if (until <= this.pausedUntil) return;
    this.pausedUntil = until;
    this.pauses++;
    this.stopTimer();
    this.admit();
  }

  /** Frees a slot without a signal (a call that never reached the source). */
  release(): void {
    this.inFlightCount--;
    this.admit();
  }

  /**
   * Auto mode: whether the pacing lets a call start now, and if so takes its turn. A call may
   * start once the previous one's gap has passed; after a quiet spell, at most two go back to back.
   */
  private paced(): boolean {
    if (this.aimd === undefined) return true;
    const gap = this.gapMs();
    if (gap === 0) return true;
    const now = this.now();
    if (now < this.nextAt) return false;
    this.nextAt = Math.max(this.nextAt, now - gap) + gap;
    return true;
  }

  private admit(): void {
    if (this.queue.length === 0) return;
    const wait = this.pausedUntil === 0 ? 0 : this.pausedUntil - this.now();
    if (wait > 0) {
      this.wakeIn(wait);
      return;
    }
    while (this.queue.length > 0 && this.inFlightCount < this.limit) {
      if (!this.paced()) {
        this.wakeIn(this.nextAt - this.now());
        return;
      }
      const waiter = this.queue.shift()!;
      this.inFlightCount++;
      waiter.stopListening();
      waiter.resolve();
    }
  }

  /** Admits again after `ms` (one timer at a time). */
  private wakeIn(ms: number): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.admit();
      },
      Math.max(1, Math.ceil(ms)),
    );
  }

  private stopTimer(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }
}

function isTransient(err: unknown): err is TransientError {
  return err instanceof Error && err.name === 'TransientError';
}
