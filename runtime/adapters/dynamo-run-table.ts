/**
 * RunTable on one DynamoDB table (SDK v3 document client). The same code talks to dynalite in a
 * local run.
 *
 * Key schema: partition key `pk` (S), sort key `sk` (S), TTL attribute `expiresAt` (epoch s).
 *   run    pk `RUN#<runId>`            sk `RUN`
 *   chunk  pk `CHUNK#<runId>#<n>`      sk `CHUNK`   (one partition key per chunk: 10,000 fan-out
 *                                                  children updating progress at once never
 *                                                  share a partition)
 *   fleet  pk `FLEET#<runId>#<shard>`  sk `E#<epoch>` live-children counter of an epoch (TTL 1 day)
 *                                      sk `LIMIT`     that shard's copy of an operator's limit
 *          (runtime/fleet.ts: at most 1,000 children per shard)
 * Chunks are written and read in batches (25 writes, 100 reads per request, several in flight,
 * unprocessed items retried with back-off). Failures become StorageError with exit code TABLE.
 */
import {
  BatchGetCommand,
  BatchWriteCommand,
  GetCommand,
  PutCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import { ExitCode, StorageError } from '../errors';
import { fleetLayout, type FleetLimit, type FleetReading } from '../fleet';
import type { RunStatus, Step } from '../lifecycle';
import type { ChunkRecord, RunRecord } from '../model';
import { forEachConcurrent } from '../pool';
import type { RunTable } from '../ports';
import { abortableSleep, backoffDelayMs, type RetryPolicy } from '../retry';
import { DynamoCalls } from './dynamo-calls';

/** Key attribute names and the TTL attribute of the table (the infrastructure must match). */
export const RUN_TABLE_SCHEMA = {
  partitionKey: 'pk',
  sortKey: 'sk',
  ttlAttribute: 'expiresAt',
} as const;

export const runKey = (runId: string) => ({ pk: `RUN#${runId}`, sk: 'RUN' });
export const chunkKey = (runId: string, chunk: number) => ({ pk: `CHUNK#${runId}#${chunk}`, sk: 'CHUNK' });
export const fleetCounterKey = (runId: string, shard: number, epoch: number) => ({ pk: `FLEET#${runId}#${shard}`, sk: `E#${epoch}` });
export const fleetLimitKey = (runId: string, shard: number) => ({ pk: `FLEET#${runId}#${shard}`, sk: 'LIMIT' });

/** Fleet counters are only read during their epoch and the next; a day is plenty. */
const FLEET_COUNTER_TTL_SECONDS = 24 * 3600;

/** Items per BatchWriteItem / keys per BatchGetItem (the DynamoDB maxima). */
export const WRITE_BATCH_SIZE = 25;
export const READ_BATCH_SIZE = 100;

export interface DynamoRunTableOptions {
  /** Batch requests in flight at once. @default 4 */
  concurrency?: number;
  /** Rounds of retrying unprocessed items before giving up. @default 10 */
  maxBatchRetries?: number;
  /** First back-off ceiling for unprocessed items, ms; doubles each round (full jitter), capped at 5 s. @default 50 */
  baseDelayMs?: number;
  /**
   * Chunk items carry a TTL this many seconds after they are written, so the chunk state of a
   * run whose cleanup never ran does not stay forever. @default 30 days
   */
  chunkTtlSeconds?: number;
}

const MAX_BACKOFF_MS = 5000;
const KEY_ATTRIBUTES = [RUN_TABLE_SCHEMA.partitionKey, RUN_TABLE_SCHEMA.sortKey];
/** What a chunk item holds beside its ChunkRecord fields. */
const CHUNK_ITEM_ONLY = [...KEY_ATTRIBUTES, RUN_TABLE_SCHEMA.ttlAttribute];

type Item = Record<string, unknown>;
type WriteRequest = { PutRequest: { Item: Item } } | { DeleteRequest: { Key: Item } };

/** A copy of `item` without the attributes `names`. */
function omit<T>(item: Item, names: readonly string[]): T {
  const out: Item = { ...item };
  for (const name of names) delete out[name];
  return out as T;
}

function* slices<T>(items: T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

/** `SET #f0 = :v0, ...` over the defined fields of a patch, but those named in `ignored`. */
function setExpression(
  patch: object,
  ignored: readonly string[],
): { expression: string; names: Record<string, string>; values: Record<string, unknown> } | undefined {
  const names: Record<string, string> = {};
  const values: Record<string, unknown> = {};
  const parts: string[] = [];
  for (const [field, value] of Object.entries(patch)) {
    if (value === undefined || ignored.includes(field)) continue;
    const i = parts.length;
    names[`#f${i}`] = field;
    values[`:v${i}`] = value;
    parts.push(`#f${i} = :v${i}`);
  }
  if (parts.length === 0) return undefined;
  return { expression: `SET ${parts.join(', ')}`, names, values };
}

export class DynamoRunTable implements RunTable {
  private readonly calls: DynamoCalls;
  private readonly concurrency: number;
  /** Back-off between rounds of unprocessed batch items (an attempt per round). */
  private readonly batchRetry: RetryPolicy;
  private readonly chunkTtlSeconds: number;

  constructor(
    private readonly doc: DynamoDBDocumentClient,
    readonly tableName: string,
    opts: DynamoRunTableOptions = {},
  ) {
    this.calls = new DynamoCalls(tableName);
    this.concurrency = opts.concurrency ?? 4;
    this.batchRetry = {
      maxAttempts: (opts.maxBatchRetries ?? 10) + 1,
      baseDelayMs: opts.baseDelayMs ?? 50,
      maxDelayMs: MAX_BACKOFF_MS,
    };
    this.chunkTtlSeconds = opts.chunkTtlSeconds ?? 30 * 24 * 3600;
  }

  async createRun(run: RunRecord): Promise<boolean> {
    return this.calls.conditional('PutItem (create run)', `run ${run.runId}`, () =>
      this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { ...run, ...runKey(run.runId), steps: run.steps ?? {} },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      ),
    );
  }

  async getRun(runId: string): Promise<RunRecord | undefined> {
    const item = await this.getItem(runKey(runId), `run ${runId}`);
    return item && omit<RunRecord>(item, KEY_ATTRIBUTES);
  }

  async updateRun(runId: string, patch: Partial<Omit<RunRecord, 'runId'>>, cond: { statusIn?: RunStatus[] } = {}): Promise<boolean> {
    const set = setExpression(patch, ['runId']);
    const statusIn = cond.statusIn;
    if (!set) {
      // Nothing to write: report whether the condition holds.
      const run = await this.getRun(runId);
      return run !== undefined && (statusIn === undefined || statusIn.includes(run.status));
    }
    let condition = 'attribute_exists(pk)';
    if (statusIn !== undefined) {
      if (statusIn.length === 0) return false;
      set.names['#status'] = 'status';
      statusIn.forEach((status, i) => (set.values[`:s${i}`] = status));
      condition += ` AND #status IN (${statusIn.map((_, i) => `:s${i}`).join(', ')})`;
    }
    return this.calls.conditional('UpdateItem', `run ${runId}`, () =>
      this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: runKey(runId),
          UpdateExpression: set.expression,
          ConditionExpression: condition,
          ExpressionAttributeNames: set.names,
          ExpressionAttributeValues: set.values,
        }),
      ),
    );
  }

  async claimStep(runId: string, step: Step, value: string): Promise<boolean> {
    const claimed = await this.calls.conditional('UpdateItem (claim step)', `run ${runId} step ${step}`, () =>
      this.doc.send(this.stepUpdate(runId, step, 'SET steps.#step = :value', value, ' AND attribute_not_exists(steps.#step)')),
    );
    if (claimed) return true;
    // Taken already, or no such run: the latter is a bug in the caller, say so.
    if ((await this.getRun(runId)) === undefined) throw this.missing(`claim step "${step}" of run ${runId}`, 'run');
    return false;
  }

  async setStep(runId: string, step: Step, value: string): Promise<void> {
    await this.updateStep(runId, step, 'SET steps.#step = :value', value, 'set step');
  }

  async releaseStep(runId: string, step: Step): Promise<void> {
    await this.updateStep(runId, step, 'REMOVE steps.#step', undefined, 'release step');
  }

  async putChunks(chunks: ChunkRecord[]): Promise<void> {
    const expiresAt = Math.floor(Date.now() / 1000) + this.chunkTtlSeconds;
    const requests: WriteRequest[] = chunks.map((c) => ({
      PutRequest: { Item: { ...c, ...chunkKey(c.runId, c.chunk), expiresAt } },
    }));
    const runIds = [...new Set(chunks.map((c) => c.runId))].join(', ');
    await this.batchWrite(requests, `put ${chunks.length} chunks of run ${runIds}`);
  }

  async updateChunk(runId: string, chunk: number, patch: Partial<Omit<ChunkRecord, 'runId' | 'chunk'>>): Promise<void> {
    const set = setExpression(patch, ['runId', 'chunk']);
    if (!set) return;
    const updated = await this.calls.conditional('UpdateItem', `chunk ${chunk} of run ${runId}`, () =>
      this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: chunkKey(runId, chunk),
          UpdateExpression: set.expression,
          ConditionExpression: 'attribute_exists(pk)',
          ExpressionAttributeNames: set.names,
          ExpressionAttributeValues: set.values,
        }),
      ),
    );
    if (!updated) throw this.missing(`update chunk ${chunk} of run ${runId}`, 'chunk');
  }

  async getChunk(runId: string, chunk: number): Promise<ChunkRecord | undefined> {
    const item = await this.getItem(chunkKey(runId, chunk), `chunk ${chunk} of run ${runId}`);
    return item && omit<ChunkRecord>(item, CHUNK_ITEM_ONLY);
  }

  async getChunks(runId: string, count: number): Promise<ChunkRecord[]> {
    const keys: Item[] = Array.from({ length: count }, (_, n) => chunkKey(runId, n));
    const found: ChunkRecord[] = [];
    await this.inBatches(keys, READ_BATCH_SIZE, 'BatchGetItem', `chunks of run ${runId}`, 'keys', async (pending) => {
      const res = await this.calls.call('BatchGetItem', `chunks of run ${runId}`, () =>
        this.doc.send(new BatchGetCommand({ RequestItems: { [this.tableName]: { Keys: pending, ConsistentRead: true } } })),
      );
      for (const item of res.Responses?.[this.tableName] ?? []) found.push(omit<ChunkRecord>(item, CHUNK_ITEM_ONLY));
      return (res.UnprocessedKeys?.[this.tableName]?.Keys ?? []) as Item[];
    });
    return found.sort((a, b) => a.chunk - b.chunk);
  }

  async deleteChunks(runId: string, count: number): Promise<void> {
    const requests: WriteRequest[] = Array.from({ length: count }, (_, n) => ({
      DeleteRequest: { Key: chunkKey(runId, n) },
    }));
    await this.batchWrite(requests, `delete ${count} chunks of run ${runId}`);
  }

  // --- The fan-out fleet (FleetTable): live-children counters and an operator's limit -----------

  async heartbeatFleet(runId: string, epoch: number, shard: number): Promise<void> {
    await this.addToFleetCounter(runId, epoch, shard, 1, 'heartbeat');
  }

  async leaveFleet(runId: string, epoch: number, shard: number): Promise<void> {
    await this.addToFleetCounter(runId, epoch, shard, -1, 'leave');
  }

  async readFleet(runId: string, epoch: number, shards: number, ownShard: number): Promise<FleetReading> {
    const limitKey = fleetLimitKey(runId, ownShard);
    const keys: Item[] = [limitKey, ...Array.from({ length: shards }, (_, shard) => fleetCounterKey(runId, shard, epoch))];
    let live = 0;
    let limit: FleetLimit | undefined;
    const subject = `fleet of run ${runId}, epoch ${epoch}`;
    await this.inBatches(keys, READ_BATCH_SIZE, 'BatchGetItem', subject, 'keys', async (pending) => {
      const res = await this.calls.call('BatchGetItem', subject, () =>
        this.doc.send(new BatchGetCommand({ RequestItems: { [this.tableName]: { Keys: pending, ConsistentRead: true } } })),
      );
      for (const item of res.Responses?.[this.tableName] ?? []) {
        if (item.sk === limitKey.sk) limit = readFleetLimit(item);
        else live += typeof item.live === 'number' ? item.live : 0;
      }
      return (res.UnprocessedKeys?.[this.tableName]?.Keys ?? []) as Item[];
    });
    return { live: Math.max(0, live), limit };
  }

  async setFleetLimit(runId: string, limit: { ratePerSecond?: number | null; concurrency?: number | null }): Promise<FleetLimit> {
    for (const [field, value] of Object.entries(limit)) {
      if (value !== null && value !== undefined && !(Number.isFinite(value) && value > 0)) {
        throw new RangeError(`a fleet ${field} must be a positive number (or null to lift it), got ${value}`);
      }
    }
    const run = await this.getRun(runId);
    if (!run) throw this.missing(`set the fleet limit of run ${runId}`, 'run');
    const { shards } = fleetLayout(run.counts?.chunks ?? 1);
    const updatedAt = Date.now();
    const sets = ['updatedAt = :at', `${RUN_TABLE_SCHEMA.ttlAttribute} = :exp`];
    const removes: string[] = [];
    const values: Item = { ':at': updatedAt, ':exp': Math.floor(updatedAt / 1000) + this.chunkTtlSeconds };
    for (const field of ['ratePerSecond', 'concurrency'] as const) {
      const value = limit[field];
      if (value === null) removes.push(field);
      else if (value !== undefined) {
        sets.push(`${field} = :${field}`);
        values[`:${field}`] = value;
      }
    }
    const expression = `SET ${sets.join(', ')}${removes.length > 0 ? ` REMOVE ${removes.join(', ')}` : ''}`;
    let result: FleetLimit | undefined;
    await forEachConcurrent(
      Array.from({ length: shards }, (_, shard) => shard),
      this.concurrency,
      async (shard) => {
        const res = await this.calls.call('UpdateItem (fleet limit)', `run ${runId} shard ${shard}`, () =>
          this.doc.send(
            new UpdateCommand({
              TableName: this.tableName,
              Key: fleetLimitKey(runId, shard),
              UpdateExpression: expression,
              ExpressionAttributeValues: values,
              ReturnValues: 'ALL_NEW',
            }),
          ),
        );
        if (shard === 0) result = readFleetLimit(res.Attributes ?? {});
      },
    );
    return result ?? { updatedAt };
  }

  private async addToFleetCounter(runId: string, epoch: number, shard: number, delta: number, what: string): Promise<void> {
    await this.calls.call(`UpdateItem (fleet ${what})`, `run ${runId} shard ${shard} epoch ${epoch}`, () =>
      this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: fleetCounterKey(runId, shard, epoch),
          UpdateExpression: `ADD live :delta SET ${RUN_TABLE_SCHEMA.ttlAttribute} = :exp`,
          ExpressionAttributeValues: { ':delta': delta, ':exp': Math.floor(Date.now() / 1000) + FLEET_COUNTER_TTL_SECONDS },
        }),
      ),
    );
  }

  // ------------------------------------------------------------------------------------------

  private async getItem(key: Item, subject: string): Promise<Item | undefined> {
    const res = await this.calls.call('GetItem', subject, () =>
      this.doc.send(new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true })),
    );
    return res.Item;
  }

  /** An update of one entry of the run's steps map, on condition that the run exists (and `extraCondition`). */
  private stepUpdate(runId: string, step: string, expression: string, value?: string, extraCondition = ''): UpdateCommand {
    return new UpdateCommand({
      TableName: this.tableName,
      Key: runKey(runId),
      UpdateExpression: expression,
      ConditionExpression: `attribute_exists(pk)${extraCondition}`,
      ExpressionAttributeNames: { '#step': step },
      ...(value !== undefined ? { ExpressionAttributeValues: { ':value': value } } : {}),
    });
  }

  private async updateStep(runId: string, step: string, expression: string, value: string | undefined, what: string): Promise<void> {
    const updated = await this.calls.conditional(`UpdateItem (${what})`, `run ${runId} step ${step}`, () =>
      this.doc.send(this.stepUpdate(runId, step, expression, value)),
    );
    if (!updated) throw this.missing(`${what} "${step}" of run ${runId}`, 'run');
  }

  private async batchWrite(requests: WriteRequest[], what: string): Promise<void> {
    await this.inBatches(requests, WRITE_BATCH_SIZE, 'BatchWriteItem', what, 'items', async (pending) => {
      const res = await this.calls.call('BatchWriteItem', what, () =>
        this.doc.send(new BatchWriteCommand({ RequestItems: { [this.tableName]: pending } })),
      );
      return (res.UnprocessedItems?.[this.tableName] ?? []) as WriteRequest[];
    });
  }

  /**
   * Sends `items` in batches of `size`, `concurrency` batches in flight. `sendBatch` sends one
   * batch and answers what the service left unprocessed, which is sent again after a back-off.
   */
  private async inBatches<T>(
    items: T[],
    size: number,
    operation: string,
    subject: string,
    unit: string,
    sendBatch: (batch: T[]) => Promise<T[]>,
  ): Promise<void> {
    await forEachConcurrent(slices(items, size), this.concurrency, async (batch) => {
      for (let attempt = 1, pending = batch; ; attempt++) {
        pending = await sendBatch(pending);
        if (pending.length === 0) return;
        if (attempt >= this.batchRetry.maxAttempts) {
          throw new StorageError(
            `DynamoDB ${operation} on table ${this.tableName} (${subject}) left ${pending.length} ${unit} unprocessed after ${attempt} attempts`,
            ExitCode.TABLE,
          );
        }
        await abortableSleep(backoffDelayMs(attempt, this.batchRetry));
      }
    });
  }

  private missing(action: string, what: 'run' | 'chunk'): StorageError {
    return new StorageError(`cannot ${action} in table ${this.tableName}: the ${what} does not exist`, ExitCode.TABLE);
  }
}

function readFleetLimit(item: Item): FleetLimit {
  const limit: FleetLimit = { updatedAt: typeof item.updatedAt === 'number' ? item.updatedAt : 0 };
  if (typeof item.ratePerSecond === 'number') limit.ratePerSecond = item.ratePerSecond;
  if (typeof item.concurrency === 'number') limit.concurrency = item.concurrency;
  return limit;
}
