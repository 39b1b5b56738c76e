/**
 * One job definition of one stage, on Fargate or on EC2: the shared container image with the
 * stage as its command, its size, timeout, log group and retry strategy.
 */
import { type Duration, type Size, Token } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { JobStage } from '../runtime/model';
import { stageRetryStrategies, type ComputeKind } from './retry-strategies';

/** vCPU sizes a Fargate container may have. */
export const FARGATE_VCPUS: readonly number[] = [0.25, 0.5, 1, 2, 4, 8, 16];

/** Most attempts AWS Batch allows in a retry strategy. */
export const MAX_JOB_ATTEMPTS = 10;

/** vCPUs a container of `vcpus` takes on a queue: EC2 containers take whole vCPUs (at least 1). */
export function containerVcpus(compute: ComputeKind, vcpus: number): number {
  return compute === 'ec2-spot' ? Math.max(1, Math.ceil(vcpus)) : vcpus;
}

export interface StageJobDefinitionProps {
  /** The container command: a stage of a run, or `sftp-pull` (a scheduled pull, lib/sftp-sources.ts). */
  readonly stage: JobStage | 'sftp-pull';
  /** Which queue the definition is for: Fargate and EC2 definitions differ. */
  readonly compute: ComputeKind;
  /** The jobs' image (`batch-jobs/Dockerfile`). */
  readonly image: ecs.ContainerImage;
  /** vCPUs; EC2 rounds up to whole vCPUs. */
  readonly vcpus: number;
  readonly memory: Size;
  /** Per-attempt timeout. */
  readonly timeout: Duration;
  /** Attempts for infrastructure failures (first one included). */
  readonly attempts: number;
  /** Role the job's code runs with. */
  readonly jobRole: iam.IRole;
  /** Role ECS uses to pull the image, write the logs and read the secrets. @default - a new role for this definition */
  readonly executionRole?: iam.IRole;
  readonly logGroup: logs.ILogGroup;
  /** Log stream prefix, e.g. the pipeline name. */
  readonly streamPrefix: string;
  /** Plain environment. @default - none */
  readonly environment?: Record<string, string>;
  /** Secrets, by environment variable name (read by the execution role at start). @default - none */
  readonly secrets?: Record<string, batch.Secret>;
  /** Give a Fargate task a public IP (jobs in public subnets, no NAT). @default false */
  readonly assignPublicIp?: boolean;
  /** Fargate only: local storage of the task, 21-200 GiB (e.g. a merge's spill). @default - Fargate's 20 GiB */
  readonly ephemeralStorage?: Size;
}

/**
 * Defaults: tags propagate to the ECS task, Node's heap is sized to 75% of the container's
 * memory (NODE_OPTIONS), Fargate tasks run on the latest platform version on x86_64.
 */
export class StageJobDefinition extends Construct {
  readonly definition: batch.EcsJobDefinition;

  constructor(scope: Construct, id: string, props: StageJobDefinitionProps) {
    super(scope, id);
    const problems = stageJobDefinitionProblems(props);
    if (problems.length > 0) throw new Error(`StageJobDefinition ${this.node.path}: ${problems.join('; ')}`);
    const environment = {
      NODE_OPTIONS: `--max-old-space-size=${Math.floor(props.memory.toMebibytes() * 0.75)}`,
      ...props.environment,
    };
    const common = {
      image: props.image,
      memory: props.memory,
      command: [props.stage],
      environment,
      secrets: props.secrets,
      jobRole: props.jobRole,
      executionRole: props.executionRole,
      logging: ecs.LogDrivers.awsLogs({ logGroup: props.logGroup, streamPrefix: props.streamPrefix }),
    };
    const container =
      props.compute === 'fargate-spot'
        ? new batch.EcsFargateContainerDefinition(this, 'Container', {
            ...common,
            cpu: props.vcpus,
            assignPublicIp: props.assignPublicIp ?? false,
            fargatePlatformVersion: ecs.FargatePlatformVersion.LATEST,
            fargateCpuArchitecture: ecs.CpuArchitecture.X86_64,
            ephemeralStorageSize: props.ephemeralStorage,
          })
        : new batch.EcsEc2ContainerDefinition(this, 'Container', {
            ...common,
            cpu: containerVcpus(props.compute, props.vcpus),
          });
    this.definition = new batch.EcsJobDefinition(this, 'Definition', {
      container,
      retryAttempts: props.attempts,
      retryStrategies: stageRetryStrategies(props.compute),
      timeout: props.timeout,
      propagateTags: true,
    });
  }
}

/** Every problem of the props, each naming the prop and the value. */
function stageJobDefinitionProblems(props: StageJobDefinitionProps): string[] {
  const problems: string[] = [];
  if (props.compute === 'fargate-spot' && !FARGATE_VCPUS.includes(props.vcpus)) {
    problems.push(`vcpus must be one of Fargate's sizes (${FARGATE_VCPUS.join(', ')}), got ${props.vcpus}`);
  } else if (!(props.vcpus > 0)) {
    problems.push(`vcpus must be above 0, got ${props.vcpus}`);
  }
  if (!Number.isInteger(props.attempts) || props.attempts < 1 || props.attempts > MAX_JOB_ATTEMPTS) {
    problems.push(`attempts must be a whole number from 1 to ${MAX_JOB_ATTEMPTS} (AWS Batch's limit), got ${props.attempts}`);
  }
  if (!Token.isUnresolved(props.timeout) && props.timeout.toSeconds() < 60) {
    problems.push(`timeout must be at least 60 seconds (AWS Batch's minimum), got ${props.timeout.toSeconds()} s`);
  }
  return problems;
}
