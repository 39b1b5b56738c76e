/**
 * The jobs of the `dataset` (merge) pipelines: per pipeline a `merge` job definition and a
 * `cleanup` one on the Fargate Spot queue; one merge job role and log group; and, when a pipeline
 * runs on `emr-serverless`, one EMR Serverless Spark application and the job role its job runs use.
 *
 * Defaults of the merge job (DuckDB): 16 vCPU, 120 GiB of memory and 200 GiB of ephemeral storage,
 * the largest Fargate task. DuckDB gets 80% of the memory left after Node.js and spills to the
 * ephemeral storage, which must hold both inputs, DuckDB's spill and the output: inputs of about
 * 60 GB together, with an output of a similar size, is what it is sized for (docs/merge.md).
 * Past that, `engine: emr-serverless`. Fargate rather than EC2 with local NVMe: nothing to boot
 * or mount, the same queue as the other jobs, and no instance at rest.
 *
 * The Spark application: no pre-initialised capacity, auto-start on a job run, auto-stop after
 * 15 idle minutes, a capacity ceiling; its job role may read the inputs under `intake/`, read and
 * write the run's script and statistics under `work/`, and write (and replace) outputs under
 * `results/` of the pipeline bucket, and nothing else.
 */
import { Duration, Size, Stack } from 'aws-cdk-lib';
import type * as batch from 'aws-cdk-lib/aws-batch';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as emrserverless from 'aws-cdk-lib/aws-emrserverless';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { RemovalPolicy } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import type { DatasetPipelineConfig } from '../runtime/config/schema';
import type { JobDefinitionEnvironment } from '../runtime/env';
import type { JobStage } from '../runtime/model';
import { acknowledgeGrantWildcards, type WildcardReason } from './acknowledge';
import { pascal } from './construct-ids';
import { StageJobDefinition } from './stage-job-definition';

/** Node.js heap of a merge job (batch-jobs/engines/duckdb-merge.ts leaves DuckDB the rest). */
const NODE_HEAP_MIB = 2048;

export interface MergeJobSettings {
  /** @default 16 */
  readonly vcpus?: number;
  /** @default Size.gibibytes(120) */
  readonly memory?: Size;
  /** Local storage for the inputs, DuckDB's spill and the output, 21-200 GiB. @default Size.gibibytes(200) */
  readonly ephemeralStorage?: Size;
  /** Per attempt. @default Duration.hours(12) */
  readonly timeout?: Duration;
  /** Attempts for infrastructure failures (Spot reclaim, storage). @default 3 */
  readonly attempts?: number;
}

export interface SparkApplicationSettings {
  /** EMR release. @default 'emr-7.9.0' */
  readonly releaseLabel?: string;
  /** Idle minutes before the application stops. @default 15 */
  readonly idleTimeoutMinutes?: number;
  /** Ceiling of the application's workers at once. @default { cpu: '400 vCPU', memory: '3000 GB', disk: '20000 GB' } */
  readonly maximumCapacity?: { readonly cpu: string; readonly memory: string; readonly disk: string };
}

export interface MergeJobsProps {
  /** The dataset pipelines (at least one). */
  readonly pipelines: readonly DatasetPipelineConfig[];
  /** The Fargate Spot queue. */
  readonly queue: batch.IJobQueue;
  readonly image: ecs.ContainerImage;
  readonly bucket: s3.IBucket;
  /** Key prefixes of the bucket: intake/, work/, results/. */
  readonly prefixes: { readonly intake: string; readonly work: string; readonly results: string };
  /** Environment of every merge job (bucket, table, region, link days); the Spark variables are added here. */
  readonly environment: JobDefinitionEnvironment<'merge'>;
  /** The cleanup stage's role, log group and environment (shared with the items pipelines). */
  readonly cleanup: {
    readonly role: iam.IRole;
    readonly logGroup: logs.ILogGroup;
    readonly environment: JobDefinitionEnvironment<'cleanup'>;
    readonly settings: { vcpus: number; memoryMiB: number; timeoutMinutes: number; attempts: number };
  };
  /** Grants the merge job role what every merge needs besides the bucket: the run table, sending mail. */
  readonly grantCommon: (grantee: iam.IGrantable) => void;
  readonly logKey: kms.IKey;
  readonly logRetention: logs.RetentionDays;
  readonly removalPolicy: RemovalPolicy;
  /** Fargate tasks get a public IP (no NAT). @default false */
  readonly assignPublicIp?: boolean;
  /** Why the stack's grant wildcards are acceptable (the stack's own rules). */
  readonly explainWildcard: WildcardReason;
  /** @default - see MergeJobSettings */
  readonly mergeJob?: MergeJobSettings;
  /** @default - see SparkApplicationSettings */
  readonly spark?: SparkApplicationSettings;
}

