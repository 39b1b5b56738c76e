/** Deployment settings: defaults, context overrides, and bad values failing with the field named. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { App } from 'aws-cdk-lib';
import { checkAgainstPipelines, loadDeploymentConfig, parseDeploymentConfig, type DeploymentInput } from '../../config/deployment';
import { loadPipelinesConfig } from '../../config/pipelines';
import { buildFanoutApp, FANOUT_APP_CONTEXT } from '../../lib/fanout-app';
import { nonDefaultDeployment, projectRoot } from './fixture';

/** [path, value] of every leaf of a plain object (arrays are leaves). */
function leaves(value: unknown, path: string[] = []): [string, unknown][] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [[path.join('.'), value]];
  return Object.entries(value).flatMap(([k, v]) => leaves(v, [...path, k]));
}

describe('deployment config', () => {
  it('fills every default when nothing is set', () => {
    const cfg = parseDeploymentConfig({});
    assert.equal(cfg.appName, 'batch-fanout');
    assert.equal(cfg.removalPolicy, 'retain');
    assert.deepEqual(cfg.network, { maxAzs: 2, natGateways: 1, gatewayEndpoints: true });
    assert.equal(cfg.compute.fargateSpotMaxVcpus, 256);
    assert.equal(cfg.compute.ec2SpotMinVcpus, 0);
    assert.equal(cfg.compute.ec2InstanceTypes[0], 'c5.18xlarge');
    assert.deepEqual(cfg.jobs.fanout, { vcpus: 1, memoryMiB: 2048, timeoutMinutes: 360, attempts: 5 });
    assert.equal(cfg.retention.logDays, 365);
    assert.equal(cfg.osrm.enabled, false);
  });

  it('merges context overrides over the settings file, keeping the other defaults', () => {
    const cfg = loadDeploymentConfig({ operatorEmail: 'ops@example.com', jobs: { fanout: { vcpus: 2, memoryMiB: 4096 } } });
    assert.equal(cfg.operatorEmail, 'ops@example.com');
    assert.equal(cfg.jobs.fanout.vcpus, 2);
    assert.equal(cfg.jobs.fanout.timeoutMinutes, 360);
  });

  it('names the field and the value of a vCPU count Fargate does not offer', () => {
    assert.throws(
      () => parseDeploymentConfig({ jobs: { split: { vcpus: 3, memoryMiB: 4096, timeoutMinutes: 60, attempts: 2 } } }),
      /jobs\.split\.vcpus.*got 3/s,
    );
  });

  it('names the field of a memory size Fargate does not allow for the vCPUs', () => {
    assert.throws(
      () => parseDeploymentConfig({ jobs: { fanout: { vcpus: 1, memoryMiB: 1024, timeoutMinutes: 60, attempts: 2 } } }),
      /jobs\.fanout\.memoryMiB: 1024 MiB is not a Fargate size for 1 vCPU/,
    );
  });

  it('refuses more EC2 Spot vCPUs kept warm than the environment may run', () => {
    assert.throws(
      () => parseDeploymentConfig({ compute: { ec2SpotMaxVcpus: 96, ec2SpotMinVcpus: 192 } }),
      /compute\.ec2SpotMinVcpus: must be at most compute\.ec2SpotMaxVcpus \(96\), got 192/,
    );
  });

  it("gives the infrastructure tests' fixture a value other than the default for each setting it sets", () => {
    const defaults = new Map(leaves(parseDeploymentConfig({})));
    const set = leaves(nonDefaultDeployment);
    assert.ok(set.length >= 20, `${set.length} settings`);
    const same = set.filter(([path, value]) => JSON.stringify(defaults.get(path)) === JSON.stringify(value)).map(([path]) => path);
    assert.deepEqual(same, []);
    assert.doesNotThrow(() => parseDeploymentConfig(nonDefaultDeployment));
  });

  it('names the field of a log retention CloudWatch does not accept', () => {
    assert.throws(() => parseDeploymentConfig({ retention: { logDays: 100 } }), /retention\.logDays.*got 100/s);
  });

  it('names the field of a malformed account id', () => {
    assert.throws(() => parseDeploymentConfig({ account: '1234' }), /account: must be a 12-digit AWS account id \(got "1234"\)/);
  });

  it('refuses an existing VPC without account and region', () => {
    assert.throws(
      () => parseDeploymentConfig({ network: { vpcId: 'vpc-0abc12345def67890' } }),
      /network\.vpcId: an existing VPC is looked up at synth/,
    );
  });

  it('refuses more job attempts than AWS Batch allows', () => {
    assert.throws(
      () => parseDeploymentConfig({ jobs: { cleanup: { vcpus: 0.25, memoryMiB: 512, timeoutMinutes: 30, attempts: 11 } } }),
      /jobs\.cleanup\.attempts/,
    );
  });

  it('refuses an SES identity the pipelines sender does not belong to', () => {
    const d = parseDeploymentConfig({ email: { identity: 'other.example.org' } });
    assert.throws(
      () => checkAgainstPipelines(d, loadPipelinesConfig()),
      /email\.identity: the pipelines config's sender "batch-fanout@example\.com"/,
    );
  });

  it('accepts a domain identity the sender belongs to', () => {
    const d = parseDeploymentConfig({ email: { identity: 'example.com' } });
    assert.equal(checkAgainstPipelines(d, loadPipelinesConfig()), 'example.com');
  });

  it('fails synth with the field named when the config is bad', () => {
    const bad: DeploymentInput = { email: { identity: 'elsewhere.org' } };
    assert.throws(
      () =>
        buildFanoutApp(new App({ context: { ...FANOUT_APP_CONTEXT } }), {
          pipelines: loadPipelinesConfig(),
          deployment: parseDeploymentConfig(bad),
          projectRoot,
        }),
      /email\.identity/,
    );
  });

  it('refuses OSRM map data that is neither an extract nor a prepared archive', () => {
    assert.throws(
      () => parseDeploymentConfig({ osrm: { enabled: true, extractKey: 'osrm/berlin.zip' } }),
      /osrm\.extractKey: must name a \.osm\.pbf extract or a \.tar.*\(got "osrm\/berlin\.zip"\)/,
    );
  });

  it("refuses an OSRM idle timeout beyond the load balancer's 4000 seconds", () => {
    assert.throws(() => parseDeploymentConfig({ osrm: { idleTimeoutMinutes: 67 } }), /osrm\.idleTimeoutMinutes.*got 67/s);
  });
});
