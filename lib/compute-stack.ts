/**
 * The stateless stack: network, AWS Batch (compute environments, queues, job definitions from
 * one container image), the three event handlers and their triggers (S3 intake notifications,
 * the "split done" topic, the failed-job rule), email, secrets and observability. It holds no
 * data: destroying and redeploying it loses nothing but in-flight runs.
 */
import { CfnOutput, Duration, RemovalPolicy, Stack, Token, type StackProps } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ecrAssets from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3n from 'aws-cdk-lib/aws-s3-notifications';
import * as ses from 'aws-cdk-lib/aws-ses';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import type { Construct } from 'constructs';
import type { DeploymentConfig, JobSettings } from '../config/deployment';
import { requireShape, type AppConfig } from '../runtime/config/schema';
import type { HandlerEnvironment, JobDefinitionEnvironments } from '../runtime/env';
import { STAGES, type Stage } from '../runtime/model';
import { acknowledgeGrantWildcards, acknowledgeGuard, acknowledgeNag, cfnOf, type WildcardFinding } from './acknowledge';
import { JOB_TAGS } from '../runtime/adapters/batch-job-submitter';
import { BatchCompute } from './batch-compute';
import { PREFIX } from './data-stack';
import { HandlerFunction, type HandlerName, type OptionalHandlerName } from './handler-function';
import { FanoutNetwork } from './network';
import { FanoutObservability } from './observability';
import { OsrmService, type OsrmServiceProps } from './osrm-service';
import { MergeDeadlineSweep } from './merge-deadline-sweep';
import { MergeJobs } from './merge-jobs';
import { FilesJobs } from './files-jobs';
import { SftpSources } from './sftp-sources';
import { PipelineJobs } from './pipeline-jobs';
import { allowCloudWatchLogs, denyGrantsExceptForAwsResources } from './key-policies';
import { pascal } from './construct-ids';
import { STACK_OUTPUTS } from './stack-output-names';

/** Folders of the repository copied into the job image build context are set by .dockerignore; these never are. */
export const IMAGE_CONTEXT_EXCLUDES = ['node_modules', 'cdk.out', 'fanout-out', 'bench/out', '.git', '.tmp', '*.log'];

/**
 * Deployment choices of the managed OSRM server, and the bucket for its load balancer's access
 * logs (SSE-S3, e.g. the data stack's access-log bucket); the stack supplies the network, the
 * data bucket, who may call it (the jobs) and its logs.
 */
export type ManagedOsrmProps = Pick<
  OsrmServiceProps,
  'extractKey' | 'profile' | 'cpu' | 'memoryLimitMiB' | 'idleTimeout' | 'accessLogBucket'
>;

export interface FanoutComputeStackProps extends StackProps {
  /** The validated pipelines config (config/pipelines.ts). */
  readonly pipelines: AppConfig;
  /** The pipeline bucket of the data stack. */
  readonly bucket: s3.IBucket;
  /** The run table of the data stack. */
  readonly table: dynamodb.ITable;
  /** Repository root: `lambda/`, `batch-jobs/Dockerfile`, package-lock.json. */
  readonly projectRoot: string;
  readonly network: DeploymentConfig['network'];
  readonly compute: DeploymentConfig['compute'];
  /** Container size, timeout and attempts per stage. */
  readonly jobs: Readonly<Record<Stage, JobSettings>>;
  /** SES identity mail is sent from (an address or a domain). */
  readonly emailIdentity: string;
  /** The identity exists already: only grant sending from it. @default false */
  readonly existingEmailIdentity?: boolean;
  /** Create identities for the pipelines' recipients (SES sandbox) and allow sending to them. @default false */
  readonly verifyRecipients?: boolean;
  /** Operator address for alarm mail. @default - none */
  readonly operatorEmail?: string;
  /** Retention of every log group of this stack. */
  readonly logRetention: logs.RetentionDays;
  /** Days a run record is kept (FANOUT_RUN_TTL_DAYS). */
  readonly runRecordDays: number;
  /** Days a presigned result link is valid (FANOUT_RESULT_LINK_DAYS). */
  readonly resultLinkDays: number;
  /** Active X-Ray tracing of the handlers. @default false */
  readonly tracing?: boolean;
  /** Removal policy of the log groups. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
  /** Managed OSRM server for osrm-match pipelines. @default - none */
  readonly osrm?: ManagedOsrmProps;
}

