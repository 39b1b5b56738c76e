/**
 * The ports: narrow interfaces the stages and handlers depend on, so that the same code runs
 * on AWS (S3, DynamoDB, SES, Batch, SNS) and locally (the same SDK code against emulators,
 * child processes for jobs, in-process events).
 */
import type { Readable } from 'node:stream';
import type { SplitDoneMessage } from './events';
import type { FleetLimit, FleetReading } from './fleet';
import type { RunStatus, Step } from './lifecycle';
import type { ChunkRecord, JobStage, RunRecord } from './model';

export interface ObjectInfo {
  key: string;
  size: number;
  /** Entity tag, when the store says (S3 lists and heads it). */
  eTag?: string;
  /** Last change, when the store says. */
  lastModified?: Date;
}

export interface PresignedLink {
  url: string;
  expiresAt: Date;
}

export interface ObjectStore {
  /** Bucket name (for messages and links). */
  readonly bucket: string;
  /** Writes an object; a stream is uploaded in parts without buffering it whole. */
  put(key: string, body: string | Uint8Array | Readable, opts?: { contentType?: string }): Promise<void>;
  /** Streams an object; throws ObjectNotFoundError when it does not exist. */
  getStream(key: string): Promise<Readable>;
  /** Reads a whole (small) object; throws ObjectNotFoundError when it does not exist. */
  getBytes(key: string): Promise<Buffer>;
  /** Size of an object, or undefined when it does not exist. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Every object under a prefix, in key order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /**
   * Copies an object inside the bucket (server-side, up to 5 GiB), with new metadata when given:
   * the new key appears whole or not at all. (Optional: only the SFTP pull needs it.)
   */
  copy?(fromKey: string, toKey: string, opts?: { metadata?: Record<string, string>; contentType?: string }): Promise<void>;
  /** Deletes objects in batches (1,000 per request on S3). */
  deleteMany(keys: string[]): Promise<void>;
  /**
   * A time-limited GET link, and when it stops working: the requested time, or earlier when the
   * credentials that signed it expire first (temporary role credentials on Batch and Lambda).
   */
  presignGet(key: string, expiresInSeconds: number): Promise<PresignedLink>;
}

/**
 * The fan-out fleet's shared state in the run table (runtime/fleet.ts has the layout): a registry
 * of live children as per-epoch counters spread over shards, and an operator's limit.
 */
export interface FleetTable {
  /** Counts one more live child in `epoch` on counter `shard` (one write). */
  heartbeatFleet(runId: string, epoch: number, shard: number): Promise<void>;
  /** Counts a child that stops out of `epoch` on counter `shard` (it heartbeated in that epoch). */
  leaveFleet(runId: string, epoch: number, shard: number): Promise<void>;
  /** The children counted in `epoch` over all `shards` counters, and the limit as kept in shard `ownShard` (one batched read). */
  readFleet(runId: string, epoch: number, shards: number, ownShard: number): Promise<FleetReading>;
  /**
   * Sets a running run's fleet-wide rate and/or concurrency ceiling (`fanout limit`); `null`
   * lifts one, an absent field keeps it. Written to every shard's copy; the children apply it
   * at their next read, within one epoch (2 s up to 4,000 children). Returns the limit now in force.
   */
  setFleetLimit(runId: string, limit: { ratePerSecond?: number | null; concurrency?: number | null }): Promise<FleetLimit>;
}

