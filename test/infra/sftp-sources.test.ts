/**
 * Scheduled SFTP pulls on AWS: GIVEN a files pipeline fed by one source and an items pipeline fed
 * by another, WHEN the app is synthesized (with cdk-nag and cfn-guard; again with natGateways 0),
 * THEN each source gets an EventBridge Scheduler schedule with its own expression whose universal
 * target submits its sftp-pull job definition to the Fargate Spot queue, a schedule role that may
 * submit only that, a job whose private key is a Batch secret from its Secrets Manager secret, a job
 * role limited to the source's prefixes and ledger partition, the network choice of the deployment,
 * and no compliance finding left open. A source without a secret is refused at synth.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { AppConfigInput } from '../../runtime/config/schema';
import type { SftpSourceInput } from '../../runtime/config/sources-schema';
import { buildApp, openFindings, type BuiltApp } from './fixture';
import { pipelinesConfig } from '../../config/pipelines';

const source = (name: string, pipeline: string, schedule: string): SftpSourceInput => ({
  name,
  host: `sftp.${name}.example`,
  user: 'acme',
  privateKey: { secretName: `batch-fanout/${name}/sftp-key`, env: `${name.toUpperCase().replace(/-/g, '_')}_SFTP_KEY` },
  hostKeySha256: `SHA256:${'A'.repeat(43)}`,
  folder: '/outbox',
  glob: '*.xml',
  pipeline,
  schedule,
});

const config: AppConfigInput = {
  ...pipelinesConfig,
  pipelines: [
    ...pipelinesConfig.pipelines,
    { shape: 'files', name: 'xml-json', task: { type: 'xml-to-json' }, recipients: ['integration-team@example.com'] },
  ],
  sources: [source('partner-a', 'xml-json', 'rate(15 minutes)'), source('partner-b', 'tax-due', 'cron(0 6 * * ? *)')],
};

type Resource = { Properties: Record<string, any> };
type Statement = { Action: string | string[]; Resource: unknown; Condition?: unknown };

function resourcesOf(built: BuiltApp, type: string): [string, Resource][] {
  return Object.entries(built.compute.findResources(type) as Record<string, Resource>);
}

/** The one resource of `type` whose logical id starts with `prefix`. */
function one(built: BuiltApp, type: string, prefix: string): [string, Resource] {
  const found = resourcesOf(built, type).filter(([id]) => id.startsWith(prefix));
  assert.equal(found.length, 1, `one ${type} ${prefix}*: ${found.map(([id]) => id).join(', ')}`);
  return found[0]!;
}

/** The statements of the policies attached to the role with logical id prefix `rolePrefix`. */
function statementsOf(built: BuiltApp, rolePrefix: string): Statement[] {
  return resourcesOf(built, 'AWS::IAM::Policy')
    .filter(([, p]) => (p.Properties.Roles as { Ref: string }[]).some((r) => r.Ref?.startsWith(rolePrefix)))
    .flatMap(([, p]) => p.Properties.PolicyDocument.Statement as Statement[]);
}