export class FanoutComputeStack extends Stack {
  readonly network: FanoutNetwork;
  readonly batchCompute: BatchCompute;
  readonly key: kms.Key;
  readonly splitDoneTopic: sns.Topic;
  readonly failedJobsRule: events.Rule;
  readonly handlers: Readonly<Record<HandlerName, HandlerFunction>>;
  readonly pipelineJobs: readonly PipelineJobs[];
  readonly jobRoles: Readonly<Record<Stage, iam.Role>>;
  readonly jobLogGroups: Readonly<Record<Stage, logs.LogGroup>>;
  readonly senderIdentity: ses.IEmailIdentity;
  readonly observability: FanoutObservability;
  readonly osrmService?: OsrmService;
  /** The jobs of the dataset (merge) pipelines, when there are any. */
  readonly mergeJobs?: MergeJobs;
  /** The files pipelines' fan-out role and job definitions (also in pipelineJobs), when there are any. */
  readonly filesJobs?: FilesJobs;
  /** The scheduled SFTP pulls, when the config declares sources. */
  readonly sftpSources?: SftpSources;
  /** The sweep that fails merge batches past their input deadline, with dataset pipelines. */
  readonly mergeDeadlineSweep?: MergeDeadlineSweep;

  constructor(scope: Construct, id: string, props: FanoutComputeStackProps) {
    super(scope, id, props);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const { bucket, table } = props;

    // One customer-managed key for the topics and log groups of this stack.
    this.key = new kms.Key(this, 'AppKey', {
      description: 'batch-fanout: SNS topics and CloudWatch log groups',
      enableKeyRotation: true,
      removalPolicy,
    });
    allowCloudWatchLogs(this.key);
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublishToEncryptedTopics',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'],
      }),
    );
    denyGrantsExceptForAwsResources(this.key);
    const logRetention = props.logRetention;

    this.network = new FanoutNetwork(this, 'Network', {
      ...props.network,
      logRetention,
      logKey: this.key,
      removalPolicy,
    });
    this.batchCompute = new BatchCompute(this, 'Batch', {
      vpc: this.network.vpc,
      vpcSubnets: this.network.jobSubnets,
      securityGroup: this.network.jobSecurityGroup,
      ...props.compute,
    });

    this.splitDoneTopic = new sns.Topic(this, 'SplitDoneTopic', {
      displayName: 'batch-fanout split done',
      masterKey: this.key,
      enforceSSL: true,
    });
    new CfnOutput(this, STACK_OUTPUTS.splitDoneTopic, {
      value: this.splitDoneTopic.topicArn,
      description: 'Split-done topic (fanout redrive announces its chunks here)',
    });

    // Email: the sender identity, and the recipients' identities while in the SES sandbox.
    this.senderIdentity = props.existingEmailIdentity
      ? ses.EmailIdentity.fromEmailIdentityName(this, 'SenderIdentity', props.emailIdentity)
      : new ses.EmailIdentity(this, 'SenderIdentity', {
          identity: props.emailIdentity.includes('@') ? ses.Identity.email(props.emailIdentity) : ses.Identity.domain(props.emailIdentity),
        });
    const recipientIdentities: ses.IEmailIdentity[] = [];
    if (props.verifyRecipients) {
      const recipients = [...new Set(props.pipelines.pipelines.flatMap((p) => p.recipients.map((r) => r.toLowerCase())))].sort();
      recipients
        .filter((r) => r !== props.emailIdentity.toLowerCase())
        .forEach((r, i) =>
          recipientIdentities.push(new ses.EmailIdentity(this, `RecipientIdentity${i}`, { identity: ses.Identity.email(r) })),
        );
    }
    const grantSendEmail = (grantee: iam.IGrantable) => {
      this.senderIdentity.grantSendEmail(grantee);
      for (const r of recipientIdentities) r.grantSendEmail(grantee);
    };

    // Job image, logs and roles shared by the pipelines (each stage's grants are its own).
    const imageAsset = new ecrAssets.DockerImageAsset(this, 'JobImage', {
      directory: props.projectRoot,
      file: 'batch-jobs/Dockerfile',
      platform: ecrAssets.Platform.LINUX_AMD64,
      exclude: IMAGE_CONTEXT_EXCLUDES,
    });
    const image = ecs.ContainerImage.fromDockerImageAsset(imageAsset);
    const logGroups = {} as Record<Stage, logs.LogGroup>;
    const jobRoles = {} as Record<Stage, iam.Role>;
    for (const stage of STAGES) {
      logGroups[stage] = new logs.LogGroup(this, `${pascal(stage)}JobLogs`, {
        retention: logRetention,
        encryptionKey: this.key,
        removalPolicy,
      });
      jobRoles[stage] = new iam.Role(this, `${pascal(stage)}JobRole`, {
        assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
        description: `batch-fanout ${stage} jobs`,
      });
    }
    this.jobLogGroups = logGroups;
    this.jobRoles = jobRoles;
    const intake = `${PREFIX.intake}*`;
    const work = `${PREFIX.work}*`;
    const results = `${PREFIX.results}*`;
    const history = `${PREFIX.history}*`;
    // split: reads the upload, writes chunk files, records chunks, announces "split done".
    bucket.grantRead(jobRoles.split, intake);
    bucket.grantPut(jobRoles.split, work);
    table.grantReadWriteData(jobRoles.split);
    this.splitDoneTopic.grantPublish(jobRoles.split);
    // fanout: reads its chunk and earlier result parts, writes result parts, updates its chunk.
    bucket.grantRead(jobRoles.fanout, work);
    bucket.grantPut(jobRoles.fanout, work);
    table.grantReadWriteData(jobRoles.fanout);
    // consolidate: reads result parts, writes (and links) the result, emails it; keeps every item's
    // outcome under history/ and, for a redrive, reads the first run's (the local twin's IAM check
    // found this grant missing).
    bucket.grantRead(jobRoles.consolidate, work);
    bucket.grantPut(jobRoles.consolidate, results);
    bucket.grantRead(jobRoles.consolidate, results);
    bucket.grantPut(jobRoles.consolidate, history);
    bucket.grantRead(jobRoles.consolidate, history);
    table.grantReadWriteData(jobRoles.consolidate);
    grantSendEmail(jobRoles.consolidate);
    // cleanup: lists and deletes the run's work files, deletes chunk records.
    bucket.grantRead(jobRoles.cleanup, work);
    bucket.grantDelete(jobRoles.cleanup, work);
    table.grantReadWriteData(jobRoles.cleanup);

    if (props.osrm !== undefined) {
      this.osrmService = new OsrmService(this, 'Osrm', {
        vpc: this.network.vpc,
        dataBucket: bucket,
        ...props.osrm,
        // ALB log delivery is granted to the region's ELB account: without a region at synth
        // (environment-agnostic), no ALB logs; osrm-routed still logs every request.
        accessLogBucket: Token.isUnresolved(this.region) ? undefined : props.osrm.accessLogBucket,
        maxMatchingSize: maxOsrmPoints(props.pipelines),
        allowFrom: [this.network.jobSecurityGroup],
        vpcSubnets: this.network.jobSubnets,
        assignPublicIp: this.network.jobsNeedPublicIp,
        logKey: this.key,
        logRetention,
        removalPolicy,
      });
    }

    const base = { FANOUT_BUCKET: bucket.bucketName, FANOUT_TABLE: table.tableName, AWS_REGION: this.region };
    // Typed from the runtime's environment schemas (runtime/env.ts): a renamed variable fails here.
    const stageEnvironment: JobDefinitionEnvironments = {
      split: { ...base, FANOUT_SPLIT_DONE_TOPIC_ARN: this.splitDoneTopic.topicArn },
      fanout: { ...base },
      consolidate: { ...base, FANOUT_RESULT_LINK_DAYS: String(props.resultLinkDays) },
      cleanup: { ...base },
      merge: { ...base, FANOUT_RESULT_LINK_DAYS: String(props.resultLinkDays) },
    };
    // Where the handlers find each pipeline's queue and job definitions (one SSM parameter per pipeline).
    const targetsParameterPrefix = `/${this.stackName}/job-targets/`;
    const executionRole = new iam.Role(this, 'JobExecutionRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'batch-fanout job containers that read no secret (image pull, logs)',
    });
    const itemsJobs = props.pipelines.pipelines
      .filter((p) => p.shape === 'items')
      .map(
        (pipeline) =>
          new PipelineJobs(this, `Pipeline-${pipeline.name}`, {
            pipeline: requireShape(pipeline, 'items'),
            queue: this.batchCompute.queues[pipeline.compute],
            image,
            jobs: props.jobs,
            jobRoles,
            logGroups,
            environment: stageEnvironment,
            osrmBaseUrl: this.osrmService?.url,
            assignPublicIp: this.network.jobsNeedPublicIp,
            queueMaxVcpus: pipeline.compute === 'ec2-spot' ? props.compute.ec2SpotMaxVcpus : props.compute.fargateSpotMaxVcpus,
            targetsParameterPrefix,
            executionRole,
          }),
      );

    // Files pipelines: the same four stages (list, per-file fan-out, summary, cleanup), their own fan-out role (lib/files-jobs.ts).
    const filesPipelines = props.pipelines.pipelines.flatMap((p) => (p.shape === 'files' ? [p] : []));
    this.filesJobs =
      filesPipelines.length === 0
        ? undefined
        : new FilesJobs(this, 'Files', {
            pipelines: filesPipelines,
            queues: this.batchCompute.queues,
            queueMaxVcpus: { 'fargate-spot': props.compute.fargateSpotMaxVcpus, 'ec2-spot': props.compute.ec2SpotMaxVcpus },
            image,
            jobs: props.jobs,
            jobRoles,
            logGroups,
            environment: stageEnvironment,
            bucket,
            table,
            prefixes: PREFIX,
            assignPublicIp: this.network.jobsNeedPublicIp,
            explainWildcard,
            targetsParameterPrefix,
            executionRole,
          });
    this.pipelineJobs = [...itemsJobs, ...(this.filesJobs?.pipelineJobs ?? [])];

    // Dataset (merge) pipelines: their merge and cleanup jobs, and Spark on EMR Serverless (lib/merge-jobs.ts).
    const datasets = props.pipelines.pipelines.flatMap((p) => (p.shape === 'dataset' ? [p] : []));
    this.mergeJobs =
      datasets.length === 0
        ? undefined
        : new MergeJobs(this, 'Merge', {
            pipelines: datasets,
            queue: this.batchCompute.queues['fargate-spot'],
            image,
            bucket,
            prefixes: PREFIX,
            environment: stageEnvironment.merge,
            cleanup: {
              role: jobRoles.cleanup,
              logGroup: logGroups.cleanup,
              environment: stageEnvironment.cleanup,
              settings: props.jobs.cleanup,
            },
            grantCommon: (grantee) => {
              table.grantReadWriteData(grantee);
              grantSendEmail(grantee);
            },
            logKey: this.key,
            logRetention,
            removalPolicy,
            assignPublicIp: this.network.jobsNeedPublicIp,
            explainWildcard,
          });

    // Merge pipelines' job targets, in the same SSM parameters as the items pipelines'.
    const mergeTargets = Object.entries(this.mergeJobs?.queueArns() ?? {}).map(
      ([name, queue]) =>
        new ssm.StringParameter(this, `JobTargets-${name}`, {
          parameterName: `${targetsParameterPrefix}${name}`,
          description: `batch-fanout: job queue and job definitions of pipeline ${name}`,
          stringValue: this.toJsonString({ queue, definitions: this.mergeJobs!.definitionArns()[name] }),
          tier: ssm.ParameterTier.STANDARD,
        }),
    );

    // Handlers.
    const handlerEnvironment: HandlerEnvironment = {
      FANOUT_BUCKET: bucket.bucketName,
      FANOUT_TABLE: table.tableName,
      FANOUT_JOB_TARGETS_PREFIX: targetsParameterPrefix,
      FANOUT_RUN_TTL_DAYS: String(props.runRecordDays),
    };
    const configJson = JSON.stringify(props.pipelines);
    const handler = (name: HandlerName | OptionalHandlerName, description: string) =>
      new HandlerFunction(this, pascal(name), {
        projectRoot: props.projectRoot,
        entryName: name,
        description,
        environment: handlerEnvironment,
        configJson,
        logRetention,
        logKey: this.key,
        tracing: props.tracing,
        removalPolicy,
      });
    this.handlers = {
      'on-intake': handler('on-intake', 'batch-fanout: an upload under intake/<pipeline>/ opens a run and submits split'),
      'on-split-done': handler('on-split-done', 'batch-fanout: split done submits fan-out, consolidate and cleanup'),
      'on-job-failed': handler(
        'on-job-failed',
        'batch-fanout: a failed job fails its run, delivers partial results or emails the recipients, starts cleanup',
      ),
    };
    const onIntake = this.handlers['on-intake'];
    const onSplitDone = this.handlers['on-split-done'];
    const onJobFailed = this.handlers['on-job-failed'];
    for (const h of Object.values(this.handlers)) table.grantReadWriteData(h.function);
    bucket.grantRead(onIntake.function, intake);
    grantSendEmail(onIntake.function);
    grantSendEmail(onJobFailed.function);
    for (const jobs of this.pipelineJobs) {
      for (const h of [onIntake, onSplitDone, onJobFailed]) jobs.grantReadTargets(h.function);
      jobs.grantSubmit(onIntake.function, 'split');
      jobs.grantSubmit(onSplitDone.function, 'fanout', 'consolidate', 'cleanup');
      // Cleanup, and consolidate in partial mode when fan-out failed (nothing done is lost).
      jobs.grantSubmit(onJobFailed.function, 'consolidate', 'cleanup');
    }
    for (const parameter of mergeTargets) {
      for (const h of [onIntake, onSplitDone, onJobFailed]) {
        iam.Grant.addToPrincipal({ grantee: h.function, actions: ['ssm:GetParameter'], resourceArns: [parameter.parameterArn] });
      }
    }
    this.mergeJobs?.grantSubmit(onIntake.function, 'merge', 'cleanup');
    this.mergeJobs?.grantSubmit(onJobFailed.function, 'cleanup');
    // Jobs are submitted with tags (run, pipeline): tagging at creation needs batch:TagResource.
    // Only these two tag keys (Batch has no condition key naming the creating action; the local
    // twin's IAM check found the earlier `batch:CreateAction` condition never matched).
    const tagJobs = new iam.PolicyStatement({
      actions: ['batch:TagResource'],
      resources: [`arn:${this.partition}:batch:${this.region}:${this.account}:job/*`],
      conditions: { 'ForAllValues:StringEquals': { 'aws:TagKeys': Object.values(JOB_TAGS) } },
    });
    for (const h of Object.values(this.handlers)) h.function.addToRolePolicy(tagJobs);

    // Merge batches that never get all their inputs end FAILED at their deadline (lib/merge-deadline-sweep.ts).
    if (this.mergeJobs) {
      const sweep = handler('on-merge-deadline', 'batch-fanout: merge batches past their input deadline end FAILED');
      table.grantReadWriteData(sweep.function);
      bucket.grantRead(sweep.function, intake);
      grantSendEmail(sweep.function);
      // A batch found complete (its last S3 event lost) is started as the intake would.
      this.mergeJobs.grantSubmit(sweep.function, 'merge', 'cleanup');
      for (const parameter of mergeTargets) {
        iam.Grant.addToPrincipal({ grantee: sweep.function, actions: ['ssm:GetParameter'], resourceArns: [parameter.parameterArn] });
      }
      sweep.function.addToRolePolicy(tagJobs);
      this.mergeDeadlineSweep = new MergeDeadlineSweep(this, 'MergeDeadlineSweep', { handler: sweep });
    }

    // Triggers. The bucket lives in the data stack; its notification configuration is written by
    // a custom resource created here (on a reference to the bucket), so the data stack never
    // depends on this one.
    const intakeBucket = s3.Bucket.fromBucketAttributes(this, 'IntakeNotifications', {
      bucketArn: bucket.bucketArn,
      bucketName: bucket.bucketName,
    });
    // Every upload under intake/ reaches on-intake, whatever its folder or extension: the handler
    // answers an unknown folder (operators) or an unusable file type (.xls, no extension) with an
    // email saying what to do. Per-pipeline prefix and suffix filters would drop those uploads
    // silently (the local twin's S3 filter check found it).
    intakeBucket.addEventNotification(s3.EventType.OBJECT_CREATED, new s3n.LambdaDestination(onIntake.function), { prefix: PREFIX.intake });
    this.splitDoneTopic.addSubscription(
      new subscriptions.LambdaSubscription(onSplitDone.function, { deadLetterQueue: onSplitDone.deadLetterQueue }),
    );
    this.failedJobsRule = new events.Rule(this, 'FailedJobsRule', {
      description: 'batch-fanout: a job of this app failed for good',
      eventPattern: {
        source: ['aws.batch'],
        detailType: ['Batch Job State Change'],
        detail: { status: ['FAILED'], jobQueue: Object.values(this.batchCompute.queues).map((q) => q.jobQueueArn) },
      },
    });
    this.failedJobsRule.addTarget(
      new targets.LambdaFunction(onJobFailed.function, {
        deadLetterQueue: onJobFailed.deadLetterQueue,
        retryAttempts: 8,
        maxEventAge: Duration.hours(6),
      }),
    );

    this.observability = new FanoutObservability(this, 'Observability', {
      topicKey: this.key,
      operatorEmail: props.operatorEmail,
      handlers: this.handlers,
      stageLogs: logGroups,
      failedJobsRule: this.failedJobsRule,
    });

    // Scheduled SFTP pulls: a schedule and an sftp-pull job per source (lib/sftp-sources.ts).
    if (props.pipelines.sources.length > 0) {
      this.sftpSources = new SftpSources(this, 'SftpSources', {
        sources: props.pipelines.sources,
        shapes: Object.fromEntries(props.pipelines.pipelines.map((p) => [p.name, p.shape])),
        queue: this.batchCompute.queues['fargate-spot'],
        image,
        bucket,
        table,
        prefixes: PREFIX,
        environment: base,
        assignPublicIp: this.network.jobsNeedPublicIp,
        logKey: this.key,
        logRetention,
        removalPolicy,
        alarmTopic: this.observability.operatorTopic,
        explainWildcard,
      });
    }

    this.acknowledgeFindings();
  }

  private acknowledgeFindings(): void {
    const roles: iam.IRole[] = [
      ...Object.values(this.jobRoles),
      ...Object.values(this.handlers).map((h) => h.role),
      ...(this.mergeDeadlineSweep ? [this.mergeDeadlineSweep.handler.role] : []),
      ...new Set(this.pipelineJobs.flatMap((p) => p.executionRoles)),
    ];
    for (const role of roles) acknowledgeGrantWildcards(role, explainWildcard);

    const permission = this.node
      .findChild('IntakeNotifications')
      .node.children.find((c) => c.node.id.startsWith('AllowBucketNotificationsTo'));
    if (permission) {
      acknowledgeGuard(
        permission,
        'lambda_function_public_access_prohibited_check',
        'The permission names SourceAccount and SourceArn (the pipeline bucket, imported from the data stack); the rule cannot read Fn::ImportValue.',
      );
    }
    const notificationsHandler = this.node.children.find((c) => c.node.id.startsWith('BucketNotificationsHandler'));
    if (notificationsHandler) {
      const role = notificationsHandler.node.tryFindChild('Role');
      if (role) {
        acknowledgeNag(
          cfnOf(role),
          'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
          "CDK's own S3 notifications custom resource: it runs once per deployment and only writes its logs with this policy.",
        );
      }
      acknowledgeGuard(
        cfnOf(notificationsHandler),
        'lambda_inside_vpc_check',
        "CDK's own S3 notifications custom resource: it only calls the S3 API at deployment time.",
      );
    }
  }
}

