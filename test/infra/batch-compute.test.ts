/**
 * BatchCompute (lib/batch-compute.ts) on a bare stack: one behaviour per test, given/when/then,
 * asserting the wrapper's own choices (Spot on both, its allocation strategy, image, launch
 * template, queues and their stuck-job limits) and the props it passes through, with values that
 * differ from CDK's defaults.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Duration, Validations, type CfnElement, type Stack } from 'aws-cdk-lib';
import { Capture, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { BatchCompute, type BatchComputeProps } from '../../lib/batch-compute';
import { bareStack } from './fixture';

/** A VPC, a security group and a BatchCompute with `props` over small non-default sizes. */
function build(props: Partial<BatchComputeProps> = {}): { stack: Stack; compute: BatchCompute } {
  const stack = bareStack();
  const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
  const securityGroup = new ec2.SecurityGroup(stack, 'JobGroup', { vpc });
  const compute = new BatchCompute(stack, 'Batch', {
    vpc,
    vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
    securityGroup,
    fargateSpotMaxVcpus: 48,
    ec2SpotMaxVcpus: 288,
    ec2InstanceTypes: ['c6i.32xlarge', 'c5.24xlarge'],
    ...props,
  });
  return { stack, compute };
}

describe('BatchCompute', () => {
  it('runs Fargate Spot up to the given max vCPUs, in the given subnets and security group', () => {
    // GIVEN / WHEN
    const { stack } = build();
    // THEN
    Template.fromStack(stack).hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      Type: 'managed',
      ComputeResources: {
        Type: 'FARGATE_SPOT',
        MaxvCpus: 48,
        SecurityGroupIds: [{ 'Fn::GetAtt': [Match.stringLikeRegexp('^JobGroup'), 'GroupId'] }],
        Subnets: [{ Ref: Match.stringLikeRegexp('^VpcPrivateSubnet1') }, { Ref: Match.stringLikeRegexp('^VpcPrivateSubnet2') }],
      },
    });
  });

  it('runs EC2 Spot of exactly the given instance types, price-capacity optimised, on the ECS AL2023 image', () => {
    const { stack } = build();
    Template.fromStack(stack).hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      ComputeResources: Match.objectLike({
        Type: 'SPOT',
        AllocationStrategy: 'SPOT_PRICE_CAPACITY_OPTIMIZED',
        InstanceTypes: ['c6i.32xlarge', 'c5.24xlarge'],
        Ec2Configuration: [{ ImageType: 'ECS_AL2023' }],
        MaxvCpus: 288,
      }),
    });
  });

  it('keeps the given EC2 Spot vCPUs warm', () => {
    // GIVEN 72 vCPUs to keep running
    const { stack } = build({ ec2SpotMinVcpus: 72 });
    // THEN the EC2 environment's minimum is 72
    Template.fromStack(stack).hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      ComputeResources: Match.objectLike({ Type: 'SPOT', MinvCpus: 72, MaxvCpus: 288 }),
    });
  });

  it('launches EC2 instances that require IMDSv2 with a hop limit of 1 and detailed monitoring', () => {
    const { stack } = build();
    const t = Template.fromStack(stack);
    const template = new Capture();
    t.hasResourceProperties('AWS::Batch::ComputeEnvironment', {
      ComputeResources: Match.objectLike({ Type: 'SPOT', LaunchTemplate: { LaunchTemplateId: { Ref: template } } }),
    });
    const launchTemplate = t.findResources('AWS::EC2::LaunchTemplate')[template.asString()];
    assert.ok(launchTemplate, `launch template ${template.asString()}`);
    assert.deepEqual(launchTemplate.Properties.LaunchTemplateData.MetadataOptions, { HttpTokens: 'required', HttpPutResponseHopLimit: 1 });
    assert.deepEqual(launchTemplate.Properties.LaunchTemplateData.Monitoring, { Enabled: true });
  });

  it('gives each compute environment its own queue, exposed by compute kind', () => {
    // GIVEN / WHEN
    const { stack, compute } = build();
    // THEN two queues, each on one environment
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::Batch::JobQueue', 2);
    const environmentOf = (kind: keyof BatchCompute['queues']) => {
      const queueId = stack.getLogicalId(compute.queues[kind].node.defaultChild as CfnElement);
      const order = t.findResources('AWS::Batch::JobQueue')[queueId]!.Properties.ComputeEnvironmentOrder;
      assert.equal(order.length, 1, `${kind}: one environment`);
      assert.equal(order[0].Order, 1);
      return order[0].ComputeEnvironment['Fn::GetAtt'][0] as string;
    };
    assert.equal(environmentOf('fargate-spot'), stack.getLogicalId(compute.fargateSpot.node.defaultChild as CfnElement));
    assert.equal(environmentOf('ec2-spot'), stack.getLogicalId(compute.ec2Spot.node.defaultChild as CfnElement));
  });

  it('cancels a job stuck for 30 minutes because no environment can run it', () => {
    const { stack } = build();
    const cancel = (reason: string) => ({
      Action: 'CANCEL',
      State: 'RUNNABLE',
      MaxTimeSeconds: 1800,
      Reason: `MISCONFIGURATION:${reason}`,
    });
    const t = Template.fromStack(stack);
    assert.equal(Object.keys(t.findResources('AWS::Batch::JobQueue')).length, 2);
    for (const queue of Object.values(t.findResources('AWS::Batch::JobQueue'))) {
      assert.deepEqual(queue.Properties.JobStateTimeLimitActions, [
        cancel('COMPUTE_ENVIRONMENT_MAX_RESOURCE'),
        cancel('JOB_RESOURCE_REQUIREMENT'),
      ]);
    }
  });

  it('takes how long a stuck job may wait from props', () => {
    // GIVEN a 10-minute limit
    const { stack } = build({ misconfiguredJobTimeout: Duration.minutes(10) });
    // THEN both reasons cancel after 600 s
    Template.fromStack(stack).hasResourceProperties('AWS::Batch::JobQueue', {
      JobStateTimeLimitActions: [Match.objectLike({ MaxTimeSeconds: 600 }), Match.objectLike({ MaxTimeSeconds: 600 })],
    });
  });

  it("acknowledges the ECS agent's managed policy on the instance role, and nothing else", () => {
    const { compute } = build();
    const acknowledged = compute.node
      .findAll()
      .flatMap((c) =>
        c.node.metadata
          .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
          .map((m) => ({ path: c.node.path, ids: Object.keys(m.data as object) })),
      );
    assert.deepEqual(
      acknowledged.map((a) => a.path),
      ['Default/Batch/Ec2Spot/InstanceProfileRole/Resource'],
    );
    assert.equal(acknowledged[0]!.ids.length, 1, acknowledged[0]!.ids.join(', '));
    assert.match(acknowledged[0]!.ids[0]!, /AwsSolutions-IAM4\[Policy::.*AmazonEC2ContainerServiceforEC2Role\]$/);
  });

  it('refuses bad sizes and an empty instance list, naming every problem at once', () => {
    assert.throws(
      () => build({ fargateSpotMaxVcpus: 0, ec2SpotMaxVcpus: 96, ec2SpotMinVcpus: 192, ec2InstanceTypes: [] }),
      /BatchCompute Default\/Batch: fargateSpotMaxVcpus must be a whole number >= 1, got 0; ec2SpotMinVcpus \(192\) must be at most ec2SpotMaxVcpus \(96\); ec2InstanceTypes must name at least one instance type/,
    );
  });

  it('refuses a fractional vCPU count', () => {
    assert.throws(() => build({ ec2SpotMaxVcpus: 95.5 }), /ec2SpotMaxVcpus must be a whole number >= 1, got 95\.5/);
  });
});
