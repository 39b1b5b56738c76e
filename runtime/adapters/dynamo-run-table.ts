/**
 * RunTable on one DynamoDB table (SDK v3 document client). The same code talks to dynalite in a
 * local run.
 *
 * Key schema: partition key `pk` (S), sort key `sk` (S), TTL attribute `expiresAt` (epoch s).
 *   run    pk `RUN#<runId>`            sk `RUN`
 *   chunk  pk `CHUNK#<runId>#<n>`      sk `CHUNK`   (one partition key per chunk: 10,000 fan-out
 *                                                  children updating progress at once never
 *                                                  share a partition)
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
import { ExitCode, StorageError, errorMessage } from '../errors';
import type { ChunkRecord, RunRecord, RunStatus } from '../model';
import type { RunTable } from '../ports';

/** Key attribute names and the TTL attribute of the table (the infrastructure must match). */
export const RUN_TABLE_SCHEMA = {
  partitionKey: 'pk',
  sortKey: 'sk',
  ttlAttribute: 'expiresAt',
} as const;

export const runKey = (runId: string) => ({ pk: `RUN#${runId}`, sk: 'RUN' });
export const chunkKey = (runId: string, chunk: number) => ({ pk: `CHUNK#${runId}#${chunk}`, sk: 'CHUNK' });

/** Items per BatchWriteItem / keys per BatchGetItem (the DynamoDB maxima). */
export const WRITE_BATCH_SIZE = 25;
export const READ_BATCH_SIZE = 100;

export interface DynamoRunTableOptions {
  /** Batch requests in flight at once. @default 4 */
  concurrency?: number;
  /** Rounds of retrying unprocessed items before giving up. @default 10 */
  maxBatchRetries?: number;
  /** First back-off delay for unprocessed items, ms; doubles each round (with jitter), capped at 5 s. @default 50 */
  baseDelayMs?: number;
  /**
   * Chunk items carry a TTL this many seconds after they are written, so the chunk state of a
   * run whose cleanup never ran does not stay forever. @default 30 days
   */
  chunkTtlSeconds?: number;
}

const MAX_BACKOFF_MS = 5000;
const KEY_ATTRIBUTES = ['pk', 'sk'] as const;

type Item = Record<string, unknown>;
type WriteRequest = { PutRequest: { Item: Item } } | { DeleteRequest: { Key: Item } };

function isConditionFailure(err: unknown): boolean {
  return (err as { name?: string } | undefined)?.name === 'ConditionalCheckFailedException';
}

