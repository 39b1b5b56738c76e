/**
 * A fan-out child's place in its fleet: it shares the pipeline's fleet-wide rate
 * (`rateLimitPerSecond`, or an operator's `fanout limit`) and concurrency ceiling with the
 * children actually running, through the run table, the same way locally and on AWS.
 *
 * Time is cut into epochs (1 s up to 500 children, 2 s up to 4,000; runtime/fleet.ts). In each epoch a child
 * counts itself live (one write to its shard's counter, in the first eighth of the epoch) and
 * then reads every shard's counter and the operator's limit (one batched read, in the third
 * quarter), and takes `rate / live` and `concurrency / live` as its share until the next read.
 * Every child reads after every child has counted itself, so they agree on the count and the
 * shares add up to the fleet's rate. A child that finishes takes itself out of the epoch's
 * count at once, so the others take up its share at their next read; a child that starts makes
 * no call until it has read a count that includes it, after the others have read it too.
 * A child that crashes drops out of the count in the next epoch.
 */
import { errorMessage } from '../../runtime/errors';
import { fleetLayout, type FleetLayout, type FleetLimit } from '../../runtime/fleet';
import type { Logger } from '../../runtime/log';
import type { FleetTable } from '../../runtime/ports';
import { abortableSleep } from '../../runtime/retry';

export interface FleetShare {
  /** This child's calls per second; undefined: no rate limit. */
  ratePerSecond: number | undefined;
  /** This child's most calls in flight; undefined: no fleet ceiling. */
  concurrency: number | undefined;
  /** Children counted live at the last read. */
  live: number;
}

export interface FleetMemberOptions {
  table: FleetTable;
  runId: string;
  /** This child's array index. */
  child: number;
  /** The run's chunk count (the most children it can have). */
  chunks: number;
  /** The pipeline's fleet-wide rate (`rateLimitPerSecond`). @default - none */
  ratePerSecond?: number;
  /** Called after each read whose share differs from the last one. */
  onShare?: (share: FleetShare) => void;
  log?: Logger;
  /** Wall-clock milliseconds (children on different hosts share it). @default Date.now */
  now?: () => number;
  /** @default - a timer, cut short by the signal */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Where in its quarter-epoch windows this child writes and reads, in [0, 1). @default Math.random */
  random?: () => number;
}

export class FleetMember {
  readonly layout: FleetLayout;
  readonly shard: number;
  private readonly configRate: number | undefined;
  private readonly now: () => number;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly heartbeatOffset: number;
  private readonly readOffset: number;
  private limit: FleetLimit | undefined;
  private current: FleetShare = { ratePerSecond: undefined, concurrency: undefined, live: 0 };
  /** The last epoch this child counted itself in (undefined: it never did, or it left). */
  private countedIn: number | undefined;
  private readyAt: Promise<void>;
  private markReady: () => void = () => undefined;
  private isReady = false;
  private stopped = false;

  constructor(private readonly opts: FleetMemberOptions) {
    this.layout = fleetLayout(opts.chunks);
    this.shard = opts.child % this.layout.shards;
    this.configRate = opts.ratePerSecond;
    this.now = opts.now ?? Date.now;
    this.sleep = opts.sleep ?? abortableSleep;
    const random = opts.random ?? Math.random;
    const quarter = this.layout.epochMs / 4;
    // Heartbeats in the first eighth, reads in the third quarter: a write has three eighths of an
    // epoch to land before anyone reads (a slow write would leave its child out of the others' count).
    this.heartbeatOffset = Math.floor((random() * quarter) / 2);
    this.readOffset = this.layout.epochMs / 2 + Math.floor(random() * quarter);
    this.readyAt = new Promise<void>((resolve) => (this.markReady = resolve));
  }

  /** The share from the last read. */
  get share(): FleetShare {
    return this.current;
  }

  /** Whether this child may call: it needs no share, or it has read one that counts it. */
  get ready(): boolean {
    return this.isReady;
  }

  /** Resolves once the child may call (see `ready`). */
  whenReady(): Promise<void> {
    return this.readyAt;
  }

  epochOf(time: number): number {
    return Math.floor(time / this.layout.epochMs);
  }

