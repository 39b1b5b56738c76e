/**
 * Scheduled SFTP pulls (docs/sftp.md): per source of the pipelines config, an `sftp-pull` Batch
 * job definition on the Fargate Spot queue and an EventBridge Scheduler schedule (the source's
 * `rate(...)`/`cron(...)`, UTC) that submits it.
 *
 * The schedule's target is Scheduler's universal target `arn:aws:scheduler:::aws-sdk:batch:submitJob`
 * with a SubmitJob request as its input (`JobName`, `JobQueue`, `JobDefinition`): Batch is not one
 * of Scheduler's templated targets (those are CodeBuild, CodePipeline, ECS RunTask, EventBridge,
 * Inspector, Kinesis, Firehose, Lambda, SageMaker, SNS, SQS and Step Functions).
 *
 * Per source, least privilege:
 * - the schedule's role may only `batch:SubmitJob` that job definition to that queue (and send a
 *   failed delivery to the dead-letter queue); it trusts Scheduler for this app's schedule group only;
 * - the job's execution role reads the one secret `privateKey.secretName`, handed to the container
 *   as a Batch secret in the variable `privateKey.env` (the key is never in config or plain env);
 * - the job role writes the source's files `intake/<pipeline>/<source>/*`, for a files pipeline its
 *   manifests `intake/<pipeline>/<source>-*`, reads, writes and deletes its temporary objects
 *   `work/pulls/<source>/*`, and writes the copy ledger's items of its own partition
 *   (`SOURCE#<source>`) of the run table: PutItem, UpdateItem, DeleteItem, nothing else.
 *
 * Egress leaves through the VPC's NAT gateway, or a public IP when `natGateways` is 0 (the job
 * subnets of the compute environment, `assignPublicIp`). A schedule whose submission fails after its
 * retries goes to a dead-letter queue, which alarms the operator.
 *
 * Defaults of the pull job: 0.25 vCPU and 1 GiB (the copy is streamed), one hour per attempt,
 * 3 attempts (a refused host or user key exits 11, BAD_CONFIG, and is not retried).
 */
