/**
 * Operator view of the app: an encrypted operator topic (optionally with an email
 * subscription), metrics derived from the runtime's structured logs, alarms and a dashboard.
 */
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as events from 'aws-cdk-lib/aws-events';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { LOG_EVENTS } from '../runtime/log';

/** CloudWatch namespace of the app's own metrics. */
export const METRICS_NAMESPACE = 'BatchFanout';

/**
 * Log lines the metrics are derived from (runtime/log.ts writes one JSON object per line with a
 * `message` field); defined once in runtime/log.ts and used by the handlers and stages.
 */
export const LOG_MESSAGES = LOG_EVENTS;

export interface FanoutObservabilityProps {
  /** Key the operator topic is encrypted with (its policy must let CloudWatch use it). */
  readonly topicKey: kms.IKey;
  /** Subscribed to the operator topic. @default - no subscription */
  readonly operatorEmail?: string;
  /** Dashboard name. @default - generated */
  readonly dashboardName?: string;
}

export interface HandlerLogs {
  readonly name: string;
  readonly function: lambda.IFunction;
  readonly logGroup: logs.ILogGroup;
  readonly deadLetterQueue: sqs.IQueue;
}

export interface ObservedSources {
  /** Lambda handlers, by name (`on-intake`, ...). */
  readonly handlers: readonly HandlerLogs[];
  /** Log group of each job stage. */
  readonly stageLogs: { readonly fanout: logs.ILogGroup; readonly consolidate: logs.ILogGroup };
  /** The EventBridge rule that matches this app's failed Batch jobs. */
  readonly failedJobsRule: events.IRule;
}

/**
 * Defaults: alarms fire on the first failed job, the first dead-lettered event and the first
 * failed run (one 5-minute period, missing data = OK), and notify the operator topic.
 */
export class FanoutObservability extends Construct {
  readonly operatorTopic: sns.Topic;
  readonly dashboard: cloudwatch.Dashboard;
  readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: FanoutObservabilityProps) {
    super(scope, id);
    this.operatorTopic = new sns.Topic(this, 'OperatorTopic', {
      displayName: 'batch-fanout operator alarms',
      masterKey: props.topicKey,
      enforceSSL: true,
    });
    if (props.operatorEmail !== undefined) {
      this.operatorTopic.addSubscription(new subscriptions.EmailSubscription(props.operatorEmail));
    }
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: props.dashboardName,
      defaultInterval: Duration.hours(24),
    });
  }

  /** Metric filters, alarms and dashboard widgets over the app's handlers, jobs and failed-job rule. */
  observe(sources: ObservedSources): void {
    const handler = (name: string) => sources.handlers.find((h) => h.name === name);
    const runsStarted = this.countLines('RunsStarted', [handler('on-intake')?.logGroup], LOG_MESSAGES.runOpened);
    const runsFailed = this.countLines(
      'RunsFailed',
      [handler('on-intake')?.logGroup, handler('on-job-failed')?.logGroup],
      LOG_MESSAGES.runFailed,
    );
    const runsSucceeded = this.jsonMetric('RunsSucceeded', sources.stageLogs.consolidate, LOG_MESSAGES.runSucceeded, '1');
    // Each result part logs what is new since the previous one, so the sums are exact per minute
    // and a resumed child does not count its earlier attempt's items again.
    const itemsDone = this.jsonMetric('ItemsDone', sources.stageLogs.fanout, LOG_MESSAGES.fanoutProgress, '$.done');
    const itemsFailed = this.jsonMetric('ItemsFailed', sources.stageLogs.fanout, LOG_MESSAGES.fanoutProgress, '$.failed');
    const retries = this.jsonMetric('ItemRetries', sources.stageLogs.fanout, LOG_MESSAGES.fanoutProgress, '$.retries');
    const failedJobs = new cloudwatch.Metric({
      namespace: 'AWS/Events',
      metricName: 'TriggeredRules',
      dimensionsMap: { RuleName: sources.failedJobsRule.ruleName },
      statistic: 'Sum',
      period: Duration.minutes(5),
    });

    this.alarm('FailedJobsAlarm', failedJobs, 'An AWS Batch job of this app failed for good (after its retries).');
    this.alarm('FailedRunsAlarm', runsFailed, 'A run ended FAILED (bad input, or a job that failed for good).');
    for (const h of sources.handlers) {
      this.alarm(
        `${pascal(h.name)}DeadLettersAlarm`,
        h.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: 'Maximum' }),
        `Events the ${h.name} handler could not process are waiting in its dead-letter queue.`,
      );
    }

    const perMinute = (m: cloudwatch.IMetric) => (m as cloudwatch.Metric).with({ period: Duration.minutes(1) });
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Runs',
        left: [runsStarted, runsSucceeded, runsFailed],
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Items per minute',
        left: [perMinute(itemsDone), perMinute(itemsFailed)],
        width: 12,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({ title: 'Fan-out retries', left: [retries], width: 8 }),
      new cloudwatch.GraphWidget({ title: 'Job failures', left: [failedJobs], width: 8 }),
      new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 8 }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Handler errors',
        left: sources.handlers.map((h) => h.function.metricErrors({ label: h.name, period: Duration.minutes(5) })),
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Dead-lettered events',
        left: sources.handlers.map((h) =>
          h.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ label: h.name, period: Duration.minutes(5) }),
        ),
        width: 12,
      }),
    );
  }

  private alarm(id: string, metric: cloudwatch.IMetric, description: string): cloudwatch.Alarm {
    const alarm = new cloudwatch.Alarm(this, id, {
      metric,
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      alarmDescription: description,
    });
    alarm.addAlarmAction(new actions.SnsAction(this.operatorTopic));
    this.alarms.push(alarm);
    return alarm;
  }

  /** Counts lines that contain a phrase (works for Lambda JSON logs, where the line is nested). */
  private countLines(metricName: string, groups: (logs.ILogGroup | undefined)[], phrase: string): cloudwatch.Metric {
    groups.forEach((group, i) => {
      if (!group) return;
      new logs.MetricFilter(this, `${metricName}Filter${i}`, {
        logGroup: group,
        filterPattern: logs.FilterPattern.literal(`"${phrase}"`),
        metricNamespace: METRICS_NAMESPACE,
        metricName,
        metricValue: '1',
        defaultValue: 0,
      });
    });
    return new cloudwatch.Metric({ namespace: METRICS_NAMESPACE, metricName, statistic: 'Sum', period: Duration.minutes(5) });
  }

  /** A metric from a JSON log line with this `message`, valued by a field (or 1). */
  private jsonMetric(metricName: string, group: logs.ILogGroup, message: string, value: string): cloudwatch.Metric {
    new logs.MetricFilter(this, `${metricName}Filter`, {
      logGroup: group,
      filterPattern: logs.FilterPattern.stringValue('$.message', '=', message),
      metricNamespace: METRICS_NAMESPACE,
      metricName,
      metricValue: value,
      defaultValue: 0,
    });
    return new cloudwatch.Metric({ namespace: METRICS_NAMESPACE, metricName, statistic: 'Sum', period: Duration.minutes(5) });
  }
}

function pascal(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_m, _d, c: string) => c.toUpperCase());
}
