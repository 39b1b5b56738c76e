/**
 * AWS Batch capacity: a Fargate Spot compute environment and an EC2 Spot one (c5.18xlarge
 * class), each with its own job queue (Batch cannot mix Fargate and EC2 in one queue).
 */
import { Duration } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Construct } from 'constructs';
import { acknowledgeNag } from './acknowledge';
import type { ComputeKind } from './retry-strategies';

export interface BatchComputeProps {
  readonly vpc: ec2.IVpc;
  readonly vpcSubnets: ec2.SubnetSelection;
  readonly securityGroup: ec2.ISecurityGroup;
  /** Largest number of vCPUs running on Fargate Spot at once. */
  readonly fargateSpotMaxVcpus: number;
  /** Largest number of vCPUs running on EC2 Spot at once. */
  readonly ec2SpotMaxVcpus: number;
  /**
   * vCPUs the EC2 Spot environment keeps running while no job needs them (at most ec2SpotMaxVcpus).
   * @default 0 - scales to zero
   */
  readonly ec2SpotMinVcpus?: number;
  /** EC2 Spot instance types, e.g. `c5.18xlarge`. */
  readonly ec2InstanceTypes: string[];
  /**
   * Jobs that cannot run in a queue as configured (bigger than any instance, or than the
   * environment's max vCPUs) are cancelled after this long, so the run fails with a reason
   * instead of waiting for ever.
   * @default Duration.minutes(30)
   */
  readonly misconfiguredJobTimeout?: Duration;
}

/**
 * Defaults: both environments scale to zero (EC2: min 0 vCPUs unless ec2SpotMinVcpus); EC2 uses Spot with
 * SPOT_PRICE_CAPACITY_OPTIMIZED on the ECS AL2023 image, with a launch template that requires
 * IMDSv2 and a hop limit of 1 (containers cannot read the instance role's credentials) and
 * turns on detailed monitoring.
 */
export class BatchCompute extends Construct {
  readonly fargateSpot: batch.FargateComputeEnvironment;
  readonly ec2Spot: batch.ManagedEc2EcsComputeEnvironment;
  /** One queue per compute kind. */
  readonly queues: Readonly<Record<ComputeKind, batch.JobQueue>>;

  constructor(scope: Construct, id: string, props: BatchComputeProps) {
    super(scope, id);
    const problems = batchComputeProblems(props);
    if (problems.length > 0) throw new Error(`BatchCompute ${this.node.path}: ${problems.join('; ')}`);

    this.fargateSpot = new batch.FargateComputeEnvironment(this, 'FargateSpot', {
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      securityGroups: [props.securityGroup],
      spot: true,
      maxvCpus: props.fargateSpotMaxVcpus,
    });

    const launchTemplate = new ec2.LaunchTemplate(this, 'Ec2SpotLaunchTemplate', {
      requireImdsv2: true,
      httpPutResponseHopLimit: 1,
      detailedMonitoring: true,
    });
    this.ec2Spot = new batch.ManagedEc2EcsComputeEnvironment(this, 'Ec2Spot', {
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      securityGroups: [props.securityGroup],
      spot: true,
      allocationStrategy: batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED,
      instanceTypes: props.ec2InstanceTypes.map((t) => new ec2.InstanceType(t)),
      useOptimalInstanceClasses: false,
      images: [{ imageType: batch.EcsMachineImageType.ECS_AL2023 }],
      minvCpus: props.ec2SpotMinVcpus ?? 0,
      maxvCpus: props.ec2SpotMaxVcpus,
      launchTemplate,
    });

    const stuck = props.misconfiguredJobTimeout ?? Duration.minutes(30);
    const timeLimits = [
      batch.JobStateTimeLimitActionsReason.COMPUTE_ENVIRONMENT_MAX_RESOURCE,
      batch.JobStateTimeLimitActionsReason.JOB_RESOURCE_REQUIREMENT,
    ].map((reason) => ({ reason, maxTime: stuck }));
    const queue = (id: string, computeEnvironment: batch.IComputeEnvironment) =>
      new batch.JobQueue(this, id, {
        computeEnvironments: [{ computeEnvironment, order: 1 }],
        priority: 1,
        jobStateTimeLimitActions: timeLimits,
      });
    this.queues = { 'fargate-spot': queue('FargateSpotQueue', this.fargateSpot), 'ec2-spot': queue('Ec2SpotQueue', this.ec2Spot) };

    const instanceRole = this.ec2Spot.node.tryFindChild('InstanceProfileRole')?.node.defaultChild;
    if (instanceRole) {
      acknowledgeNag(
        instanceRole,
        'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role]',
        'The ECS agent on Batch-managed instances needs this AWS-managed policy to register and pull images; jobs use their own job role.',
      );
    }
  }
}

/** Every problem of the props, each naming the prop and the value. */
function batchComputeProblems(props: BatchComputeProps): string[] {
  const problems: string[] = [];
  const whole = (name: string, value: number, min: number) => {
    if (!Number.isInteger(value) || value < min) problems.push(`${name} must be a whole number >= ${min}, got ${value}`);
  };
  whole('fargateSpotMaxVcpus', props.fargateSpotMaxVcpus, 1);
  whole('ec2SpotMaxVcpus', props.ec2SpotMaxVcpus, 1);
  const min = props.ec2SpotMinVcpus ?? 0;
  whole('ec2SpotMinVcpus', min, 0);
  if (min > props.ec2SpotMaxVcpus) problems.push(`ec2SpotMinVcpus (${min}) must be at most ec2SpotMaxVcpus (${props.ec2SpotMaxVcpus})`);
  if (props.ec2InstanceTypes.length === 0) problems.push('ec2InstanceTypes must name at least one instance type');
  return problems;
}
