/**
 * StageJobDefinition (lib/stage-job-definition.ts) on a bare stack: one behaviour per test,
 * given/when/then. The stage as the command, the size, timeout and attempts from props, the
 * retry strategy of the compute kind, the heap sized to the container, the logs, the secrets,
 * and bad props refused with every problem named.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Duration, Size } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { StageJobDefinition, type StageJobDefinitionProps } from '../../lib/stage-job-definition';
import { bareStack } from './fixture';

/** A stage job definition with a role, a log group and an image of its own, and `props` over non-default values. */
function build(props: Partial<StageJobDefinitionProps> = {}, stack = bareStack()): Template {
  new StageJobDefinition(stack, 'Split', {
    stage: 'split',
    compute: 'fargate-spot',
    image: ecs.ContainerImage.fromRegistry('public.ecr.aws/example/jobs:1'),
    vcpus: 4,
    memory: Size.mebibytes(12_288),
    timeout: Duration.minutes(95),
    attempts: 4,
    jobRole: new iam.Role(stack, 'SplitRole', { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com') }),
    logGroup: new logs.LogGroup(stack, 'SplitLogs'),
    streamPrefix: 'tax-due',
    ...props,
  });
  return Template.fromStack(stack);
}

describe('StageJobDefinition', () => {
  it('runs the shared image with the stage as its command, as the given job role', () => {
    // GIVEN / WHEN
    const t = build();
    // THEN
    t.hasResourceProperties('AWS::Batch::JobDefinition', {
      ContainerProperties: Match.objectLike({
        Image: 'public.ecr.aws/example/jobs:1',
        Command: ['split'],
        JobRoleArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^SplitRole'), 'Arn'] },
      }),
    });
  });

  it('sizes the container and times and retries each attempt as given', () => {
    const t = build();
    t.hasResourceProperties('AWS::Batch::JobDefinition', {
      ContainerProperties: Match.objectLike({
        ResourceRequirements: [
          { Type: 'MEMORY', Value: '12288' },
          { Type: 'VCPU', Value: '4' },
        ],
      }),
      Timeout: { AttemptDurationSeconds: 95 * 60 },
      RetryStrategy: Match.objectLike({ Attempts: 4 }),
    });
  });

  it("sizes Node's heap at 75 % of the container's memory, beside the given environment", () => {
    // GIVEN 12288 MiB and one variable of the caller's
    const t = build({ environment: { FANOUT_BUCKET: 'bucket' } });
    // THEN NODE_OPTIONS caps the heap at 9216 MiB, and the variable is there too
    t.hasResourceProperties('AWS::Batch::JobDefinition', {
      ContainerProperties: Match.objectLike({
        Environment: [
          { Name: 'NODE_OPTIONS', Value: '--max-old-space-size=9216' },
          { Name: 'FANOUT_BUCKET', Value: 'bucket' },
        ],
      }),
    });
  });

  it('on Fargate Spot: the latest x86_64 platform, no public IP, and a Spot interruption retried first', () => {
    const t = build();
    t.hasResourceProperties('AWS::Batch::JobDefinition', {
      PlatformCapabilities: ['FARGATE'],
      ContainerProperties: Match.objectLike({
        FargatePlatformConfiguration: { PlatformVersion: 'LATEST' },
        RuntimePlatform: { CpuArchitecture: 'X86_64' },
        NetworkConfiguration: { AssignPublicIp: 'DISABLED' },
      }),
      RetryStrategy: {
        Attempts: 4,
        EvaluateOnExit: [
          { Action: 'RETRY', OnStatusReason: 'Your Spot Task was interrupted*' },
          { Action: 'EXIT', OnExitCode: '10' },
          { Action: 'EXIT', OnExitCode: '11' },
          { Action: 'RETRY', OnExitCode: '*' },
        ],
      },
    });
  });

  it('gives a Fargate task a public IP when asked (jobs in public subnets, no NAT)', () => {
    const t = build({ assignPublicIp: true });
    t.hasResourceProperties('AWS::Batch::JobDefinition', {
      ContainerProperties: Match.objectLike({ NetworkConfiguration: { AssignPublicIp: 'ENABLED' } }),
    });
  });

  it('on EC2 Spot: whole vCPUs, and a reclaimed host retried first', () => {
    // GIVEN a quarter vCPU on the EC2 queue
    const t = build({ compute: 'ec2-spot', vcpus: 0.25, memory: Size.mebibytes(512) });
    // THEN the container takes one vCPU, and a reclaim is the first condition
    t.hasResourceProperties('AWS::Batch::JobDefinition', {
      PlatformCapabilities: ['EC2'],
      ContainerProperties: Match.objectLike({
        ResourceRequirements: [
          { Type: 'MEMORY', Value: '512' },
          { Type: 'VCPU', Value: '1' },
        ],
      }),
      RetryStrategy: Match.objectLike({ EvaluateOnExit: Match.arrayWith([{ Action: 'RETRY', OnStatusReason: 'Host EC2*' }]) }),
    });
  });

  it('propagates its tags to the ECS task', () => {
    build().hasResourceProperties('AWS::Batch::JobDefinition', { PropagateTags: true });
  });

  it('logs to the given group under the given stream prefix', () => {
    build().hasResourceProperties('AWS::Batch::JobDefinition', {
      ContainerProperties: Match.objectLike({
        LogConfiguration: {
          LogDriver: 'awslogs',
          Options: Match.objectLike({ 'awslogs-group': { Ref: Match.stringLikeRegexp('^SplitLogs') }, 'awslogs-stream-prefix': 'tax-due' }),
        },
      }),
    });
  });

  it('hands secrets to the container by name, readable by its execution role only', () => {
    // GIVEN a Secrets Manager secret under TAX_API_TOKEN
    const stack = bareStack();
    const secret = secretsmanager.Secret.fromSecretNameV2(stack, 'Token', 'batch-fanout/tax-due/api-token');
    const t = build({ secrets: { TAX_API_TOKEN: batch.Secret.fromSecretsManager(secret) } }, stack);
    // THEN the container gets it as a secret, not as plain environment
    t.hasResourceProperties('AWS::Batch::JobDefinition', {
      ContainerProperties: Match.objectLike({
        Secrets: [{ Name: 'TAX_API_TOKEN', ValueFrom: { 'Fn::Join': ['', Match.arrayWith([':secret:batch-fanout/tax-due/api-token'])] } }],
        Environment: Match.not(Match.arrayWith([Match.objectLike({ Name: 'TAX_API_TOKEN' })])),
      }),
    });
    // and the execution role, not the job role, may read it
    t.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: Match.stringLikeRegexp('ContainerExecutionRole') }],
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({ Action: Match.arrayWith(['secretsmanager:GetSecretValue']) })]),
      },
    });
    const readers = Object.values(t.findResources('AWS::IAM::Policy')).filter((p) =>
      JSON.stringify(p).includes('secretsmanager:GetSecretValue'),
    );
    assert.equal(readers.length, 1);
  });

  it('refuses a vCPU size Fargate does not offer, too many attempts and a timeout under a minute, naming each', () => {
    assert.throws(
      () => build({ vcpus: 3, attempts: 11, timeout: Duration.seconds(30) }),
      /StageJobDefinition Default\/Split: vcpus must be one of Fargate's sizes \(0\.25, 0\.5, 1, 2, 4, 8, 16\), got 3; attempts must be a whole number from 1 to 10 \(AWS Batch's limit\), got 11; timeout must be at least 60 seconds \(AWS Batch's minimum\), got 30 s/,
    );
  });

  it('refuses no vCPUs on EC2', () => {
    assert.throws(() => build({ compute: 'ec2-spot', vcpus: 0 }), /vcpus must be above 0, got 0/);
  });

  it('refuses zero attempts', () => {
    assert.throws(() => build({ attempts: 0 }), /attempts must be a whole number from 1 to 10 \(AWS Batch's limit\), got 0/);
  });
});
