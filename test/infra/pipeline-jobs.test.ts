/**
 * PipelineJobs (lib/pipeline-jobs.ts) on a bare stack: one behaviour per test, given/when/then.
 * The four stage definitions of one pipeline with the settings given per stage, the pipeline's
 * credential on its fan-out only, FANOUT_MAX_CHILDREN from the queue's vCPUs, the OSRM URL on
 * osrm-match fan-outs only, submit grants limited to the stages asked for, and bad props refused.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Stack } from 'aws-cdk-lib';
import { Capture, Match, Template } from 'aws-cdk-lib/assertions';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { JobSettings } from '../../config/deployment';
import { PipelineJobs, type PipelineJobsProps } from '../../lib/pipeline-jobs';
import { parseAppConfig, requireShape, type AppConfigInput, type ItemsPipelineConfig } from '../../runtime/config/schema';
import { STAGES, type Stage } from '../../runtime/model';
import { bareStack, tripsPipeline, twoPipelines } from './fixture';

/** A pipeline of the fixture configs, validated as the app validates it. */
function pipeline(name: string): ItemsPipelineConfig {
  const raw: AppConfigInput = { ...twoPipelines, pipelines: [...twoPipelines.pipelines, tripsPipeline] };
  const found = parseAppConfig(raw).pipelines.find((p) => p.name === name);
  assert.ok(found, `pipeline ${name}`);
  return requireShape(found, 'items');
}

/** Per-stage settings that differ from each other and from the defaults. */
const JOBS: Record<Stage, JobSettings> = {
  split: { vcpus: 4, memoryMiB: 12_288, timeoutMinutes: 95, attempts: 4 },
  fanout: { vcpus: 2, memoryMiB: 6144, timeoutMinutes: 240, attempts: 7 },
  consolidate: { vcpus: 4, memoryMiB: 16_384, timeoutMinutes: 150, attempts: 2 },
  cleanup: { vcpus: 0.5, memoryMiB: 1024, timeoutMinutes: 20, attempts: 6 },
};

