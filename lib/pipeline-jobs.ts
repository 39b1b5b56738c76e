/**
 * The four job definitions of one pipeline (split, fanout, consolidate, cleanup), matching the
 * pipeline's queue, with only this pipeline's data-source credential handed to its fan-out, one
 * execution role for the four, and an SSM parameter that tells the handlers the pipeline's queue
 * and job definitions (read once per pipeline, so the number of pipelines is not bound by the
 * 4 KB Lambda environment). A files pipeline runs on the same four (list on split's, summary on
 * consolidate's: lib/files-jobs.ts).
 */
import { Duration, Size, Stack } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import type { JobSettings } from '../config/deployment';
import type { FilesPipelineConfig, ItemsPipelineConfig } from '../runtime/config/schema';
import type { JobDefinitionEnvironment, JobDefinitionEnvironments } from '../runtime/env';
import { STAGES, type Stage } from '../runtime/model';
import { pascal } from './construct-ids';
import { containerVcpus, StageJobDefinition } from './stage-job-definition';

export interface PipelineJobsProps {
  /** An items pipeline, or a files pipeline (lib/files-jobs.ts). */
  readonly pipeline: ItemsPipelineConfig | FilesPipelineConfig;
  /** The queue of the pipeline's compute kind. */
  readonly queue: batch.IJobQueue;
  readonly image: ecs.ContainerImage;
  /** Size, timeout and attempts per stage. */
  readonly jobs: Readonly<Record<Stage, JobSettings>>;
  /** Job role per stage (shared by all pipelines; each stage's grants are its own). */
  readonly jobRoles: Readonly<Record<Stage, iam.IRole>>;
  /** Log group per stage; streams are prefixed with the pipeline name. */
  readonly logGroups: Readonly<Record<Stage, logs.ILogGroup>>;
  /** Environment per stage (the runtime's schema says what each stage needs: runtime/env.ts). */
  readonly environment: Readonly<JobDefinitionEnvironments>;
  /** Base URL of the managed OSRM server, set as FANOUT_OSRM_BASE_URL on an osrm-match fan-out. @default - none */
  readonly osrmBaseUrl?: string;
  /** Fargate tasks get a public IP (no NAT). @default false */
  readonly assignPublicIp?: boolean;
  /**
   * Max vCPUs of the pipeline's queue. Over a fan-out child's vCPUs, it gives the most children the
   * queue can run at once, set as FANOUT_MAX_CHILDREN so a fleet-wide rate limit is shared by the
   * children that really run together. @default - not set: children divide the rate by the chunk count
   */
  readonly queueMaxVcpus?: number;
  /**
   * Name prefix of the job-targets parameter; the parameter is `<prefix><pipeline name>`, the prefix
   * reaches the handlers as FANOUT_JOB_TARGETS_PREFIX. Starts and ends with "/".
   */
  readonly targetsParameterPrefix: string;
  /** Execution role (image pull, logs) of the definitions that read no secret, shared by the pipelines. */
  readonly executionRole: iam.IRole;
}

export class PipelineJobs extends Construct {
  readonly pipelineName: string;
  readonly queue: batch.IJobQueue;
  readonly definitions: Readonly<Record<Stage, batch.EcsJobDefinition>>;
  /** Execution roles of the definitions (the fan-out's own when it reads the pipeline's credential). */
  readonly executionRoles: readonly iam.IRole[];
  /** `{"queue": ARN, "definitions": {"split": ARN, ...}}` (runtime/adapters/ssm-job-targets.ts reads it). */
  readonly targetsParameter: ssm.StringParameter;

