/**
 * The managed OSRM server (lib/osrm-service.ts, issue 4) wired into the compute stack: built
 * only when `osrm.enabled`, reachable from the jobs only, its URL given to osrm-match fan-outs,
 * its load balancer logging to the data stack's access-log bucket; with or without NAT, and
 * without open compliance findings.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { loadDeploymentConfig } from '../../config/deployment';
import { parseAppConfig, type AppConfigInput } from '../../runtime/config/schema';
import { pipelinesConfig } from '../../config/pipelines';
import { buildFanoutApp, FANOUT_APP_CONTEXT } from '../../lib/fanout-app';
import { buildApp, openFindings, projectRoot, type BuiltApp } from './fixture';

const withTrips: AppConfigInput = {
  ...pipelinesConfig,
  pipelines: [
    ...pipelinesConfig.pipelines,
    {
      name: 'trips',
      task: {
        type: 'osrm-match',
        baseUrl: 'http://127.0.0.1:5000',
        maxPoints: 200,
        columns: { tripId: 'Trip', timestamp: 'Time', latitude: 'Lat', longitude: 'Lon' },
      },
      input: { columns: [{ name: 'Trip' }, { name: 'Time' }, { name: 'Lat', type: 'number' }, { name: 'Lon', type: 'number' }], groupBy: 'Trip' },
      recipients: ['trips@example.com'],
    },
  ],
};

const osrmOn = { enabled: true, extractKey: 'osrm/region.tar' };

/** Subnets (logical ids) of the one resource of `type` whose logical id starts with `prefix`. */
function subnetsOf(t: Template, type: string, prefix: string, path: (props: Record<string, any>) => unknown): string {
  const [resource] = Object.entries(t.findResources(type)).filter(([id]) => id.startsWith(prefix));
  assert.ok(resource, `${prefix} (${type})`);
  return JSON.stringify(path(resource[1].Properties as Record<string, any>));
}

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
    const osrmPipelines = withTrips.pipelines.filter((p) => p.task.type === 'osrm-match').map((p) => p.name);
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
    assert.match(subnetsOf(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer', 'OsrmLoadBalancer', (p) => p.Subnets), /jobsSubnet/);
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

describe('managed OSRM server without a NAT gateway', () => {
  let built: BuiltApp;

  before(() => {
    // Given osrm.enabled and no NAT gateway: the VPC has public subnets only
    built = buildApp({ pipelines: withTrips, deployment: { network: { natGateways: 0 }, osrm: osrmOn }, bundling: false, complianceChecks: true });
  });

  it('runs the server and its internal load balancer in the public subnets, the tasks with a public IP', () => {
    const t = built.compute;
    const service = subnetsOf(t, 'AWS::ECS::Service', 'OsrmService', (p) => p.NetworkConfiguration.AwsvpcConfiguration);
    assert.match(service, /"AssignPublicIp":"ENABLED"/);
    assert.match(service, /publicSubnet/);
    assert.match(subnetsOf(t, 'AWS::ElasticLoadBalancingV2::LoadBalancer', 'OsrmLoadBalancer', (p) => p.Subnets), /publicSubnet/);
    t.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', { Scheme: 'internal' });
  });

  it('leaves no compliance finding unacknowledged', () => {
    assert.deepEqual(openFindings(built), []);
  });
});

describe('managed OSRM server of an environment-agnostic deployment', () => {
  it('synthesizes without load balancer access logs (their delivery needs the region)', () => {
    // Given no account or region at synth
    const app = new App({ outdir: mkdtempSync(join(tmpdir(), 'fanout-infra-')), context: { ...FANOUT_APP_CONTEXT, 'aws:cdk:bundling-stacks': [] } });
    // When the app is built with osrm enabled
    const { compute } = buildFanoutApp(app, {
      pipelines: parseAppConfig(withTrips, 'test pipelines'),
      deployment: loadDeploymentConfig({ osrm: osrmOn }, {}),
      projectRoot,
    });
    // Then the load balancer exists without access logs
    const [lb] = Object.values(Template.fromStack(compute).findResources('AWS::ElasticLoadBalancingV2::LoadBalancer'));
    assert.ok(lb);
    assert.ok(!JSON.stringify(lb.Properties.LoadBalancerAttributes).includes('access_logs'));
  });
});
