/**
 * The managed OSRM server (lib/osrm-service.ts, issue 4) wired into the compute stack: built
 * only when `osrm.enabled`, reachable from the jobs, its URL given to osrm-match fan-outs.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { Template } from 'aws-cdk-lib/assertions';
import type { AppConfigInput } from '../../runtime/config/schema';
import { pipelinesConfig } from '../../config/pipelines';
import { buildApp } from './fixture';

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

describe('managed OSRM server', () => {
  let t: Template;

  before(() => {
    // Given osrm.enabled and an osrm-match pipeline
    t = buildApp({ pipelines: withTrips, deployment: { osrm: { enabled: true, extractKey: 'osrm/region.tar' } }, bundling: false }).compute;
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
});