export class MergeJobs extends Construct {
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;
  /** Job definitions per pipeline: merge and cleanup. */
  readonly definitions: Readonly<Record<string, Readonly<Record<'merge' | 'cleanup', batch.EcsJobDefinition>>>>;
  readonly queue: batch.IJobQueue;
  /** The Spark application, when a pipeline runs on emr-serverless. */
  readonly sparkApplication?: emrserverless.CfnApplication;
  readonly sparkJobRole?: iam.Role;

  constructor(scope: Construct, id: string, props: MergeJobsProps) {
    super(scope, id);
    if (props.pipelines.length === 0) throw new Error('MergeJobs: give at least one dataset pipeline');
    const settings = props.mergeJob ?? {};
    const memory = settings.memory ?? Size.gibibytes(120);
    const ephemeral = settings.ephemeralStorage ?? Size.gibibytes(200);
    if (ephemeral.toGibibytes() < 21 || ephemeral.toGibibytes() > 200)
      throw new Error(`MergeJobs: ephemeralStorage must be 21-200 GiB (Fargate), got ${ephemeral.toGibibytes()}`);
    this.queue = props.queue;
    const { bucket, prefixes } = props;

    this.logGroup = new logs.LogGroup(this, 'MergeJobLogs', {
      retention: props.logRetention,
      encryptionKey: props.logKey,
      removalPolicy: props.removalPolicy,
    });
    this.role = new iam.Role(this, 'MergeJobRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'batch-fanout merge jobs',
    });
    // DuckDB: reads the batch's inputs, writes the output and workbook (and links them); Spark: also
    // writes the script and reads the statistics under work/, lists the output parts.
    bucket.grantRead(this.role, `${prefixes.intake}*`);
    bucket.grantReadWrite(this.role, `${prefixes.work}*`);
    bucket.grantReadWrite(this.role, `${prefixes.results}*`);
    props.grantCommon(this.role);

