/**
 * The layout of a fan-out fleet's shared state in the run table: how the children of a run count
 * themselves (per-epoch counters spread over shards) and where an operator's limit is kept.
 * Shared by the run table adapter (which writes it) and the fan-out stage (which reads it).
 *
 * Each child of a rate-limited run adds 1 to its shard's counter once per epoch and reads every
 * shard's counter (and its shard's copy of the limit) once per epoch, half an epoch later. So a
 * child makes one write and one batched read per epoch. The epoch is 1 s for fleets of up to 500
 * children (a child that starts waits about an epoch for a share that counts it, so short epochs
 * waste less of the rate) and 2 s or more above; a shard serves at most SHARD_CHILDREN children,
 * so no counter takes more than 500 writes/s, and the epoch grows with the fleet so no counter is
 * read more than 2,000 times/s (DynamoDB serves 1,000 writes/s and 3,000 strongly consistent
 * reads/s per partition).
 */

/** Children counted by one shard's counter. */
export const SHARD_CHILDREN = 1_000;
/** Epoch of a fleet of at most SMALL_FLEET children, ms: a new child waits for at most about one and a quarter epochs. */
export const MIN_EPOCH_MS = 1_000;
/** Fleets up to this size use MIN_EPOCH_MS (at most 500 heartbeats a second on one counter). */
const SMALL_FLEET = 500;
/** Shortest epoch of a larger fleet, ms (its counters take at most 500 writes/s). */
const LARGE_FLEET_MIN_EPOCH_MS = 2_000;
/** Reads of one counter per second the epoch length is chosen for. */
const READS_PER_COUNTER_PER_SECOND = 2_000;

export interface FleetLayout {
  /** Counters (and copies of the limit) the fleet is spread over. */
  shards: number;
  /** One heartbeat and one read per child per epoch, ms. */
  epochMs: number;
}

/** The layout for a fleet of at most `children` children at once (the run's chunk count, or fewer). */
export function fleetLayout(children: number): FleetLayout {
  const n = Math.max(1, Math.floor(children));
  const shards = Math.ceil(n / SHARD_CHILDREN);
  const epochMs = n <= SMALL_FLEET ? MIN_EPOCH_MS : Math.max(LARGE_FLEET_MIN_EPOCH_MS, Math.ceil(n / READS_PER_COUNTER_PER_SECOND) * 1_000);
  return { shards, epochMs };
}

/** An operator's fleet-wide ceilings for a running run (`fanout limit`); absent fields: the pipeline's own settings. */
export interface FleetLimit {
  /** Requests per second to the data source, for the whole fleet (wins over rateLimitPerSecond). */
  ratePerSecond?: number;
  /** Requests in flight, for the whole fleet (each child gets its share, at least 1). */
  concurrency?: number;
  /** Epoch ms of the last change. */
  updatedAt: number;
}

/** What a child reads once per epoch. */
export interface FleetReading {
  /** Children counted in the epoch, over every shard. */
  live: number;
  limit: FleetLimit | undefined;
}
