/**
 * The merge (dataset) pipelines' infrastructure: GIVEN an app with a DuckDB merge pipeline and a
 * Spark one, WHEN synthesized with cdk-nag and cfn-guard, THEN the stack's own choices arrive (a
 * Fargate merge job with enlarged ephemeral storage, an EMR Serverless application with no
 * pre-initialised capacity and auto-stop, a Spark job role with the pipeline bucket only, an
 * intake notification without a suffix filter) and no finding is left open.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import { pipelinesConfig } from '../../config/pipelines';
import type { AppConfigInput } from '../../runtime/config/schema';
import { buildApp, openFindings, type BuiltApp } from './fixture';

const merge = (name: string, engine: 'duckdb' | 'emr-serverless') => ({
  shape: 'dataset' as const,
  name,
  engine,
  merge: { inputs: { left: 'x_list.txt', right: 'y_list.txt' }, keys: { left: ['ID'], right: ['ID'] } },
  recipients: ['ds@example.com'],
});
const withMerges: AppConfigInput = {
  ...pipelinesConfig,
  pipelines: [...pipelinesConfig.pipelines, merge('merge-xy', 'duckdb'), merge('merge-big', 'emr-serverless')],
};

/** Every Resource of every statement of the policies attached to a role (logical id prefix). */
function policyResources(built: BuiltApp, rolePrefix: string): unknown[] {
  const policies = Object.values(built.compute.findResources('AWS::IAM::Policy')).filter((p) =>
    JSON.stringify(p.Properties.Roles).includes(rolePrefix),
  );
  assert.ok(policies.length > 0, `a policy of ${rolePrefix}`);
  return policies.flatMap((p) =>
    (p.Properties.PolicyDocument.Statement as { Resource: unknown }[]).flatMap((s) =>
      Array.isArray(s.Resource) ? s.Resource : [s.Resource],
    ),
  );
}

