/**
 * Deployment variants other than the default: no NAT gateway (jobs, and the managed OSRM server,
 * in public subnets) and removalPolicy 'destroy'. The variants touch different resources, so one
 * app with all of them is built and checked (compliance checks are the slow part of a synth);
 * it stays free of unacknowledged cdk-nag / cfn-guard findings.
 * Handler bundling is skipped: these tests look at no handler code.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { pipelinesConfig } from '../../config/pipelines';
import { buildApp, openFindings, osrmOn, subnetsOf, tripsPipeline, type BuiltApp } from './fixture';

let built: BuiltApp;
before(() => {
  // Given no NAT gateway (the VPC has public subnets only), removalPolicy 'destroy', and osrm.enabled with an osrm-match pipeline
  built = buildApp({
    pipelines: { ...pipelinesConfig, pipelines: [...pipelinesConfig.pipelines, tripsPipeline] },
    deployment: { network: { natGateways: 0 }, removalPolicy: 'destroy', osrm: osrmOn },
    complianceChecks: true,
    bundling: false,
  });
});

describe('without a NAT gateway', () => {
  it('creates no NAT gateway and no private subnet', () => {
    built.compute.resourceCountIs('AWS::EC2::NatGateway', 0);
    const subnets = Object.keys(built.compute.findResources('AWS::EC2::Subnet'));
    assert.ok(subnets.length > 0 && subnets.every((id) => id.includes('public')));
  });

  it('gives Fargate jobs a public IP so they reach ECR, AWS APIs and the data source', () => {
    const defs = Object.values(built.compute.findResources('AWS::Batch::JobDefinition')).filter((d) =>
      (d.Properties.PlatformCapabilities as string[]).includes('FARGATE'),
    );
    const fargatePipelines = [...pipelinesConfig.pipelines, tripsPipeline].filter((p) => (p.compute ?? 'fargate-spot') === 'fargate-spot');
    assert.ok(fargatePipelines.length >= 2);
    assert.equal(defs.length, fargatePipelines.length * 4, 'the four stages of each Fargate pipeline');
    for (const d of defs) assert.deepEqual(d.Properties.ContainerProperties.NetworkConfiguration, { AssignPublicIp: 'ENABLED' });
  });

  it('runs the managed OSRM server and its internal load balancer in the public subnets, the tasks with a public IP', () => {
    const t = built.compute;
    const service = subnetsOf(t, 'AWS::ECS::Service', 'OsrmService', (p) => p.NetworkConfiguration.AwsvpcConfiguration);
    assert.match(service, /"AssignPublicIp":"ENABLED"/);
    assert.match(service, /publicSubnet/);
    assert.match(
      subnetsOf(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer', 'OsrmLoadBalancer', (p) => p.Subnets),
      /publicSubnet/,
    );
    t.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', { Scheme: 'internal' });
  });

  it('leaves no compliance finding unacknowledged', () => {
    assert.deepEqual(openFindings(built), []);
  });
});

describe("with removalPolicy 'destroy'", () => {
  it('empties and deletes the buckets with the stack', () => {
    built.data.resourceCountIs('Custom::S3AutoDeleteObjects', 2);
    assert.equal(Object.keys(built.data.findResources('AWS::S3::Bucket', { DeletionPolicy: 'Delete' })).length, 2);
  });

  it('leaves no compliance finding unacknowledged', () => {
    assert.deepEqual(openFindings(built), []);
  });
});
