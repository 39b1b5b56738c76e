/**
 * Least privilege, shown: a role's granted actions (wildcards expanded with the IAM action list)
 * minus the actions local runs used; and the IAM check of a call against a role's policies and a
 * bucket policy with iam-simulate.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { evaluate } from '../../../local/twin/iam';
import { expandAction, iamReport } from '../../../local/twin/iam-usage';
import { readTwinModel, type AppTemplates } from '../../../local/twin/template';

const templates: AppTemplates = {
  data: {
    stackName: 'd',
    template: {
      Resources: {
        PipelineBucketX: { Type: 'AWS::S3::Bucket' },
        PipelineBucketPolicyX: {
          Type: 'AWS::S3::BucketPolicy',
          Properties: {
            Bucket: { Ref: 'PipelineBucketX' },
            PolicyDocument: {
              Statement: [
                {
                  Effect: 'Deny',
                  Principal: { AWS: '*' },
                  Action: 's3:*',
                  Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': ['PipelineBucketX', 'Arn'] }, '/*']] },
                  Condition: { Bool: { 'aws:SecureTransport': 'false' } },
                },
                {
                  Effect: 'Deny',
                  Principal: { AWS: '*' },
                  Action: 's3:DeleteObject',
                  Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': ['PipelineBucketX', 'Arn'] }, '/keep/*']] },
                },
              ],
            },
          },
        },
      },
      Outputs: { BucketArn: { Value: { 'Fn::GetAtt': ['PipelineBucketX', 'Arn'] }, Export: { Name: 'd:BucketArn' } } },
    },
  },
  compute: {
    stackName: 'c',
    template: {
      Resources: {
        JobRole: { Type: 'AWS::IAM::Role', Metadata: { 'aws:cdk:path': 'c/JobRole/Resource' } },
        JobRolePolicy: {
          Type: 'AWS::IAM::Policy',
          Properties: {
            Roles: [{ Ref: 'JobRole' }],
            PolicyDocument: {
              Statement: [
                {
                  Effect: 'Allow',
                  Action: ['s3:GetObject*', 's3:DeleteObject*'],
                  Resource: { 'Fn::Join': ['', [{ 'Fn::ImportValue': 'd:BucketArn' }, '/work/*']] },
                },
                {
                  Effect: 'Allow',
                  Action: 's3:DeleteObject',
                  Resource: { 'Fn::Join': ['', [{ 'Fn::ImportValue': 'd:BucketArn' }, '/keep/*']] },
                },
              ],
            },
          },
        },
      },
    },
  },
};
const model = readTwinModel(templates, { account: '123456789012', region: 'us-east-1', bucket: 'b', table: 't' });
const role = 'arn:aws:iam::123456789012:role/JobRole';

describe('the IAM check and report', () => {
  it('allows what the identity policy grants, and denies outside it or where the bucket policy denies', async () => {
    assert.equal(await evaluate(model, role, { action: 's3:GetObject', resource: 'arn:aws:s3:::b/work/x' }), 'Allowed');
    assert.equal(await evaluate(model, role, { action: 's3:GetObject', resource: 'arn:aws:s3:::b/intake/x' }), 'ImplicitlyDenied');
    assert.equal(await evaluate(model, role, { action: 's3:DeleteObject', resource: 'arn:aws:s3:::b/keep/x' }), 'ExplicitlyDenied');
  });

  it('expands a granted wildcard and lists what no run used', async () => {
    const getObject = await expandAction('s3:GetObject*');
    assert.ok(
      getObject.includes('s3:GetObject') && getObject.includes('s3:GetObjectAcl') && getObject.every((a) => a.startsWith('s3:GetObject')),
    );
    const [report] = await iamReport(model, { JobRole: { 'tax-due': ['s3:GetObject'], other: ['s3:DeleteObject'] } }, [role], 'tax-due');
    assert.equal(report!.role, 'JobRole');
    assert.ok(!report!.unused.includes('s3:GetObject'), 'used by a tax-due run');
    assert.ok(report!.unused.includes('s3:DeleteObject'), 'used by another pipeline only');
    assert.ok(report!.unused.includes('s3:GetObjectAcl'));
  });
});
