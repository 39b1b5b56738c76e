/**
 * SourceLedger on the run table (SDK v3 document client; dynalite in a local run): one item per
 * remote file of a source, written with conditional writes so overlapping or repeated pulls copy
 * a file version once.
 *
 *   pulled file  pk `SOURCE#<source>`  sk `FILE#<remote path>`
 *
 * One partition per source: pulls write a few items a second at most, and a Query reads a
 * source's records back (the local `--state` folder saves them between runs).
 */
import { DeleteCommand, PutCommand, QueryCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { PulledFileRecord, SourceLedger } from '../ports';
import { ExitCode, StorageError } from '../errors';
import { DynamoCalls } from './dynamo-calls';

export const sourceFileKey = (source: string, path: string) => ({ pk: `SOURCE#${source}`, sk: `FILE#${path}` });

export class DynamoSourceLedger implements SourceLedger {
  private readonly calls: DynamoCalls;

  constructor(
    private readonly doc: DynamoDBDocumentClient,
    readonly tableName: string,
  ) {
    this.calls = new DynamoCalls(tableName);
  }

  async claim(source: string, path: string, version: string, pullId: string, now: number, staleMs: number): Promise<boolean> {
    const item = { ...sourceFileKey(source, path), source, path, version, state: 'copying', pullId, updatedAt: now };
    return this.calls.conditional('PutItem (claim a pulled file)', `${source}:${path}`, () =>
      this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: item,
          // New file, changed file, or a claim whose pull died.
          ConditionExpression: 'attribute_not_exists(pk) OR version <> :v OR (#state = :copying AND updatedAt < :stale)',
          ExpressionAttributeNames: { '#state': 'state' },
          ExpressionAttributeValues: { ':v': version, ':copying': 'copying', ':stale': now - staleMs },
        }),
      ),
    );
  }

  async markCopied(source: string, path: string, pullId: string, key: string, now: number): Promise<void> {
    const ok = await this.calls.conditional('UpdateItem (pulled file copied)', `${source}:${path}`, () =>
      this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: sourceFileKey(source, path),
          UpdateExpression: 'SET #state = :copied, #key = :key, updatedAt = :now',
          ConditionExpression: 'pullId = :me',
          ExpressionAttributeNames: { '#state': 'state', '#key': 'key' },
          ExpressionAttributeValues: { ':copied': 'copied', ':key': key, ':now': now, ':me': pullId },
        }),
      ),
    );
    if (!ok) {
      throw new StorageError(
        `the claim of ${source}:${path} was taken over by another pull before pull ${pullId} recorded its copy`,
        ExitCode.TABLE,
      );
    }
  }

  async release(source: string, path: string, pullId: string): Promise<void> {
    await this.calls.conditional('DeleteItem (release a pulled file)', `${source}:${path}`, () =>
      this.doc.send(
        new DeleteCommand({
          TableName: this.tableName,
          Key: sourceFileKey(source, path),
          ConditionExpression: 'pullId = :me AND #state = :copying',
          ExpressionAttributeNames: { '#state': 'state' },
          ExpressionAttributeValues: { ':me': pullId, ':copying': 'copying' },
        }),
      ),
    );
  }

  async list(source: string): Promise<PulledFileRecord[]> {
    const out: PulledFileRecord[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const page = await this.calls.call('Query (pulled files)', source, () =>
        this.doc.send(
          new QueryCommand({
            TableName: this.tableName,
            KeyConditionExpression: 'pk = :pk',
            ExpressionAttributeValues: { ':pk': sourceFileKey(source, '').pk },
            ExclusiveStartKey: start,
          }),
        ),
      );
      for (const item of page.Items ?? []) {
        const { pk: _pk, sk: _sk, ...record } = item;
        out.push(record as PulledFileRecord);
      }
      start = page.LastEvaluatedKey;
    } while (start);
    return out;
  }

  async restore(records: PulledFileRecord[]): Promise<void> {
    for (const r of records) {
      await this.calls.call('PutItem (restore a pulled file)', `${r.source}:${r.path}`, () =>
        this.doc.send(new PutCommand({ TableName: this.tableName, Item: { ...sourceFileKey(r.source, r.path), ...r } })),
      );
    }
  }
}