export interface RunTable extends FleetTable {
  /** Opens a run; false when a run with this id exists already (a duplicated event). */
  createRun(run: RunRecord): Promise<boolean>;
  getRun(runId: string): Promise<RunRecord | undefined>;
  /**
   * Applies a partial update. With `statusIn`, only when the run's status is one of them;
   * returns false when the condition did not hold. Status changes go through runtime/lifecycle.ts
   * (moveRun, fail, succeed), which checks them against the legal transitions.
   */
  updateRun(runId: string, patch: Partial<Omit<RunRecord, 'runId'>>, cond?: { statusIn?: RunStatus[] }): Promise<boolean>;
  /**
   * Claims a step of a run (e.g. "fanout", "failure-email") exactly once: true for the first
   * caller, false for every later one. The value records the job id or a marker.
   */
  claimStep(runId: string, step: Step, value: string): Promise<boolean>;
  /** Overwrites a claimed step's value (e.g. with the job id once submitted). */
  setStep(runId: string, step: Step, value: string): Promise<void>;
  /** Removes a claim, so a retried handler can take the step again after a failed submission. */
  releaseStep(runId: string, step: Step): Promise<void>;
  /** Writes the chunk records of a run in batches. */
  putChunks(chunks: ChunkRecord[]): Promise<void>;
  updateChunk(runId: string, chunk: number, patch: Partial<Omit<ChunkRecord, 'runId' | 'chunk'>>): Promise<void>;
  getChunk(runId: string, chunk: number): Promise<ChunkRecord | undefined>;
  /** Reads chunks 0..count-1 in batches; missing ones are left out. */
  getChunks(runId: string, count: number): Promise<ChunkRecord[]>;
  /** Deletes chunks 0..count-1 in batches. */
  deleteChunks(runId: string, count: number): Promise<void>;
}

export interface MailAttachment {
  filename: string;
  content: Buffer;
  contentType: string;
}

export interface MailMessage {
  from: string;
  to: string[];
  subject: string;
  text: string;
  html?: string;
  attachments?: MailAttachment[];
}

export interface Mailer {
  /** Largest raw message the service accepts, in bytes. */
  readonly maxMessageBytes: number;
  send(message: MailMessage): Promise<{ messageId: string }>;
}

export interface JobRequest {
  /** Job name; `[A-Za-z0-9_-]`, at most 128 characters. */
  name: string;
  stage: JobStage;
  runId: string;
  pipeline: string;
  compute: 'fargate-spot' | 'ec2-spot';
  /** Array size (2..10,000); a plain job when absent or 1. */
  arraySize?: number;
  /** Job ids this one waits for. */
  dependsOn?: string[];
  /** Extra environment for the container. */
  environment?: Record<string, string>;
}

export interface JobSubmitter {
  submit(job: JobRequest): Promise<{ jobId: string }>;
}

/** Split's announcement (its schema: runtime/events.ts). */
export type { SplitDoneMessage } from './events';

export interface SplitDoneNotifier {
  publishSplitDone(message: SplitDoneMessage): Promise<void>;
}

/** What a source pull copied: one record per remote file, so a file is copied once across pulls. */
export interface PulledFileRecord {
  source: string;
  /** Remote path of the file. */
  path: string;
  /** `<size>:<mtime>`: a changed file has a new version and is copied again. */
  version: string;
  state: 'copying' | 'copied';
  /** The pull that claimed it. */
  pullId: string;
  /** Intake key it was copied to (once copied). */
  key?: string;
  /** Epoch milliseconds of the last change. */
  updatedAt: number;
}

export interface SourceLedger {
  /**
   * Claims a remote file version for one pull (a conditional write): true when no pull copied or
   * is copying this version; false otherwise. A claim left `copying` longer than `staleMs` (a
   * pull that died) can be taken over.
   */
  claim(source: string, path: string, version: string, pullId: string, now: number, staleMs: number): Promise<boolean>;
  /** Records the copy as done (only by the pull holding the claim). */
  markCopied(source: string, path: string, pullId: string, key: string, now: number): Promise<void>;
  /** Gives a claim up after a failed copy, so the next pull tries again. */
  release(source: string, path: string, pullId: string): Promise<void>;
  /** Every record of a source. */
  list(source: string): Promise<PulledFileRecord[]>;
  /** Writes records as they are (restoring a saved local state). */
  restore(records: PulledFileRecord[]): Promise<void>;
}
