/**
 * The input deadline of merge batches on AWS: an EventBridge rule runs the `on-merge-deadline`
 * Lambda on a fixed schedule (every 15 minutes by default); each run scans the run table for
 * batches WAITING_FOR_INPUTS and ends FAILED those past their deadline (the pipeline's
 * `inputDeadlineHours` after the batch's first file), emailing which input is still lacking
 * (lambda/handlers/merge-deadline.ts). A batch fails at most one interval after its deadline.
 *
 * Chosen over an EventBridge Scheduler one-time schedule per batch: nothing to create when a
 * batch opens or to delete when it completes (no schedule left behind, no iam:PassRole for the
 * intake handler), a batch opened before a deploy (or whose schedule could not be created) is
 * still found, and a batch whose last S3 event was lost is started. The cost is one table scan
 * per interval (the run table holds one item per run), cents a month.
 */
import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import { Construct } from 'constructs';
import type { HandlerFunction } from './handler-function';

export interface MergeDeadlineSweepProps {
  /** The `on-merge-deadline` handler (granted the run table, the intake prefix, SES and the merge jobs by the caller). */
  readonly handler: HandlerFunction;
  /** How often the sweep runs: the most a batch outlives its deadline. @default Duration.minutes(15) */
  readonly interval?: Duration;
}

export class MergeDeadlineSweep extends Construct {
  readonly rule: events.Rule;
  readonly handler: HandlerFunction;

  constructor(scope: Construct, id: string, props: MergeDeadlineSweepProps) {
    super(scope, id);
    this.handler = props.handler;
    const interval = props.interval ?? Duration.minutes(15);
    if (interval.toMinutes() < 1)
      throw new Error(`MergeDeadlineSweep: interval must be at least 1 minute, got ${interval.toHumanString()}`);
    this.rule = new events.Rule(this, 'Schedule', {
      description: 'batch-fanout: fail merge batches whose inputs did not all arrive by their deadline',
      schedule: events.Schedule.rate(interval),
    });
    this.rule.addTarget(
      new targets.LambdaFunction(props.handler.function, {
        deadLetterQueue: props.handler.deadLetterQueue,
        // The next sweep repeats whatever this one missed: no need to retry an old one for long.
        retryAttempts: 2,
        maxEventAge: interval,
      }),
    );
  }
}