  /** Whether a share must be kept: a rate or a concurrency ceiling is in force. */
  get sharing(): boolean {
    return (this.limit?.ratePerSecond ?? this.configRate) !== undefined || this.limit?.concurrency !== undefined;
  }

  /** Counts this child live in `epoch` (when it shares anything). */
  async heartbeat(epoch: number): Promise<void> {
    if (!this.sharing || this.stopped) return;
    await this.opts.table.heartbeatFleet(this.opts.runId, epoch, this.shard);
    this.countedIn = epoch;
  }

  /**
   * Reads `epoch`'s count and the limit and takes the share. The child becomes ready once it
   * shares nothing, or once it reads an epoch it counted itself in.
   */
  async read(epoch: number): Promise<FleetShare> {
    const reading = await this.opts.table.readFleet(this.opts.runId, epoch, this.layout.shards, this.shard);
    this.limit = reading.limit;
    const rate = this.limit?.ratePerSecond ?? this.configRate;
    const ceiling = this.limit?.concurrency;
    const counted = this.countedIn === epoch;
    // A child not yet counted reckons with itself on top of the count.
    const live = Math.max(1, reading.live + (counted ? 0 : 1));
    const share: FleetShare = {
      ratePerSecond: rate === undefined ? undefined : rate / live,
      concurrency: ceiling === undefined ? undefined : Math.max(1, Math.floor(ceiling / live)),
      live,
    };
    const changed =
      share.ratePerSecond !== this.current.ratePerSecond ||
      share.concurrency !== this.current.concurrency ||
      share.live !== this.current.live;
    this.current = share;
    if (changed) this.opts.onShare?.(share);
    if (!this.isReady && (counted || !this.sharing)) {
      this.isReady = true;
      this.markReady();
    }
    return share;
  }

  /** Takes this child out of the count of the epoch it was last counted in (when that is the current one). */
  async leave(): Promise<void> {
    this.stopped = true;
    const epoch = this.countedIn;
    this.countedIn = undefined;
    if (epoch === undefined || epoch !== this.epochOf(this.now())) return;
    await this.opts.table.leaveFleet(this.opts.runId, epoch, this.shard);
  }

  /**
   * The child's fleet loop, until `signal` aborts: a first read, then per epoch a heartbeat in the
   * first eighth and a read in the third quarter. A child that joins after an epoch's first
   * quarter (or whose joining write lands after the reads began) counts itself from the next
   * epoch on, and waits for that epoch's read before it calls.
   * Rejects with the run table's error (the child cannot keep to its share without the table).
   */
  async run(signal: AbortSignal): Promise<void> {
    const E = this.layout.epochMs;
    let epoch = this.epochOf(this.now());
    await this.read(epoch);
    const started = this.now() - epoch * E;
    if (started < E / 4) {
      // Early enough in this epoch to be counted before anyone reads it.
      await this.heartbeat(epoch);
      // A write that landed after the reads began may have been missed: count from the next epoch.
      if (this.now() - epoch * E >= E / 2) this.countedIn = undefined;
      await this.readAt(epoch, signal);
    }
    for (epoch++; !signal.aborted && !this.stopped; epoch++) {
      await this.until(epoch * E + this.heartbeatOffset, signal);
      if (signal.aborted || this.stopped) return;
      await this.heartbeat(epoch);
      await this.readAt(epoch, signal);
    }
  }

  /** Reads `epoch` in its read window; a new child reads after the window, once every other child has. */
  private async readAt(epoch: number, signal: AbortSignal): Promise<void> {
    const E = this.layout.epochMs;
    const at = this.isReady ? epoch * E + this.readOffset : epoch * E + (3 * E) / 4;
    await this.until(at, signal);
    if (signal.aborted || this.stopped) return;
    try {
      await this.read(epoch);
    } catch (err) {
      this.opts.log?.warn('reading the fleet share failed', { error: errorMessage(err) });
      throw err;
    }
  }

  private async until(time: number, signal: AbortSignal): Promise<void> {
    const wait = time - this.now();
    if (wait > 0) await this.sleep(wait, signal).catch(() => undefined);
  }
}