    // Node.js needs a small heap; the container's memory is DuckDB's (native memory, outside the heap).
    const environment: JobDefinitionEnvironment<'merge'> & { NODE_OPTIONS: string } = {
      ...props.environment,
      NODE_OPTIONS: `--max-old-space-size=${NODE_HEAP_MIB}`,
    };
    if (props.pipelines.some((p) => p.engine === 'emr-serverless')) {
      const spark = props.spark ?? {};
      this.sparkJobRole = new iam.Role(this, 'SparkJobRole', {
        assumedBy: new iam.ServicePrincipal('emr-serverless.amazonaws.com', {
          conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } },
        }),
        description: 'batch-fanout merge: Spark job runs on EMR Serverless (the pipeline bucket only)',
      });
      bucket.grantRead(this.sparkJobRole, `${prefixes.intake}*`);
      bucket.grantReadWrite(this.sparkJobRole, `${prefixes.work}*`);
      bucket.grantReadWrite(this.sparkJobRole, `${prefixes.results}*`);
      // INSERT OVERWRITE DIRECTORY replaces an earlier output of the same batch.
      bucket.grantDelete(this.sparkJobRole, `${prefixes.results}*`);
      this.sparkApplication = new emrserverless.CfnApplication(this, 'SparkApplication', {
        releaseLabel: spark.releaseLabel ?? 'emr-7.9.0',
        type: 'SPARK',
        architecture: 'X86_64',
        autoStartConfiguration: { enabled: true },
        autoStopConfiguration: { enabled: true, idleTimeoutMinutes: spark.idleTimeoutMinutes ?? 15 },
        maximumCapacity: spark.maximumCapacity ?? { cpu: '400 vCPU', memory: '3000 GB', disk: '20000 GB' },
        // No initialCapacity: nothing is pre-initialised, so nothing runs (or costs) between merges.
      });
      const applicationArn = this.sparkApplication.attrArn;
      this.role.addToPolicy(
        new iam.PolicyStatement({ actions: ['emr-serverless:StartJobRun', 'emr-serverless:TagResource'], resources: [applicationArn] }),
      );
      this.role.addToPolicy(new iam.PolicyStatement({ actions: ['emr-serverless:GetJobRun'], resources: [`${applicationArn}/jobruns/*`] }));
      this.sparkJobRole.grantPassRole(this.role);
      environment.FANOUT_EMR_APPLICATION_ID = this.sparkApplication.attrApplicationId;
      environment.FANOUT_EMR_JOB_ROLE_ARN = this.sparkJobRole.roleArn;
      acknowledgeGrantWildcards(this.sparkJobRole, props.explainWildcard);
    }
    acknowledgeGrantWildcards(this.role, (w) => {
      if (/^Resource::.*\/jobruns\/\*$/.test(w.finding) && w.actions.every((a) => a === 'emr-serverless:GetJobRun')) {
        return "GetJobRun of this app's Spark application only: a job run id is known only once the merge starts it.";
      }
      return props.explainWildcard(w);
    });

    const definitions: Record<string, Record<'merge' | 'cleanup', batch.EcsJobDefinition>> = {};
    for (const pipeline of props.pipelines) {
      const scopeOf = new Construct(this, `Pipeline-${pipeline.name}`);
      const spark = pipeline.engine === 'emr-serverless';
      const merge = new StageJobDefinition(scopeOf, pascal('merge'), {
        stage: 'merge',
        compute: 'fargate-spot',
        image: props.image,
        // Spark runs elsewhere: the job only plans, starts, waits and notifies.
        vcpus: spark ? 1 : (settings.vcpus ?? 16),
        memory: spark ? Size.gibibytes(2) : memory,
        ephemeralStorage: spark ? undefined : ephemeral,
        timeout: settings.timeout ?? Duration.hours(12),
        attempts: settings.attempts ?? 3,
        jobRole: this.role,
        logGroup: this.logGroup,
        streamPrefix: pipeline.name,
        environment,
        assignPublicIp: props.assignPublicIp,
      }).definition;
      const c = props.cleanup;
      const cleanup = new StageJobDefinition(scopeOf, pascal('cleanup'), {
        stage: 'cleanup',
        compute: 'fargate-spot',
        image: props.image,
        vcpus: c.settings.vcpus,
        memory: Size.mebibytes(c.settings.memoryMiB),
        timeout: Duration.minutes(c.settings.timeoutMinutes),
        attempts: c.settings.attempts,
        jobRole: c.role,
        logGroup: c.logGroup,
        streamPrefix: pipeline.name,
        environment: c.environment,
        assignPublicIp: props.assignPublicIp,
      }).definition;
      definitions[pipeline.name] = { merge, cleanup };
      for (const def of [merge, cleanup]) {
        const execution = def.container.executionRole;
        acknowledgeGrantWildcards(execution, props.explainWildcard);
      }
    }
    this.definitions = definitions;
  }

  /** Allows `grantee` to submit these stages of every dataset pipeline to the queue. */
  grantSubmit(grantee: iam.IGrantable, ...stages: Array<'merge' | 'cleanup'>): void {
    for (const defs of Object.values(this.definitions)) for (const stage of stages) defs[stage].grantSubmitJob(grantee, this.queue);
  }

  /** `{pipeline: queue ARN}` for the pipelines' job-targets SSM parameters. */
  queueArns(): Record<string, string> {
    return Object.fromEntries(Object.keys(this.definitions).map((name) => [name, this.queue.jobQueueArn]));
  }

  /** `{pipeline: {merge: ARN, cleanup: ARN}}` for the pipelines' job-targets SSM parameters. */
  definitionArns(): Record<string, Partial<Record<JobStage, string>>> {
    return Object.fromEntries(
      Object.entries(this.definitions).map(([name, d]) => [name, { merge: d.merge.jobDefinitionArn, cleanup: d.cleanup.jobDefinitionArn }]),
    );
  }
}
