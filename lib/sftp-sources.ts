/**
 * Scheduled SFTP pulls: per source, an EventBridge Scheduler schedule that submits an
 * `sftp-pull` Batch job (Fargate Spot) with the source's config in its environment and the
 * private key as a Batch secret from Secrets Manager. The job's role may only write the
 * source's own intake folder and manifests, its temporary objects under `work/pulls/<source>/`,
 * and the run table (the pull ledger). Egress leaves through the VPC's NAT gateway, or a public IP
 * when there is none (`assignPublicIp`).
 *
 * Defaults: 0.25 vCPU and 1 GiB, a one-hour attempt timeout, 3 attempts (a refused host or user
 * key exits 11 and is not retried), logs in their own encrypted group.
 */
import { Duration, Size } from 'aws-cdk-lib';
import type * as batch from 'aws-cdk-lib/aws-batch';
import * as batchL2 from 'aws-cdk-lib/aws-batch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import * as targets from 'aws-cdk-lib/aws-scheduler-targets';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import type { PipelineShape } from '../runtime/config/schema';
import type { SftpSourceConfig } from '../runtime/config/sources-schema';
import { acknowledgeGrantWildcards, type WildcardReason } from './acknowledge';
import { pascal } from './construct-ids';
import { StageJobDefinition } from './stage-job-definition';

export interface SftpSourcesProps {
  readonly sources: readonly SftpSourceConfig[];
  /** Shape of each pipeline by name (a files pipeline gets one manifest per pull). */
  readonly shapes: Readonly<Record<string, PipelineShape>>;
  /** The Fargate Spot queue. */
  readonly queue: batch.IJobQueue;
  readonly image: ecs.ContainerImage;
  readonly bucket: s3.IBucket;
  readonly table: dynamodb.ITable;
  readonly logGroup: logs.ILogGroup;
  /** Give the task a public IP (jobs in public subnets when natGateways is 0). @default false */
  readonly assignPublicIp?: boolean;
  /** Schedules are encrypted with this key. @default - an AWS owned key */
  readonly key?: kms.IKey;
  /** Plain environment for the job (bucket, table, region). */
  readonly environment: Record<string, string>;
}

export class SftpSources extends Construct {
  readonly definitions: Readonly<Record<string, batch.EcsJobDefinition>>;
  readonly schedules: Readonly<Record<string, scheduler.Schedule>>;
  readonly jobRoles: Readonly<Record<string, iam.Role>>;

  constructor(scope: Construct, id: string, props: SftpSourcesProps) {
    super(scope, id);
    const definitions: Record<string, batch.EcsJobDefinition> = {};
    const schedules: Record<string, scheduler.Schedule> = {};
    const roles: Record<string, iam.Role> = {};
    for (const source of props.sources) {
      const name = pascal(source.name);
      const role = new iam.Role(this, `${name}JobRole`, {
        assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
        description: `batch-fanout sftp-pull of source ${source.name}`,
      });
      const temp = `work/pulls/${source.name}/*`;
      props.bucket.grantPut(role, temp);
      props.bucket.grantRead(role, temp);
      props.bucket.grantDelete(role, temp);
      props.bucket.grantPut(role, `intake/${source.pipeline}/${source.name}/*`);
      props.bucket.grantPut(role, `intake/${source.pipeline}/${source.name}-*`);
      props.table.grantReadWriteData(role);
      const secrets = source.privateKey.secretName
        ? {
            [source.privateKey.env]: batchL2.Secret.fromSecretsManager(
              secretsmanager.Secret.fromSecretNameV2(this, `${name}Key`, source.privateKey.secretName),
            ),
          }
        : undefined;
      const definition = new StageJobDefinition(this, `${name}Pull`, {
        stage: 'sftp-pull',
        compute: 'fargate-spot',
        image: props.image,
        vcpus: 0.25,
        memory: Size.gibibytes(1),
        timeout: Duration.hours(1),
        attempts: 3,
        jobRole: role,
        logGroup: props.logGroup,
        streamPrefix: `sftp-${source.name}`,
        environment: {
          ...props.environment,
          FANOUT_SOURCE: JSON.stringify(source),
          FANOUT_PIPELINE_SHAPE: props.shapes[source.pipeline] ?? 'items',
        },
        secrets,
        assignPublicIp: props.assignPublicIp,
      }).definition;
      const scheduleRole = new iam.Role(this, `${name}ScheduleRole`, {
        assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com'),
        description: `batch-fanout: the schedule of SFTP source ${source.name} submits its pull`,
      });
      schedules[source.name] = new scheduler.Schedule(this, `${name}Schedule`, {
        description: `batch-fanout: pull SFTP source ${source.name} into intake/${source.pipeline}/`,
        schedule: scheduler.ScheduleExpression.expression(source.schedule),
        key: props.key,
        target: new targets.Universal({
          service: 'batch',
          action: 'submitJob',
          role: scheduleRole,
          retryAttempts: 2,
          input: scheduler.ScheduleTargetInput.fromObject({
            JobName: `fanout-sftp-pull-${source.name}`,
            JobQueue: props.queue.jobQueueArn,
            JobDefinition: definition.jobDefinitionArn,
          }),
          policyStatements: [
            new iam.PolicyStatement({ actions: ['batch:SubmitJob'], resources: [props.queue.jobQueueArn, definition.jobDefinitionArn] }),
          ],
        }),
      });
      definitions[source.name] = definition;
      roles[source.name] = role;
      acknowledgeGrantWildcards(role, explainPullWildcard(source));
      acknowledgeGrantWildcards(definition.container.executionRole, explainPullWildcard(source));
    }
    this.definitions = definitions;
    this.schedules = schedules;
    this.jobRoles = roles;
  }
}

/** Why the wildcards of a pull's grants are acceptable. */
function explainPullWildcard(source: SftpSourceConfig): WildcardReason {
  return (w) => {
    const action = /^Action::(s3:(GetObject|GetBucket|List|Abort|DeleteObject)\*)$/.exec(w.finding)?.[1];
    if (action) return `${action} is a CDK grant action group, limited to the pipeline bucket and the prefixes of source ${source.name}.`;
    const resource = /^Resource::(.+)$/.exec(w.finding)?.[1] ?? '';
    if (resource.includes(`/work/pulls/${source.name}/*`)) return `Temporary objects of source ${source.name}'s pulls, named per pull at run time.`;
    if (resource.includes(`/intake/${source.pipeline}/${source.name}`)) return `Files pulled from source ${source.name} and its per-pull manifests, named by the partner's files.`;
    if (/kms:(GenerateDataKey|ReEncrypt)\*/.test(w.finding)) return 'Writing objects to the encrypted pipeline bucket needs data keys of its key (bucket grants).';
    return undefined;
  };
}