describe('merge pipelines: infrastructure', () => {
  let built: BuiltApp;
  before(() => {
    built = buildApp({ pipelines: withMerges, complianceChecks: true, bundling: false });
  });

  it('leaves no cdk-nag or cfn-guard finding open', () => {
    assert.deepEqual(openFindings(built), []);
  });

  it('runs the DuckDB merge on Fargate with 16 vCPU, 120 GiB and 200 GiB of ephemeral storage, command merge', () => {
    built.compute.hasResourceProperties('AWS::Batch::JobDefinition', {
      PlatformCapabilities: ['FARGATE'],
      ContainerProperties: Match.objectLike({
        Command: ['merge'],
        // Node.js keeps a small heap: the memory is DuckDB's (native, outside the heap)
        Environment: Match.arrayWith([{ Name: 'NODE_OPTIONS', Value: '--max-old-space-size=2048' }]),
        EphemeralStorage: { SizeInGiB: 200 },
        ResourceRequirements: Match.arrayWith([
          { Type: 'MEMORY', Value: '122880' },
          { Type: 'VCPU', Value: '16' },
        ]),
      }),
    });
  });

  it('creates one Spark application: no initial capacity, auto-start, auto-stop after 15 idle minutes, a ceiling', () => {
    const apps = built.compute.findResources('AWS::EMRServerless::Application');
    assert.equal(Object.keys(apps).length, 1);
    const props = Object.values(apps)[0]!.Properties;
    assert.equal(props.Type, 'SPARK');
    assert.equal(props.InitialCapacity, undefined);
    assert.deepEqual(props.AutoStartConfiguration, { Enabled: true });
    assert.deepEqual(props.AutoStopConfiguration, { Enabled: true, IdleTimeoutMinutes: 15 });
    assert.deepEqual(props.MaximumCapacity, { Cpu: '400 vCPU', Memory: '3000 GB', Disk: '20000 GB' });
  });

  it('gives the Spark job role the pipeline bucket only, and lets the merge job pass it and start job runs', () => {
    built.compute.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: { Statement: [Match.objectLike({ Principal: { Service: 'emr-serverless.amazonaws.com' } })] },
    });
    const resources = policyResources(built, 'MergeSparkJobRole');
    for (const r of resources) assert.match(JSON.stringify(r), /PipelineBucket/, `${JSON.stringify(r)} is not the pipeline bucket`);
    const mergeRole = JSON.stringify(
      Object.values(built.compute.findResources('AWS::IAM::Policy')).filter((p) =>
        JSON.stringify(p.Properties.Roles).includes('MergeMergeJobRole'),
      ),
    );
    assert.match(mergeRole, /emr-serverless:StartJobRun/);
    assert.match(mergeRole, /emr-serverless:GetJobRun/);
    assert.match(mergeRole, /iam:PassRole/);
  });

  it('hands the Spark merge its application and role, and only it', () => {
    const defs = Object.values(built.compute.findResources('AWS::Batch::JobDefinition')).filter(
      (d) => JSON.stringify(d.Properties.ContainerProperties.Command) === '["merge"]',
    );
    assert.equal(defs.length, 2);
    const env = (d: (typeof defs)[number]) => (d.Properties.ContainerProperties.Environment as { Name: string }[]).map((e) => e.Name);
    assert.ok(defs.every((d) => env(d).includes('FANOUT_EMR_APPLICATION_ID') && env(d).includes('FANOUT_EMR_JOB_ROLE_ARN')));
    const others = Object.values(built.compute.findResources('AWS::Batch::JobDefinition')).filter((d) => !defs.includes(d));
    assert.ok(others.length > 0 && others.every((d) => !env(d).includes('FANOUT_EMR_APPLICATION_ID')));
  });

  it('notifies on-intake of every file of a merge batch folder (no suffix filter)', () => {
    const [notifications] = Object.values(built.compute.findResources('Custom::S3BucketNotifications'));
    const configs = notifications!.Properties.NotificationConfiguration.LambdaFunctionConfigurations as {
      Filter: { Key: { FilterRules: { Name: string; Value: string }[] } };
    }[];
    // One notification for all of intake/ (every pipeline's folder, whatever the file name).
    assert.equal(configs.length, 1);
    assert.deepEqual(configs[0]!.Filter.Key.FilterRules, [{ Name: 'prefix', Value: 'intake/' }]);
  });

  it('sweeps waiting merge batches every 15 minutes with a Lambda that may scan the run table and submit the merge', () => {
    const fns = built.compute.findResources('AWS::Lambda::Function', {
      Properties: { Description: 'batch-fanout: merge batches past their input deadline end FAILED' },
    });
    const [fnId] = Object.keys(fns);
    assert.ok(fnId, 'the on-merge-deadline function');
    built.compute.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(15 minutes)',
      Targets: [
        Match.objectLike({ Arn: { 'Fn::GetAtt': [fnId, 'Arn'] }, RetryPolicy: { MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 900 } }),
      ],
    });
    const role = (fns[fnId]!.Properties.Role as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0]!;
    const actions = Object.values(built.compute.findResources('AWS::IAM::Policy'))
      .filter((p) => JSON.stringify(p.Properties.Roles).includes(role))
      .flatMap((p) => (p.Properties.PolicyDocument.Statement as { Action: string | string[] }[]).flatMap((s) => s.Action));
    for (const action of ['dynamodb:Scan', 'dynamodb:UpdateItem', 'ses:SendRawEmail', 'batch:SubmitJob']) {
      assert.ok(actions.includes(action), `${action} in ${JSON.stringify(actions)}`);
    }
  });

  it('has no deadline sweep without merge pipelines', () => {
    const plain = buildApp({ pipelines: pipelinesConfig, complianceChecks: false, bundling: false });
    const rules = plain.compute.findResources('AWS::Events::Rule', { Properties: { ScheduleExpression: Match.anyValue() } });
    assert.deepEqual(Object.keys(rules), []);
  });
});
