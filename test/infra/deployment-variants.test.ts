/**
 * Deployment variants other than the default: no NAT gateway (jobs in public subnets) and
 * removalPolicy 'destroy'. Each stays free of unacknowledged cdk-nag / cfn-guard findings.
 * Handler bundling is skipped: these tests look at no handler code.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { buildApp, openFindings, type BuiltApp } from './fixture';

describe('without a NAT gateway', () => {
  let built: BuiltApp;
  before(() => {
    built = buildApp({ deployment: { network: { natGateways: 0 } }, complianceChecks: true, bundling: false });
  });

  it('creates no NAT gateway and no private subnet', () => {
    built.compute.resourceCountIs('AWS::EC2::NatGateway', 0);
    const subnets = Object.keys(built.compute.findResources('AWS::EC2::Subnet'));
    assert.ok(subnets.length > 0 && subnets.every((id) => id.includes('public')));
  });

  it('gives Fargate jobs a public IP so they reach ECR, AWS APIs and the data source', () => {
    const defs = Object.values(built.compute.findResources('AWS::Batch::JobDefinition')).filter((d) =>
      (d.Properties.PlatformCapabilities as string[]).includes('FARGATE'),
    );
    assert.ok(defs.length > 0);
    for (const d of defs) assert.deepEqual(d.Properties.ContainerProperties.NetworkConfiguration, { AssignPublicIp: 'ENABLED' });
  });

  it('leaves no compliance finding unacknowledged', () => {
    assert.deepEqual(openFindings(built), []);
  });
});

describe("with removalPolicy 'destroy'", () => {
  let built: BuiltApp;
  before(() => {
    built = buildApp({ deployment: { removalPolicy: 'destroy' }, complianceChecks: true, bundling: false });
  });

  it('empties and deletes the buckets with the stack', () => {
    built.data.resourceCountIs('Custom::S3AutoDeleteObjects', 2);
    assert.equal(Object.keys(built.data.findResources('AWS::S3::Bucket', { DeletionPolicy: 'Delete' })).length, 2);
  });

  it('leaves no compliance finding unacknowledged', () => {
    assert.deepEqual(openFindings(built), []);
  });
});