const actionsOf = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);
const prefixesOf = (s: Statement) => JSON.stringify(s.Resource).match(/(intake|work|results)\/[^"]*/g) ?? [];

describe('SFTP sources on AWS', () => {
  let built: BuiltApp;
  let noNat: BuiltApp;
  before(() => {
    built = buildApp({ pipelines: config, complianceChecks: true, bundling: false });
    noNat = buildApp({ pipelines: config, deployment: { network: { natGateways: 0 } }, complianceChecks: true, bundling: false });
  });

  it('leaves no cdk-nag or cfn-guard finding open, with a NAT gateway and without', () => {
    assert.deepEqual(openFindings(built), []);
    assert.deepEqual(openFindings(noNat), []);
  });

  it("schedules each source with its own expression, in the app's schedule group", () => {
    const [, group] = one(built, 'AWS::Scheduler::ScheduleGroup', 'SftpSources');
    const [, a] = one(built, 'AWS::Scheduler::Schedule', 'SftpSourcesPartnerASchedule');
    const [, b] = one(built, 'AWS::Scheduler::Schedule', 'SftpSourcesPartnerBSchedule');
    assert.equal(a.Properties.ScheduleExpression, 'rate(15 minutes)');
    assert.equal(b.Properties.ScheduleExpression, 'cron(0 6 * * ? *)');
    assert.equal(a.Properties.GroupName, group.Properties.Name);
    assert.equal(b.Properties.GroupName, group.Properties.Name);
  });

  it('targets Batch SubmitJob through the universal target: the pull job definition on the Fargate Spot queue', () => {
    const [, schedule] = one(built, 'AWS::Scheduler::Schedule', 'SftpSourcesPartnerASchedule');
    const target = schedule.Properties.Target;
    assert.deepEqual(target.Arn, { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':scheduler:::aws-sdk:batch:submitJob']] });
    const [definitionId] = one(built, 'AWS::Batch::JobDefinition', 'SftpSourcesPartnerAPull');
    const [queueId] = one(built, 'AWS::Batch::JobQueue', 'BatchFargateSpotQueue');
    const input = JSON.stringify(target.Input);
    assert.match(input, /\\"JobName\\":\\"fanout-sftp-pull-partner-a\\"/);
    // on-job-failed finds the source of a pull that failed for good by this parameter.
    assert.match(input, /\\"Parameters\\":\{\\"source\\":\\"partner-a\\"\}/);
    assert.ok(input.includes(`{"Fn::GetAtt":["${queueId}","JobQueueArn"]}`), 'JobQueue is the Fargate Spot queue');
    assert.ok(input.includes(`{"Ref":"${definitionId}"}`), 'JobDefinition is the source pull');
    assert.deepEqual(target.RetryPolicy, { MaximumEventAgeInSeconds: 3600, MaximumRetryAttempts: 3 });
    const [dlqId] = one(built, 'AWS::SQS::Queue', 'SftpSourcesDeadLetters');
    assert.deepEqual(target.DeadLetterConfig, { Arn: { 'Fn::GetAtt': [dlqId, 'Arn'] } });
  });

  it('lets the schedule role submit only its own job definition to that queue, trusting Scheduler for this group only', () => {
    const [definitionId] = one(built, 'AWS::Batch::JobDefinition', 'SftpSourcesPartnerAPull');
    const [queueId] = one(built, 'AWS::Batch::JobQueue', 'BatchFargateSpotQueue');
    const [dlqId] = one(built, 'AWS::SQS::Queue', 'SftpSourcesDeadLetters');
    const statements = statementsOf(built, 'SftpSourcesPartnerAScheduleRole');
    assert.deepEqual(
      statements.map((s) => [actionsOf(s), s.Resource]),
      [
        [['batch:SubmitJob'], [{ Ref: definitionId }, { 'Fn::GetAtt': [queueId, 'JobQueueArn'] }]],
        [['sqs:SendMessage'], { 'Fn::GetAtt': [dlqId, 'Arn'] }],
      ],
    );
    const [, role] = one(built, 'AWS::IAM::Role', 'SftpSourcesPartnerAScheduleRole');
    const [trust] = role.Properties.AssumeRolePolicyDocument.Statement;
    assert.deepEqual(trust.Principal, { Service: 'scheduler.amazonaws.com' });
    const [groupId] = one(built, 'AWS::Scheduler::ScheduleGroup', 'SftpSources');
    assert.deepEqual(trust.Condition.StringEquals['aws:SourceArn'], { 'Fn::GetAtt': [groupId, 'Arn'] });
  });

  it('runs sftp-pull on Fargate with the source in its environment and the private key as a Batch secret, never as plain text', () => {
    const [, def] = one(built, 'AWS::Batch::JobDefinition', 'SftpSourcesPartnerAPull');
    const c = def.Properties.ContainerProperties;
    assert.deepEqual(def.Properties.PlatformCapabilities, ['FARGATE']);
    assert.deepEqual(c.Command, ['sftp-pull']);
    const env = Object.fromEntries((c.Environment as { Name: string; Value: unknown }[]).map((e) => [e.Name, e.Value]));
    assert.equal(env.FANOUT_PIPELINE_SHAPE, 'files');
    assert.equal(JSON.parse(env.FANOUT_SOURCE as string).name, 'partner-a');
    assert.equal(env.PARTNER_A_SFTP_KEY, undefined);
    assert.equal(c.Secrets.length, 1);
    assert.equal(c.Secrets[0].Name, 'PARTNER_A_SFTP_KEY');
    assert.match(JSON.stringify(c.Secrets[0].ValueFrom), /:secret:batch-fanout\/partner-a\/sftp-key"/);
    // The execution role reads that secret and no other.
    const reads = statementsOf(built, 'SftpSourcesPartnerAPullContainerExecutionRole').filter((s) =>
      actionsOf(s).includes('secretsmanager:GetSecretValue'),
    );
    assert.equal(reads.length, 1);
    assert.match(JSON.stringify(reads[0]!.Resource), /:secret:batch-fanout\/partner-a\/sftp-key-\?\?\?\?\?\?"/);
  });

  it("lets the pull job write only the source's intake folder, its manifests, its temporary objects and its ledger items", () => {
    const statements = statementsOf(built, 'SftpSourcesPartnerAJobRole');
    const s3 = statements.filter((s) => actionsOf(s).some((a) => a.startsWith('s3:')));
    const prefixes = [...new Set(s3.flatMap(prefixesOf))].sort();
    assert.deepEqual(prefixes, ['intake/xml-json/partner-a-*', 'intake/xml-json/partner-a/*', 'work/pulls/partner-a/*']);
    const deletes = s3.filter((s) => actionsOf(s).some((a) => a.startsWith('s3:DeleteObject'))).flatMap(prefixesOf);
    assert.deepEqual(deletes, ['work/pulls/partner-a/*']);
    const table = statements.filter((s) => actionsOf(s).some((a) => a.startsWith('dynamodb:')));
    assert.equal(table.length, 1);
    assert.deepEqual(actionsOf(table[0]!).sort(), ['dynamodb:DeleteItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem']);
    assert.deepEqual(table[0]!.Condition, { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': ['SOURCE#partner-a'] } });
    assert.deepEqual(statements.length, s3.length + table.length, 'nothing else');
  });

  it('gives a source of an items pipeline no manifest grant (each pulled file starts its own run)', () => {
    const prefixes = statementsOf(built, 'SftpSourcesPartnerBJobRole').flatMap(prefixesOf);
    assert.deepEqual([...new Set(prefixes)].sort(), ['intake/tax-due/partner-b/*', 'work/pulls/partner-b/*']);
    const [, def] = one(built, 'AWS::Batch::JobDefinition', 'SftpSourcesPartnerBPull');
    const env = def.Properties.ContainerProperties.Environment as { Name: string; Value: unknown }[];
    assert.deepEqual(env.find((e) => e.Name === 'FANOUT_PIPELINE_SHAPE')?.Value, 'items');
  });

  it('leaves through the NAT gateway by default, and with a public IP when natGateways is 0', () => {
    const network = (b: BuiltApp) => one(b, 'AWS::Batch::JobDefinition', 'SftpSourcesPartnerAPull')[1].Properties.ContainerProperties;
    assert.deepEqual(network(built).NetworkConfiguration, { AssignPublicIp: 'DISABLED' });
    assert.deepEqual(network(noNat).NetworkConfiguration, { AssignPublicIp: 'ENABLED' });
  });

  it('alarms the operator when a schedule cannot submit its job', () => {
    const [dlqId] = one(built, 'AWS::SQS::Queue', 'SftpSourcesDeadLetters');
    const [, alarm] = one(built, 'AWS::CloudWatch::Alarm', 'SftpSourcesDeadLettersAlarm');
    assert.deepEqual(alarm.Properties.Dimensions, [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [dlqId, 'QueueName'] } }]);
    assert.match(JSON.stringify(alarm.Properties.AlarmActions), /OperatorTopic/);
  });

  it('refuses a source without privateKey.secretName at synth, naming it', () => {
    const keyless = { ...source('partner-c', 'xml-json', 'rate(1 hour)'), privateKey: { env: 'PARTNER_C_SFTP_KEY' } };
    assert.throws(
      () => buildApp({ pipelines: { ...config, sources: [keyless] }, bundling: false }),
      /source "partner-c" has no privateKey\.secretName/,
    );
  });
});