function stripKeys<T>(item: Item): T {
  const out: Item = { ...item };
  for (const k of KEY_ATTRIBUTES) delete out[k];
  return out as T;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs `fn` over `items` with at most `concurrency` calls in flight. */
async function forEachConcurrent<T>(items: T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

function batches<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** `SET #f0 = :v0, ...` over the defined fields of a patch. */
function setExpression(patch: Record<string, unknown>): {
  expression: string;
  names: Record<string, string>;
  values: Record<string, unknown>;
} | undefined {
  const names: Record<string, string> = {};
  const values: Record<string, unknown> = {};
  const parts: string[] = [];
  for (const [field, value] of Object.entries(patch)) {
    if (value === undefined) continue;
    const i = parts.length;
    names[`#f${i}`] = field;
    values[`:v${i}`] = value;
    parts.push(`#f${i} = :v${i}`);
  }
  if (parts.length === 0) return undefined;
  return { expression: `SET ${parts.join(', ')}`, names, values };
}

export class DynamoRunTable implements RunTable {
  private readonly concurrency: number;
  private readonly maxBatchRetries: number;
  private readonly baseDelayMs: number;
  private readonly chunkTtlSeconds: number;

  constructor(
    private readonly doc: DynamoDBDocumentClient,
    readonly tableName: string,
    opts: DynamoRunTableOptions = {},
  ) {
    this.concurrency = opts.concurrency ?? 4;
    this.maxBatchRetries = opts.maxBatchRetries ?? 10;
    this.baseDelayMs = opts.baseDelayMs ?? 50;
    this.chunkTtlSeconds = opts.chunkTtlSeconds ?? 30 * 24 * 3600;
  }

  async createRun(run: RunRecord): Promise<boolean> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { ...run, ...runKey(run.runId), steps: run.steps ?? {} },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
      return true;
    } catch (err) {
      if (isConditionFailure(err)) return false;
      throw this.failure('PutItem (create run)', `run ${run.runId}`, err);
    }
  }

  async getRun(runId: string): Promise<RunRecord | undefined> {
    try {
      const res = await this.doc.send(
        new GetCommand({ TableName: this.tableName, Key: runKey(runId), ConsistentRead: true }),
      );
      return res.Item ? stripKeys<RunRecord>(res.Item) : undefined;
    } catch (err) {
      throw this.failure('GetItem', `run ${runId}`, err);
    }
  }

  async updateRun(
    runId: string,
    patch: Partial<Omit<RunRecord, 'runId'>>,
    cond: { statusIn?: RunStatus[] } = {},
  ): Promise<boolean> {
    const fields: Record<string, unknown> = { ...patch };
    delete fields.runId;
    const set = setExpression(fields);
    const statusIn = cond.statusIn;
    if (!set) {
      // Nothing to write: report whether the condition holds.
      const run = await this.getRun(runId);
      return run !== undefined && (statusIn === undefined || statusIn.includes(run.status));
    }
    const names = { ...set.names };
    const values = { ...set.values };
    let condition = 'attribute_exists(pk)';
    if (statusIn !== undefined) {
      if (statusIn.length === 0) return false;
      names['#status'] = 'status';
      const placeholders = statusIn.map((s, i) => {
        values[`:s${i}`] = s;
        return `:s${i}`;
      });
      condition += ` AND #status IN (${placeholders.join(', ')})`;
    }
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: runKey(runId),
          UpdateExpression: set.expression,
          ConditionExpression: condition,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
        }),
      );
      return true;
    } catch (err) {
      if (isConditionFailure(err)) return false;
      throw this.failure('UpdateItem', `run ${runId}`, err);
    }
  }

  async claimStep(runId: string, step: string, value: string): Promise<boolean> {
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: runKey(runId),
          UpdateExpression: 'SET steps.#step = :value',
          ConditionExpression: 'attribute_exists(pk) AND attribute_not_exists(steps.#step)',
          ExpressionAttributeNames: { '#step': step },
          ExpressionAttributeValues: { ':value': value },
        }),
      );
      return true;
    } catch (err) {
      if (!isConditionFailure(err)) throw this.failure('UpdateItem (claim step)', `run ${runId} step ${step}`, err);
    }
    // Taken already, or no such run: the latter is a bug in the caller, say so.
    if ((await this.getRun(runId)) === undefined) {
      throw new StorageError(
        `cannot claim step "${step}" of run ${runId} in table ${this.tableName}: the run does not exist`,
        ExitCode.TABLE,
      );
    }
    return false;
  }

  async setStep(runId: string, step: string, value: string): Promise<void> {
    await this.updateStep(runId, step, 'SET steps.#step = :value', { ':value': value }, 'set step');
  }

  async releaseStep(runId: string, step: string): Promise<void> {
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

  async updateChunk(
    runId: string,
    chunk: number,
    patch: Partial<Omit<ChunkRecord, 'runId' | 'chunk'>>,
  ): Promise<void> {
    const fields: Record<string, unknown> = { ...patch };
    delete fields.runId;
    delete fields.chunk;
    const set = setExpression(fields);
    if (!set) return;
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: chunkKey(runId, chunk),
          UpdateExpression: set.expression,
          ConditionExpression: 'attribute_exists(pk)',
          ExpressionAttributeNames: set.names,
          ExpressionAttributeValues: set.values,
        }),
      );
    } catch (err) {
      if (isConditionFailure(err)) {
        throw new StorageError(
          `cannot update chunk ${chunk} of run ${runId} in table ${this.tableName}: the chunk does not exist`,
          ExitCode.TABLE,
        );
      }
      throw this.failure('UpdateItem', `chunk ${chunk} of run ${runId}`, err);
    }
  }

  async getChunk(runId: string, chunk: number): Promise<ChunkRecord | undefined> {
    try {
      const res = await this.doc.send(
        new GetCommand({ TableName: this.tableName, Key: chunkKey(runId, chunk), ConsistentRead: true }),
      );
      return res.Item ? this.toChunk(res.Item) : undefined;
    } catch (err) {
      throw this.failure('GetItem', `chunk ${chunk} of run ${runId}`, err);
    }
  }

  async getChunks(runId: string, count: number): Promise<ChunkRecord[]> {
    const keys = Array.from({ length: count }, (_, n) => chunkKey(runId, n));
    const found: ChunkRecord[] = [];
    await forEachConcurrent(batches(keys, READ_BATCH_SIZE), this.concurrency, async (batch) => {
      let pending: Item[] = batch;
      for (let round = 0; ; round++) {
        let res;
        try {
          res = await this.doc.send(
            new BatchGetCommand({
              RequestItems: { [this.tableName]: { Keys: pending, ConsistentRead: true } },
            }),
          );
        } catch (err) {
          throw this.failure('BatchGetItem', `chunks of run ${runId}`, err);
        }
        for (const item of res.Responses?.[this.tableName] ?? []) found.push(this.toChunk(item));
        pending = (res.UnprocessedKeys?.[this.tableName]?.Keys ?? []) as Item[];
        if (pending.length === 0) return;
        if (round >= this.maxBatchRetries) {
          throw new StorageError(
            `DynamoDB BatchGetItem on table ${this.tableName} left ${pending.length} keys of run ${runId} unprocessed after ${round + 1} attempts`,
            ExitCode.TABLE,
          );
        }
        await sleep(this.backoff(round));
      }
    });
    return found.sort((a, b) => a.chunk - b.chunk);
  }

  async deleteChunks(runId: string, count: number): Promise<void> {
    const requests: WriteRequest[] = Array.from({ length: count }, (_, n) => ({
      DeleteRequest: { Key: chunkKey(runId, n) },
    }));
    await this.batchWrite(requests, `delete ${count} chunks of run ${runId}`);
  }

  private toChunk(item: Item): ChunkRecord {
    const chunk = stripKeys<ChunkRecord & { expiresAt?: number }>(item);
    delete chunk.expiresAt;
    return chunk;
  }

  private async updateStep(
    runId: string,
    step: string,
    expression: string,
    values: Record<string, unknown> | undefined,
    what: string,
  ): Promise<void> {
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: runKey(runId),
          UpdateExpression: expression,
          ConditionExpression: 'attribute_exists(pk)',
          ExpressionAttributeNames: { '#step': step },
          ...(values ? { ExpressionAttributeValues: values } : {}),
        }),
      );
    } catch (err) {
      if (isConditionFailure(err)) {
        throw new StorageError(
          `cannot ${what} "${step}" of run ${runId} in table ${this.tableName}: the run does not exist`,
          ExitCode.TABLE,
        );
      }
      throw this.failure(`UpdateItem (${what})`, `run ${runId} step ${step}`, err);
    }
  }

  private async batchWrite(requests: WriteRequest[], what: string): Promise<void> {
    await forEachConcurrent(batches(requests, WRITE_BATCH_SIZE), this.concurrency, async (batch) => {
      let pending = batch;
      for (let round = 0; ; round++) {
        let res;
        try {
          res = await this.doc.send(new BatchWriteCommand({ RequestItems: { [this.tableName]: pending } }));
        } catch (err) {
          throw this.failure('BatchWriteItem', what, err);
        }
        pending = (res.UnprocessedItems?.[this.tableName] ?? []) as WriteRequest[];
        if (pending.length === 0) return;
        if (round >= this.maxBatchRetries) {
          throw new StorageError(
            `DynamoDB BatchWriteItem on table ${this.tableName} (${what}) left ${pending.length} items unprocessed after ${round + 1} attempts`,
            ExitCode.TABLE,
          );
        }
        await sleep(this.backoff(round));
      }
    });
  }

  /** Exponential back-off with jitter: between half and all of the doubled delay. */
  private backoff(round: number): number {
    const ceiling = Math.min(MAX_BACKOFF_MS, this.baseDelayMs * 2 ** round);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  private failure(operation: string, subject: string, err: unknown): Error {
    if (err instanceof StorageError) return err;
    const name = (err as { name?: string } | undefined)?.name;
    return new StorageError(
      `DynamoDB ${operation} on table ${this.tableName} (${subject}) failed${name && name !== 'Error' ? ` (${name})` : ''}: ${errorMessage(err)}`,
      ExitCode.TABLE,
      { cause: err },
    );
  }
}
