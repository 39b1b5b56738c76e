/**
 * The managed OSRM server (lib/osrm-service.ts, issue 4) wired into the compute stack: built
 * only when `osrm.enabled`, reachable from the jobs only, its URL given to osrm-match fan-outs,
 * its load balancer logging to the data stack's access-log bucket, and without open compliance
 * findings. Without NAT: test/infra/deployment-variants.test.ts.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { Match, type Template } from 'aws-cdk-lib/assertions';
import type { AppConfigInput } from '../../runtime/config/schema';
import { pipelinesConfig } from '../../config/pipelines';
import { buildApp, openFindings, osrmOn, subnetsOf, tripsPipeline, type BuiltApp } from './fixture';

const withTrips: AppConfigInput = { ...pipelinesConfig, pipelines: [...pipelinesConfig.pipelines, tripsPipeline] };

describe('managed OSRM server', () => {
  let built: BuiltApp;
  let t: Template;

  before(() => {
    // Given osrm.enabled and an osrm-match pipeline, with the compliance checks
    built = buildApp({ pipelines: withTrips, deployment: { osrm: osrmOn }, bundling: false, complianceChecks: true });
    t = built.compute;
  });

  it('gives each osrm-match fan-out the server URL, and no other job definition', () => {
    const withUrl = Object.entries(t.findResources('AWS::Batch::JobDefinition')).filter(([, r]) =>
      (r.Properties.ContainerProperties.Environment as { Name: string }[]).some((e) => e.Name === 'FANOUT_OSRM_BASE_URL'),
    );
    const osrmPipelines = withTrips.pipelines
      .filter((p) => p.shape !== 'dataset' && p.shape !== 'files' && p.task.type === 'osrm-match')
      .map((p) => p.name);
    assert.ok(osrmPipelines.includes('trips'));
    assert.deepEqual(
      withUrl.map(([id]) => id.replace(/Definition[0-9A-F]+$/, '')).sort(),
      osrmPipelines.map((name) => `Pipeline${name.replace(/-/g, '')}Fanout`).sort(),
    );
    const url = (withUrl[0]![1].Properties.ContainerProperties.Environment as { Name: string; Value: unknown }[]).find(
      (e) => e.Name === 'FANOUT_OSRM_BASE_URL',
    )!.Value;
    assert.match(JSON.stringify(url), /LoadBalancer|DNSName/);
  });

  it("lets the jobs' security group, and only it, reach the server's load balancer", () => {
    const lbGroup = Object.keys(t.findResources('AWS::EC2::SecurityGroup')).find((id) => id.startsWith('OsrmLoadBalancerSecurityGroup'))!;
    const rules = Object.values(t.findResources('AWS::EC2::SecurityGroupIngress')).filter(
      (r) => JSON.stringify(r.Properties.GroupId) === JSON.stringify({ 'Fn::GetAtt': [lbGroup, 'GroupId'] }),
    );
    assert.equal(rules.length, 1);
    assert.match(JSON.stringify(rules[0]!.Properties.SourceSecurityGroupId), /NetworkJobSecurityGroup/);
    assert.equal(t.findResources('AWS::EC2::SecurityGroup')[lbGroup]!.Properties.SecurityGroupIngress, undefined);
  });

  it("runs the server in the jobs' private subnets without a public IP", () => {
    const service = subnetsOf(t, 'AWS::ECS::Service', 'OsrmService', (p) => p.NetworkConfiguration.AwsvpcConfiguration);
    assert.match(service, /"AssignPublicIp":"DISABLED"/);
    assert.match(service, /jobsSubnet/);
    assert.match(
      subnetsOf(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer', 'OsrmLoadBalancer', (p) => p.Subnets),
      /jobsSubnet/,
    );
  });

  it("logs the load balancer's requests to the data stack's access-log bucket, which lets ELB deliver them", () => {
    t.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      LoadBalancerAttributes: Match.arrayWith([
        { Key: 'access_logs.s3.enabled', Value: 'true' },
        { Key: 'access_logs.s3.bucket', Value: { 'Fn::ImportValue': Match.stringLikeRegexp('AccessLogs') } },
        { Key: 'access_logs.s3.prefix', Value: 'osrm-alb' },
      ]),
    });
    built.data.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: Match.stringLikeRegexp('^AccessLogs') },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Allow',
            Action: 's3:PutObject',
            Principal: { Service: 'delivery.logs.amazonaws.com' },
            Resource: { 'Fn::Join': ['', Match.arrayWith(['/osrm-alb/AWSLogs/'])] },
          }),
        ]),
      },
    });
  });

  it('leaves no compliance finding unacknowledged', () => {
    assert.deepEqual(openFindings(built), []);
  });
});

describe('managed OSRM server of an environment-agnostic deployment', () => {
  it('synthesizes without load balancer access logs (their delivery needs the region)', () => {
    // Given no account or region at synth
    // When the app is built with osrm enabled
    const { compute } = buildApp({ pipelines: withTrips, deployment: { osrm: osrmOn }, bundling: false, environmentAgnostic: true });
    // Then the load balancer exists without access logs
    const [lb] = Object.values(compute.findResources('AWS::ElasticLoadBalancingV2::LoadBalancer'));
    assert.ok(lb);
    assert.ok(!JSON.stringify(lb.Properties.LoadBalancerAttributes).includes('access_logs'));
  });
});