  constructor(scope: Construct, id: string, props: PipelineJobsProps) {
    super(scope, id);
    const { pipeline } = props;
    if (props.queueMaxVcpus !== undefined && !(Number.isInteger(props.queueMaxVcpus) && props.queueMaxVcpus >= 1)) {
      throw new Error(`PipelineJobs ${this.node.path}: queueMaxVcpus must be a whole number >= 1, got ${props.queueMaxVcpus}`);
    }
    this.pipelineName = pipeline.name;
    this.queue = props.queue;

    const credential = pipeline.shape === 'items' && pipeline.task.type === 'http-lookup' ? pipeline.task.credential : undefined;
    const fanoutSecrets =
      credential?.secretName !== undefined
        ? {
            [credential.env]: batch.Secret.fromSecretsManager(
              secretsmanager.Secret.fromSecretNameV2(this, 'Credential', credential.secretName),
            ),
          }
        : undefined;
    const fanoutEnvironment: JobDefinitionEnvironment<'fanout'> = { ...props.environment.fanout };
    if (props.queueMaxVcpus !== undefined) {
      const children = props.queueMaxVcpus / containerVcpus(pipeline.compute, props.jobs.fanout.vcpus);
      fanoutEnvironment.FANOUT_MAX_CHILDREN = String(Math.max(1, Math.floor(children)));
    }
    if (pipeline.shape === 'items' && pipeline.task.type === 'osrm-match' && props.osrmBaseUrl !== undefined) {
      fanoutEnvironment.FANOUT_OSRM_BASE_URL = props.osrmBaseUrl;
    }

    // Not one execution role per definition (CDK's default): one shared by the definitions that read
    // no secret, and the fan-out's own when it reads the pipeline's credential, so 50 pipelines stay
    // under CloudFormation's 500 resources per stack and only a pipeline's fan-out reads its secret.
    const fanoutExecutionRole = fanoutSecrets
      ? new iam.Role(this, 'FanoutExecutionRole', {
          assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
          description: `batch-fanout ${pipeline.name} fan-out containers (image pull, logs, the pipeline's credential)`,
        })
      : undefined;
    this.executionRoles = fanoutExecutionRole ? [props.executionRole, fanoutExecutionRole] : [props.executionRole];
    const definitions = {} as Record<Stage, batch.EcsJobDefinition>;
    for (const stage of STAGES) {
      const settings = props.jobs[stage];
      definitions[stage] = new StageJobDefinition(this, pascal(stage), {
        stage,
        compute: pipeline.compute,
        image: props.image,
        vcpus: settings.vcpus,
        memory: Size.mebibytes(settings.memoryMiB),
        timeout: Duration.minutes(settings.timeoutMinutes),
        attempts: settings.attempts,
        jobRole: props.jobRoles[stage],
        executionRole: stage === 'fanout' && fanoutExecutionRole ? fanoutExecutionRole : props.executionRole,
        logGroup: props.logGroups[stage],
        streamPrefix: pipeline.name,
        environment: stage === 'fanout' ? fanoutEnvironment : props.environment[stage],
        secrets: stage === 'fanout' ? fanoutSecrets : undefined,
        assignPublicIp: props.assignPublicIp,
      }).definition;
    }
    this.definitions = definitions;
    this.targetsParameter = new ssm.StringParameter(this, 'JobTargets', {
      parameterName: `${props.targetsParameterPrefix}${pipeline.name}`,
      description: `batch-fanout: job queue and job definitions of pipeline ${pipeline.name}`,
      stringValue: Stack.of(this).toJsonString({ queue: this.queue.jobQueueArn, definitions: this.definitionArns() }),
      tier: ssm.ParameterTier.STANDARD,
    });
  }

  /** Allows `grantee` to read this pipeline's job-targets parameter (ssm:GetParameter only). */
  grantReadTargets(grantee: iam.IGrantable): void {
    iam.Grant.addToPrincipal({ grantee, actions: ['ssm:GetParameter'], resourceArns: [this.targetsParameter.parameterArn] });
  }

  /** Allows `grantee` to submit jobs of these stages to this pipeline's queue, and nothing else. */
  grantSubmit(grantee: iam.IGrantable, ...stages: Stage[]): void {
    for (const stage of stages) this.definitions[stage].grantSubmitJob(grantee, this.queue);
  }

  /** `{split: ARN, fanout: ARN, consolidate: ARN, cleanup: ARN}`. */
  definitionArns(): Record<Stage, string> {
    const out = {} as Record<Stage, string>;
    for (const stage of STAGES) out[stage] = this.definitions[stage].jobDefinitionArn;
    return out;
  }
}