import { Duration, type RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { PipelineShape } from '../runtime/config/schema';
import type { SftpSourceConfig } from '../runtime/config/sources-schema';
import { acknowledgeGrantWildcards, acknowledgeGuard, acknowledgeNag, cfnOf, type WildcardReason } from './acknowledge';
import { pascal } from './construct-ids';
import { StageJobDefinition } from './stage-job-definition';

/** Size and limits of the sftp-pull job. */
export interface SftpPullJobSettings {
  /** @default 0.25 */
  readonly vcpus?: number;
  /** @default Size.gibibytes(1) */
  readonly memory?: Size;
  /** Per attempt. @default Duration.hours(1) */
  readonly timeout?: Duration;
  /** Attempts for a lost connection or a failed copy (the retry copies what is left). @default 3 */
  readonly attempts?: number;
}

export interface SftpSourcesProps {
  /** The sources (at least one); each needs `privateKey.secretName` on AWS. */
  readonly sources: readonly SftpSourceConfig[];
  /** Shape of each pipeline by name: a files pipeline's pull writes a manifest per pull. */
  readonly shapes: Readonly<Record<string, PipelineShape>>;
  /** The Fargate Spot job queue. */
  readonly queue: batch.IJobQueue;
  readonly image: ecs.ContainerImage;
  readonly bucket: s3.IBucket;
  readonly table: dynamodb.ITable;
  /** Key prefixes of the bucket: intake/ and work/. */
  readonly prefixes: { readonly intake: string; readonly work: string };
  /** Plain environment of the job: bucket, table, region. */
  readonly environment: { readonly FANOUT_BUCKET: string; readonly FANOUT_TABLE: string; readonly AWS_REGION: string };
  /** Give the task a public IP (jobs in public subnets when natGateways is 0). @default false */
  readonly assignPublicIp?: boolean;
  /** Key of the pull jobs' log group. */
  readonly logKey: kms.IKey;
  readonly logRetention: logs.RetentionDays;
  readonly removalPolicy: RemovalPolicy;
  /** Topic the dead-letter alarm notifies (the operator topic). @default - no alarm action */
  readonly alarmTopic?: sns.ITopic;
  /** Why the stack's grant wildcards are acceptable (the execution roles' ECR and log grants). */
  readonly explainWildcard: WildcardReason;
  /** @default - see SftpPullJobSettings */
  readonly pullJob?: SftpPullJobSettings;
}

export class SftpSources extends Construct {
  /** The sftp-pull job definition of each source, by source name. */
  readonly definitions: Readonly<Record<string, batch.EcsJobDefinition>>;
  readonly schedules: Readonly<Record<string, scheduler.Schedule>>;
  /** The pull job's role of each source. */
  readonly jobRoles: Readonly<Record<string, iam.Role>>;
  /** The role each source's schedule submits its job with. */
  readonly scheduleRoles: Readonly<Record<string, iam.Role>>;
  readonly scheduleGroup: scheduler.ScheduleGroup;
  readonly logGroup: logs.LogGroup;
  /** Schedule invocations that could not submit their job after the retries. */
  readonly deadLetterQueue: sqs.Queue;

  constructor(scope: Construct, id: string, props: SftpSourcesProps) {
    super(scope, id);
    const problems = sftpSourcesProblems(props);
    if (problems.length > 0) throw new Error(`SftpSources ${this.node.path}: ${problems.join('; ')}`);
    const settings = props.pullJob ?? {};
    const { bucket, prefixes } = props;
    const stack = Stack.of(this);

    this.logGroup = new logs.LogGroup(this, 'PullJobLogs', {
      retention: props.logRetention,
      encryptionKey: props.logKey,
      removalPolicy: props.removalPolicy,
    });
    this.scheduleGroup = new scheduler.ScheduleGroup(this, 'Schedules');
    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetters', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    const dlqReason = 'This queue is the dead-letter destination of the SFTP pull schedules; it has no dead-letter queue of its own.';
    acknowledgeNag(cfnOf(this.deadLetterQueue), 'AwsSolutions-SQS3', dlqReason);
    acknowledgeGuard(cfnOf(this.deadLetterQueue), 'sqs_dlq_check', dlqReason);
    const alarm = new cloudwatch.Alarm(this, 'DeadLettersAlarm', {
      metric: this.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: 'Maximum' }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      alarmDescription: 'An SFTP pull schedule could not submit its sftp-pull job (see its dead-letter queue).',
    });
    if (props.alarmTopic) alarm.addAlarmAction(new actions.SnsAction(props.alarmTopic));

    const definitions: Record<string, batch.EcsJobDefinition> = {};
    const schedules: Record<string, scheduler.Schedule> = {};
    const jobRoles: Record<string, iam.Role> = {};
    const scheduleRoles: Record<string, iam.Role> = {};
    for (const source of props.sources) {
      const name = pascal(source.name);
      const shape = props.shapes[source.pipeline]!;
      const role = new iam.Role(this, `${name}JobRole`, {
        assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
        description: `batch-fanout sftp-pull of source ${source.name}`,
      });
      // A file is streamed to a temporary object, copied server-side into intake/, then the temporary object is deleted.
      const temp = `${prefixes.work}pulls/${source.name}/*`;
      bucket.grantPut(role, temp);
      bucket.grantRead(role, temp);
      bucket.grantDelete(role, temp);
      bucket.grantPut(role, `${prefixes.intake}${source.pipeline}/${source.name}/*`);
      if (shape === 'files') bucket.grantPut(role, `${prefixes.intake}${source.pipeline}/${source.name}-*`);
      // The copy ledger: conditional writes of this source's items only (runtime/adapters/dynamo-source-ledger.ts).
      iam.Grant.addToPrincipal({
        grantee: role,
        actions: ['dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
        resourceArns: [props.table.tableArn],
        conditions: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': [`SOURCE#${source.name}`] } },
      });
      props.table.encryptionKey?.grantEncryptDecrypt(role);

      const secretName = source.privateKey.secretName!;
      const definition = new StageJobDefinition(this, `${name}Pull`, {
        stage: 'sftp-pull',
        compute: 'fargate-spot',
        image: props.image,
        vcpus: settings.vcpus ?? 0.25,
        memory: settings.memory ?? Size.gibibytes(1),
        timeout: settings.timeout ?? Duration.hours(1),
        attempts: settings.attempts ?? 3,
        jobRole: role,
        logGroup: this.logGroup,
        streamPrefix: source.name,
        environment: {
          ...props.environment,
          FANOUT_SOURCE: JSON.stringify(source),
          FANOUT_PIPELINE_SHAPE: shape,
        },
        secrets: {
          [source.privateKey.env]: batch.Secret.fromSecretsManager(secretsmanager.Secret.fromSecretNameV2(this, `${name}Key`, secretName)),
        },
        assignPublicIp: props.assignPublicIp,
      }).definition;

      const scheduleRole = new iam.Role(this, `${name}ScheduleRole`, {
        assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
          conditions: {
            StringEquals: { 'aws:SourceAccount': stack.account, 'aws:SourceArn': this.scheduleGroup.scheduleGroupArn },
          },
        }),
        description: `batch-fanout: the schedule of SFTP source ${source.name} submits its sftp-pull job`,
      });
      schedules[source.name] = new scheduler.Schedule(this, `${name}Schedule`, {
        description: `batch-fanout: pull SFTP source ${source.name} into intake/${source.pipeline}/`,
        schedule: scheduler.ScheduleExpression.expression(source.schedule),
        scheduleGroup: this.scheduleGroup,
        target: new targets.Universal({
          service: 'batch',
          action: 'submitJob',
          role: scheduleRole,
          deadLetterQueue: this.deadLetterQueue,
          retryAttempts: 3,
          maxEventAge: Duration.hours(1),
          // The SubmitJob request, as the Batch API names its fields.
          input: scheduler.ScheduleTargetInput.fromObject({
            JobName: `fanout-sftp-pull-${source.name}`,
            JobQueue: props.queue.jobQueueArn,
            JobDefinition: definition.jobDefinitionArn,
            // Named in the job's state events, so on-job-failed can tell the pipeline's recipients.
            Parameters: { source: source.name },
          }),
          // What definition.grantSubmitJob(role, queue) grants; without statements the target would grant batch:SubmitJob on '*'.
          policyStatements: [
            new iam.PolicyStatement({ actions: ['batch:SubmitJob'], resources: [definition.jobDefinitionArn, props.queue.jobQueueArn] }),
          ],
        }),
      });
      definitions[source.name] = definition;
      jobRoles[source.name] = role;
      scheduleRoles[source.name] = scheduleRole;
      acknowledgeGrantWildcards(role, (w) => explainPullWildcard(w, source, props));
      acknowledgeGrantWildcards(definition.container.executionRole, props.explainWildcard);
    }
    this.definitions = definitions;
    this.schedules = schedules;
    this.jobRoles = jobRoles;
    this.scheduleRoles = scheduleRoles;
  }
}