function build(name: string, props: Partial<PipelineJobsProps> = {}): { stack: Stack; jobs: PipelineJobs; t: () => Template } {
  const stack = bareStack();
  const vpc = new ec2.Vpc(stack, 'Vpc', {
    maxAzs: 1,
    natGateways: 0,
    subnetConfiguration: [{ name: 'jobs', subnetType: ec2.SubnetType.PUBLIC }],
  });
  const environment = new batch.FargateComputeEnvironment(stack, 'Environment', { vpc, vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC } });
  const queue = new batch.JobQueue(stack, 'Queue', { computeEnvironments: [{ computeEnvironment: environment, order: 1 }] });
  const perStage = <T>(make: (stage: Stage) => T) => Object.fromEntries(STAGES.map((s) => [s, make(s)])) as Record<Stage, T>;
  const jobs = new PipelineJobs(stack, 'Jobs', {
    pipeline: pipeline(name),
    queue,
    image: ecs.ContainerImage.fromRegistry('public.ecr.aws/example/jobs:1'),
    jobs: JOBS,
    jobRoles: perStage((s) => new iam.Role(stack, `${s}Role`, { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com') })),
    logGroups: perStage((s) => new logs.LogGroup(stack, `${s}Logs`)),
    environment: {
      split: { ...storage('split'), FANOUT_SPLIT_DONE_TOPIC_ARN: 'arn:aws:sns:eu-west-1:111111111111:split-done' },
      fanout: storage('fanout'),
      consolidate: { ...storage('consolidate'), FANOUT_RESULT_LINK_DAYS: '3' },
      cleanup: storage('cleanup'),
      merge: { ...storage('merge'), FANOUT_RESULT_LINK_DAYS: '3' },
    },
    ...props,
    targetsParameterPrefix: props.targetsParameterPrefix ?? '/app/job-targets/',
    executionRole:
      props.executionRole ?? new iam.Role(stack, 'ExecutionRole', { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com') }),
  });
  return { stack, jobs, t: () => Template.fromStack(stack) };
}

type EnvEntry = { Name: string; Value: unknown };

/** The storage environment every stage gets; the bucket name tells the stages apart. */
const storage = (stage: string) => ({ AWS_REGION: 'eu-west-1', FANOUT_BUCKET: `bucket-of-${stage}`, FANOUT_TABLE: 'runs' });

/** The job definition whose command is `stage`. */
function definition(t: Template, stage: Stage): Record<string, any> {
  const found = Object.values(t.findResources('AWS::Batch::JobDefinition', { Properties: { ContainerProperties: { Command: [stage] } } }));
  assert.equal(found.length, 1, `one ${stage} definition`);
  return found[0]!.Properties;
}

const envOf = (t: Template, stage: Stage) => definition(t, stage).ContainerProperties.Environment as EnvEntry[];

describe('PipelineJobs', () => {
  it('defines one job per stage, each with its own settings, role, log group and environment', () => {
    // GIVEN / WHEN the jobs of tax-due
    const { t } = build('tax-due');
    const template = t();
    // THEN four definitions, each as its stage's settings say
    template.resourceCountIs('AWS::Batch::JobDefinition', 4);
    for (const stage of STAGES) {
      const d = definition(template, stage);
      const s = JOBS[stage];
      assert.deepEqual(d.Timeout, { AttemptDurationSeconds: s.timeoutMinutes * 60 }, stage);
      assert.equal(d.RetryStrategy.Attempts, s.attempts, stage);
      assert.deepEqual(d.ContainerProperties.ResourceRequirements, [
        { Type: 'MEMORY', Value: String(s.memoryMiB) },
        { Type: 'VCPU', Value: String(s.vcpus) },
      ]);
      assert.match(JSON.stringify(d.ContainerProperties.JobRoleArn), new RegExp(`"${stage}Role`));
      assert.match(JSON.stringify(d.ContainerProperties.LogConfiguration.Options['awslogs-group']), new RegExp(`"${stage}Logs`));
      assert.equal(d.ContainerProperties.LogConfiguration.Options['awslogs-stream-prefix'], 'tax-due');
      assert.deepEqual(
        d.ContainerProperties.Environment.filter((e: EnvEntry) => e.Name === 'FANOUT_BUCKET'),
        [{ Name: 'FANOUT_BUCKET', Value: `bucket-of-${stage}` }],
      );
    }
  });

  it("hands the pipeline's credential to its fan-out only, as a Secrets Manager secret", () => {
    // GIVEN tax-due, whose credential is the secret batch-fanout/tax-due/api-token under TAX_API_TOKEN
    const template = build('tax-due').t();
    // THEN the fan-out has it
    assert.deepEqual(
      definition(template, 'fanout').ContainerProperties.Secrets.map((s: { Name: string; ValueFrom: unknown }) => [
        s.Name,
        /:secret:batch-fanout\/tax-due\/api-token"/.test(JSON.stringify(s.ValueFrom)),
      ]),
      [['TAX_API_TOKEN', true]],
    );
    // and no other stage
    for (const stage of ['split', 'consolidate', 'cleanup'] as const) {
      assert.equal(definition(template, stage).ContainerProperties.Secrets, undefined, stage);
    }
  });

  it('hands no secret to a pipeline without a credential', () => {
    const template = build('heavy-lookup').t();
    template.resourceCountIs('AWS::Batch::JobDefinition', 4);
    assert.equal(
      Object.keys(
        template.findResources('AWS::Batch::JobDefinition', { Properties: { ContainerProperties: { Secrets: Match.anyValue() } } }),
      ).length,
      0,
    );
  });

  it('tells the fan-out how many of its children the queue runs at once', () => {
    // GIVEN a queue of 96 vCPUs and a fan-out child of 2
    const template = build('tax-due', { queueMaxVcpus: 96 }).t();
    // THEN 48 children, on the fan-out only
    assert.deepEqual(
      envOf(template, 'fanout').find((e) => e.Name === 'FANOUT_MAX_CHILDREN'),
      { Name: 'FANOUT_MAX_CHILDREN', Value: '48' },
    );
    assert.equal(
      envOf(template, 'split').find((e) => e.Name === 'FANOUT_MAX_CHILDREN'),
      undefined,
    );
  });

  it('counts at least one child when the queue is smaller than a child', () => {
    const template = build('tax-due', { queueMaxVcpus: 1 }).t();
    assert.deepEqual(
      envOf(template, 'fanout').find((e) => e.Name === 'FANOUT_MAX_CHILDREN'),
      { Name: 'FANOUT_MAX_CHILDREN', Value: '1' },
    );
  });

  it('sets no child count when the queue size is not given', () => {
    const template = build('tax-due').t();
    assert.equal(
      envOf(template, 'fanout').find((e) => e.Name === 'FANOUT_MAX_CHILDREN'),
      undefined,
    );
    assert.ok(
      envOf(template, 'fanout').some((e) => e.Name === 'FANOUT_BUCKET'),
      'the fan-out environment was read',
    );
  });

  it('gives an osrm-match fan-out the managed OSRM URL', () => {
    const template = build('trips', { osrmBaseUrl: 'http://osrm.internal:80' }).t();
    assert.deepEqual(
      envOf(template, 'fanout').find((e) => e.Name === 'FANOUT_OSRM_BASE_URL'),
      {
        Name: 'FANOUT_OSRM_BASE_URL',
        Value: 'http://osrm.internal:80',
      },
    );
  });

  it('gives an http-lookup fan-out no OSRM URL, even when there is a server', () => {
    const template = build('tax-due', { osrmBaseUrl: 'http://osrm.internal:80' }).t();
    assert.ok(envOf(template, 'fanout').length > 0);
    assert.equal(
      envOf(template, 'fanout').find((e) => e.Name === 'FANOUT_OSRM_BASE_URL'),
      undefined,
    );
  });

  it('grants submitting only the stages asked for, to its own queue', () => {
    // GIVEN a role allowed to submit consolidate and cleanup
    const { stack, jobs, t } = build('tax-due');
    const submitter = new iam.Role(stack, 'Submitter', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
    // WHEN
    jobs.grantSubmit(submitter, 'consolidate', 'cleanup');
    // THEN its policy names those two definitions and the queue, nothing else
    const statements = new Capture();
    t().hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: Match.stringLikeRegexp('^Submitter') }],
      PolicyDocument: { Statement: statements },
    });
    const text = JSON.stringify(statements.asArray());
    assert.match(text, /"batch:SubmitJob"/);
    assert.match(text, /JobsConsolidateDefinition/);
    assert.match(text, /JobsCleanupDefinition/);
    assert.match(text, /"Queue[0-9A-F]{8}"/);
    assert.doesNotMatch(text, /JobsSplitDefinition|JobsFanoutDefinition|"\*"/);
  });

  it('names its four definitions by stage', () => {
    const { stack, jobs } = build('tax-due');
    const arns = stack.resolve(jobs.definitionArns()) as Record<Stage, { Ref: string }>;
    assert.deepEqual(Object.keys(arns), [...STAGES]);
    for (const stage of STAGES) assert.match(arns[stage].Ref, new RegExp(`^Jobs${stage[0]!.toUpperCase()}${stage.slice(1)}Definition`));
  });

  it('refuses a queue size that is not a whole number of vCPUs', () => {
    assert.throws(
      () => build('tax-due', { queueMaxVcpus: 0 }),
      /PipelineJobs Default\/Jobs: queueMaxVcpus must be a whole number >= 1, got 0/,
    );
  });

  it('refuses a Fargate size the stage settings do not allow', () => {
    assert.throws(
      () => build('tax-due', { jobs: { ...JOBS, fanout: { ...JOBS.fanout, vcpus: 3 as never } } }),
      /Jobs\/Fanout: vcpus must be one of Fargate's sizes/,
    );
  });
});
