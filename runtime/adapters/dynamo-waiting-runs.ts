/**
 * Finds the merge batches still waiting for inputs, for the deadline sweep
 * (lambda/handlers/merge-deadline.ts): a paginated Scan of the run table for run items in status
 * WAITING_FOR_INPUTS, answering their run ids (the sweep then reads each run with a consistent
 * read). The run table has no index by status; a scan reads the table once (one item per run kept
 * `runRetentionDays`, plus the chunks of runs under way), which at a sweep every 15 minutes costs
 * cents a month for tens of thousands of runs.
 */
import { ScanCommand, type DynamoDBDocumentClient, type ScanCommandOutput } from '@aws-sdk/lib-dynamodb';
import { DynamoCalls } from './dynamo-calls';

/** Where the sweep finds waiting batches. */
export interface WaitingRunFinder {
  /** Run ids of the runs in status WAITING_FOR_INPUTS, a page at a time. */
  waitingRunIds(): AsyncIterable<string>;
}

export class DynamoWaitingRuns implements WaitingRunFinder {
  private readonly calls: DynamoCalls;

  constructor(
    private readonly doc: DynamoDBDocumentClient,
    readonly tableName: string,
  ) {
    this.calls = new DynamoCalls(tableName);
  }

  async *waitingRunIds(): AsyncIterable<string> {
    let start: Record<string, unknown> | undefined;
    do {
      const res: ScanCommandOutput = await this.calls.call('Scan', 'runs waiting for inputs', () =>
        this.doc.send(
          new ScanCommand({
            TableName: this.tableName,
            FilterExpression: 'sk = :run AND #s = :waiting',
            ExpressionAttributeNames: { '#s': 'status' },
            ExpressionAttributeValues: { ':run': 'RUN', ':waiting': 'WAITING_FOR_INPUTS' },
            ProjectionExpression: 'runId',
            ExclusiveStartKey: start,
          }),
        ),
      );
      for (const item of res.Items ?? []) if (typeof item.runId === 'string') yield item.runId;
      start = res.LastEvaluatedKey;
    } while (start);
  }
}
