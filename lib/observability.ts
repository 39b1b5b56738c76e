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
import type { Stage } from '../runtime/model';
import { pascal } from './construct-ids';
import type { HandlerName } from './handler-function';

/** CloudWatch namespace of the app's own metrics. */
const METRICS_NAMESPACE = 'BatchFanout';

export interface FanoutObservabilityProps {
  /** Key the operator topic is encrypted with (its policy must let CloudWatch use it). */
  readonly topicKey: kms.IKey;
  /** Subscribed to the operator topic. @default - no subscription */
  readonly operatorEmail?: string;
  /** The Lambda handlers. */
  readonly handlers: Readonly<Record<HandlerName, HandlerLogs>>;
  /** Log group of each job stage. Metrics are derived from the runtime's structured log lines (runtime/log.ts LOG_EVENTS). */
  readonly stageLogs: Readonly<Record<Stage, logs.ILogGroup>>;
  /** The EventBridge rule that matches this app's failed Batch jobs. */
  readonly failedJobsRule: events.IRule;
}

/** What is observed of a handler (a HandlerFunction). */
export interface HandlerLogs {
  readonly function: lambda.IFunction;
  readonly logGroup: logs.ILogGroup;
  readonly deadLetterQueue: sqs.IQueue;
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
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', { defaultInterval: Duration.hours(24) });

    // Metric filters, alarms and dashboard widgets over the handlers, jobs and failed-job rule.
    const { handlers, stageLogs } = props;
    const runsStarted = this.countLines('RunsStarted', [handlers['on-intake'].logGroup], LOG_EVENTS.runOpened);
    const runsFailed = this.countLines(
      'RunsFailed',
      [handlers['on-intake'].logGroup, handlers['on-job-failed'].logGroup],
      LOG_EVENTS.runFailed,
    );
    const runsSucceeded = this.jsonMetric('RunsSucceeded', stageLogs.consolidate, LOG_EVENTS.runSucceeded, '1');
    // Each result part logs what is new since the previous one, so the sums are exact per minute
    // and a resumed child does not count its earlier attempt's items again.
    const itemsDone = this.jsonMetric('ItemsDone', stageLogs.fanout, LOG_EVENTS.fanoutProgress, '$.done');
    const itemsFailed = this.jsonMetric('ItemsFailed', stageLogs.fanout, LOG_EVENTS.fanoutProgress, '$.failed');
    const retries = this.jsonMetric('ItemRetries', stageLogs.fanout, LOG_EVENTS.fanoutProgress, '$.retries');
    const failedJobs = new cloudwatch.Metric({
      namespace: 'AWS/Events',
      metricName: 'TriggeredRules',
      dimensionsMap: { RuleName: props.failedJobsRule.ruleName },
      statistic: 'Sum',
      period: Duration.minutes(5),
    });

    this.alarm('FailedJobsAlarm', failedJobs, 'An AWS Batch job of this app failed for good (after its retries).');
    this.alarm('FailedRunsAlarm', runsFailed, 'A run ended FAILED (bad input, or a job that failed for good).');
    const observed = Object.entries(handlers) as [HandlerName, HandlerLogs][];
    for (const [name, h] of observed) {
      this.alarm(
        `${pascal(name)}DeadLettersAlarm`,
        h.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: 'Maximum' }),
        `Events the ${name} handler could not process are waiting in its dead-letter queue.`,
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
        left: observed.map(([name, h]) => h.function.metricErrors({ label: name, period: Duration.minutes(5) })),
        width: 12,
      }),
      new cloudwatch.GraphWidget({
        title: 'Dead-lettered events',
        left: observed.map(([name, h]) =>
          h.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ label: name, period: Duration.minutes(5) }),
        ),
        width: 12,
      }),
    );
  }

  private alarm(id: string, metric: cloudwatch.IMetric, description: string): void {
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
  }

  /** Counts lines that contain a phrase (works for Lambda JSON logs, where the line is nested). */
  private countLines(metricName: string, groups: logs.ILogGroup[], phrase: string): cloudwatch.Metric {
    groups.forEach((logGroup, i) =>
      this.metricFilter(`${metricName}Filter${i}`, logGroup, metricName, logs.FilterPattern.literal(`"${phrase}"`), '1'),
    );
    return this.metric(metricName);
  }

  /** A metric from a JSON log line with this `message`, valued by a field (or 1). */
  private jsonMetric(metricName: string, logGroup: logs.ILogGroup, message: string, value: string): cloudwatch.Metric {
    this.metricFilter(`${metricName}Filter`, logGroup, metricName, logs.FilterPattern.stringValue('$.message', '=', message), value);
    return this.metric(metricName);
  }

  private metricFilter(
    id: string,
    logGroup: logs.ILogGroup,
    metricName: string,
    filterPattern: logs.IFilterPattern,
    metricValue: string,
  ): void {
    new logs.MetricFilter(this, id, {
      logGroup,
      filterPattern,
      metricNamespace: METRICS_NAMESPACE,
      metricName,
      metricValue,
      defaultValue: 0,
    });
  }

  private metric(metricName: string): cloudwatch.Metric {
    return new cloudwatch.Metric({ namespace: METRICS_NAMESPACE, metricName, statistic: 'Sum', period: Duration.minutes(5) });
  }
}
