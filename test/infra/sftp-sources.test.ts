/**
 * The scheduled SFTP pulls and a files pipeline in the app: a schedule per source submitting its
 * sftp-pull job on the Fargate Spot queue, the key as a Batch secret, grants limited to the
 * source's own prefixes, and no compliance finding left open.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import type { AppConfigInput } from '../../runtime/config/schema';
import { buildApp, openFindings, type BuiltApp } from './fixture';

const config: AppConfigInput = {
  pipelines: [{ shape: 'files', name: 'xml-json', task: { type: 'xml-to-json' }, recipients: ['team@example.com'] }],
  sources: [
    {
      name: 'partner-a',
      host: 'sftp.partner-a.example',
      user: 'acme',
      privateKey: { secretName: 'batch-fanout/partner-a/sftp-key', env: 'PARTNER_A_SFTP_KEY' },
      hostKeySha256: `SHA256:${'A'.repeat(43)}`,
      folder: '/outbox',
      glob: '*.xml',
      pipeline: 'xml-json',
      schedule: 'rate(15 minutes)',
    },
  ],
};

describe('SFTP sources and a files pipeline in the app', () => {
  let built: BuiltApp;
  before(() => {
    // GIVEN a files pipeline fed by one SFTP source, WHEN the app is synthesized with the compliance checks
    built = buildApp({ pipelines: config, complianceChecks: true });
  });

  it('schedules the source with EventBridge Scheduler, submitting its sftp-pull job to the Fargate Spot queue', () => {
    // THEN one schedule with the source's expression targets Batch SubmitJob through the universal target
    built.compute.resourceCountIs('AWS::Scheduler::Schedule', 1);
    built.compute.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(15 minutes)',
      Target: Match.objectLike({
        Arn: Match.stringLikeRegexp('aws-sdk:batch:submitJob'),
        Input: Match.anyValue(),
        RetryPolicy: { MaximumRetryAttempts: 2 },
      }),
    });
  });

  it('lets the schedule submit only that job definition to that queue', () => {
    const policies = built.compute.findResources('AWS::IAM::Policy', {
      Properties: { PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: 'batch:SubmitJob' })]) }, Roles: Match.anyValue() },
    });
    const scheduler = Object.entries(policies).filter(([id]) => id.includes('PartnerAScheduleRole'));
    assert.equal(scheduler.length, 1);
    const statements = (scheduler[0]![1] as { Properties: { PolicyDocument: { Statement: Array<{ Action: unknown; Resource: unknown[] }> } } }).Properties.PolicyDocument.Statement;
    assert.deepEqual(statements.map((s) => s.Action), ['batch:SubmitJob']);
    assert.equal(statements[0]!.Resource.length, 2);
  });

  it('runs sftp-pull with the source config in its environment and the private key as a Batch secret', () => {
    built.compute.hasResourceProperties('AWS::Batch::JobDefinition', {
      PlatformCapabilities: ['FARGATE'],
      ContainerProperties: Match.objectLike({
        Command: ['sftp-pull'],
        Environment: Match.arrayWith([
          Match.objectLike({ Name: 'FANOUT_PIPELINE_SHAPE', Value: 'files' }),
          Match.objectLike({ Name: 'FANOUT_SOURCE', Value: Match.stringLikeRegexp('"name":"partner-a"') }),
        ]),
        Secrets: [Match.objectLike({ Name: 'PARTNER_A_SFTP_KEY', ValueFrom: Match.anyValue() })],
      }),
    });
  });

  it("writes only the source's intake folder, its manifests and its temporary objects", () => {
    const policies = built.compute.findResources('AWS::IAM::Policy');
    const pull = Object.entries(policies).filter(([id]) => id.includes('PartnerAJobRole'));
    assert.equal(pull.length, 1);
    const text = JSON.stringify(pull[0]![1]);
    assert.match(text, /intake\/xml-json\/partner-a\/\*/);
    assert.match(text, /intake\/xml-json\/partner-a-\*/);
    assert.match(text, /work\/pulls\/partner-a\/\*/);
    assert.doesNotMatch(text, /"\/intake\/\*"|\/results\//);
  });

  it('starts files runs on .zip and .txt uploads', () => {
    const text = JSON.stringify(built.compute.findResources('Custom::S3BucketNotifications'));
    assert.match(text, /"Value":"\.zip"/);
    assert.match(text, /"Value":"\.txt"/);
    assert.doesNotMatch(text, /"Value":"\.xlsx"/);
  });

  it('leaves no cdk-nag or cfn-guard finding unacknowledged', () => {
    assert.deepEqual(openFindings(built), []);
  });
});
