/** The stateful stack: pipeline bucket, access-log bucket and run table, retained and encrypted. */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { App, RemovalPolicy } from 'aws-cdk-lib';
import { Capture, Match, Template } from 'aws-cdk-lib/assertions';
import { FanoutDataStack } from '../../lib/data-stack';
import { FANOUT_APP_CONTEXT } from '../../lib/fanout-app';

/** Every retention differs from its default (365, 365, 7, 365, 30 days), so the template shows the props arrived. */
const retention = { intakeDays: 120, resultsDays: 400, workDays: 3, accessLogDays: 90, noncurrentVersionDays: 14 };

function dataTemplate(removalPolicy?: RemovalPolicy): Template {
  const app = new App({ context: { ...FANOUT_APP_CONTEXT }, builtinCloudFormationValidation: false });
  return Template.fromStack(new FanoutDataStack(app, 'Data', { ...retention, removalPolicy }));
}

describe('data stack', () => {
  let template: Template;
  before(() => {
    template = dataTemplate();
  });

  it('keeps the pipeline bucket private, versioned, encrypted and logging to the log bucket', () => {
    const logBucket = new Capture();
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      VersioningConfiguration: { Status: 'Enabled' },
      LoggingConfiguration: { DestinationBucketName: { Ref: logBucket }, LogFilePrefix: 'pipeline-bucket/' },
    });
    assert.match(logBucket.asString(), /^AccessLogs/);
  });

  it('refuses every request to either bucket that is not over TLS', () => {
    const policies = template.findResources('AWS::S3::BucketPolicy', {
      Properties: {
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          ]),
        },
      },
    });
    assert.equal(Object.keys(policies).length, 2);
  });

  it('expires work files after the configured days and keeps results as configured', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({ Prefix: 'work/', ExpirationInDays: 3, Status: 'Enabled' }),
          Match.objectLike({ Prefix: 'intake/', ExpirationInDays: 120 }),
          Match.objectLike({ Prefix: 'results/', ExpirationInDays: 400, NoncurrentVersionExpiration: { NoncurrentDays: 14 } }),
          // The outcomes `fanout redrive` reads live as long as the results they complete.
          Match.objectLike({ Prefix: 'history/', ExpirationInDays: 400, Status: 'Enabled' }),
        ]),
      },
    });
  });

  it('expires access logs after the configured days', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike({ ExpirationInDays: 90 })]) },
      OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
    });
  });

  it('keys the run table on pk/sk, on demand, with TTL on expiresAt, PITR and encryption under the AWS-managed KMS key', () => {
    template.resourceCountIs('AWS::DynamoDB::Table', 1);
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      AttributeDefinitions: Match.arrayWith([
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
      ]),
      BillingMode: 'PAY_PER_REQUEST',
      TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      SSESpecification: { SSEEnabled: true },
      DeletionProtectionEnabled: true,
    });
  });

  it('retains the buckets and the table when the stack is deleted', () => {
    template.hasResource('AWS::DynamoDB::Table', { DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
    assert.equal(Object.keys(template.findResources('AWS::S3::Bucket', { DeletionPolicy: 'Retain' })).length, 2);
  });

  it('deletes data with the stack only when removalPolicy is destroy', () => {
    const disposable = dataTemplate(RemovalPolicy.DESTROY);
    disposable.hasResource('AWS::DynamoDB::Table', { DeletionPolicy: 'Delete' });
    disposable.hasResourceProperties('AWS::DynamoDB::Table', { DeletionProtectionEnabled: false });
    assert.equal(Object.keys(disposable.findResources('AWS::S3::Bucket', { DeletionPolicy: 'Delete' })).length, 2);
    disposable.resourceCountIs('Custom::S3AutoDeleteObjects', 2);
  });
});