/** Every problem of the props, each naming the source and the field. */
function sftpSourcesProblems(props: SftpSourcesProps): string[] {
  const problems: string[] = [];
  if (props.sources.length === 0) problems.push('give at least one source');
  for (const s of props.sources) {
    if (s.privateKey.secretName === undefined) {
      problems.push(
        `source "${s.name}" has no privateKey.secretName: on AWS the private key comes from a Secrets Manager secret (create it, then name it in the source)`,
      );
    }
    if (props.shapes[s.pipeline] === undefined) problems.push(`source "${s.name}" feeds pipeline "${s.pipeline}", which is not deployed`);
  }
  return problems;
}

/** Why the wildcards of a pull job's grants are acceptable. */
function explainPullWildcard(w: Parameters<WildcardReason>[0], source: SftpSourceConfig, props: SftpSourcesProps): string | undefined {
  const resource = /^Resource::.*PipelineBucket[^/]*\/(.+)$/.exec(w.finding)?.[1];
  if (resource === `${props.prefixes.work}pulls/${source.name}/*`) {
    return `Temporary objects of source ${source.name}'s pulls (work/pulls/${source.name}/<pull>/<n>.part), named per pull at run time.`;
  }
  if (resource === `${props.prefixes.intake}${source.pipeline}/${source.name}/*`) {
    return `Files pulled from source ${source.name} into intake/${source.pipeline}/${source.name}/, named by the partner's files.`;
  }
  if (resource === `${props.prefixes.intake}${source.pipeline}/${source.name}-*`) {
    return `The manifest of each pull of source ${source.name}, intake/${source.pipeline}/${source.name}-<pull id>.txt.`;
  }
  return props.explainWildcard(w);
}