/** CDK bucket grants expand to these action groups. */
const S3_ACTION_GROUPS: Readonly<Record<string, string>> = {
  's3:GetObject*': 'reading objects and their versions (bucket.grantRead)',
  's3:GetBucket*': 'reading the bucket location and settings the SDK asks for (bucket.grantRead)',
  's3:List*': "listing keys, e.g. a run's result parts (bucket.grantRead)",
  's3:Abort*': 'aborting its own multipart uploads (bucket.grantPut)',
  's3:DeleteObject*': 'deleting objects and their versions (bucket.grantDelete)',
};

/** Why a wildcard in one of this stack's policies is acceptable (undefined: leave it reported). */
export function explainWildcard(w: WildcardFinding): string | undefined {
  const action = /^Action::(.+)$/.exec(w.finding)?.[1];
  if (action !== undefined) {
    const group = S3_ACTION_GROUPS[action];
    if (group !== undefined)
      return `${action} is a CDK grant action group for ${group}; the statement is limited to this app's pipeline bucket and one key prefix.`;
    if (action === 'kms:GenerateDataKey*' && w.actions.includes('kms:Decrypt')) {
      return "Publishing to the encrypted split-done topic needs data keys of this app's key (topic.grantPublish); the statement names that key only.";
    }
    return undefined;
  }
  const resource = /^Resource::(.+)$/.exec(w.finding)?.[1] ?? '';
  const prefix = /PipelineBucket[^/]*\/(intake|work|results|history)\/\*$/.exec(resource)?.[1];
  if (prefix !== undefined)
    return `Objects under ${prefix}/ of this app's pipeline bucket: keys are per upload or per run and unknown at deploy time.`;
  if (/:batch:.*:job\/\*$/.test(resource) && w.actions.every((a) => a === 'batch:TagResource')) {
    return "Tagging jobs while submitting them, with this app's two tag keys only (condition aws:TagKeys): a job id does not exist before submission.";
  }
  if (resource === '*' && w.actions.every((a) => a === 'ecr:GetAuthorizationToken')) {
    return 'ecr:GetAuthorizationToken has no resource-level permission; image pulls themselves are limited to the asset repository.';
  }
  if (resource === '*' && w.actions.every((a) => a.startsWith('xray:'))) {
    return 'X-Ray trace segment upload has no resource-level permission.';
  }
  return undefined;
}

/** The largest `maxPoints` of the osrm-match pipelines (the server must accept it). */
function maxOsrmPoints(config: AppConfig): number | undefined {
  const points = config.pipelines.flatMap((p) => (p.shape === 'items' && p.task.type === 'osrm-match' ? [p.task.maxPoints] : []));
  return points.length > 0 ? Math.max(...points) : undefined;
}
