import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Capture, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { addComplianceChecks } from '../../lib/compliance';
import { OsrmService, osrmStartScript, type OsrmServiceProps } from '../../lib/osrm-service';
import { readValidationReport } from './fixture';

const env = { account: '111111111111', region: 'eu-west-1' };

/** A data stack with the bucket and a compute stack with the VPC and the service. */
function build(props: Partial<OsrmServiceProps> = {}, app = new App({ builtinCloudFormationValidation: false })) {
  const data = new Stack(app, 'Data', { env });
  const bucket = new s3.Bucket(data, 'PipelineBucket', {
    encryptionKey: new kms.Key(data, 'DataKey', { enableKeyRotation: true }),
    enforceSSL: true,
  });
  const stack = new Stack(app, 'Compute', { env });
  const vpc = new ec2.Vpc(stack, 'Vpc', { natGateways: 1, maxAzs: 2 });
  const osrm = new OsrmService(stack, 'OsrmService', { vpc, dataBucket: bucket, extractKey: 'osrm/berlin-latest.osm.pbf', ...props });
  return { app, stack, bucket, vpc, osrm, template: () => Template.fromStack(stack) };
}

describe('OsrmService', () => {
  it('puts an internal load balancer with a 15-minute idle timeout in front of the service', () => {
    const { template } = build();
    template().hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      Scheme: 'internal',
      LoadBalancerAttributes: Match.arrayWith([
        { Key: 'idle_timeout.timeout_seconds', Value: '900' },
        { Key: 'routing.http.drop_invalid_header_fields.enabled', Value: 'true' },
      ]),
    });
  });

  it('takes the idle timeout from props', () => {
    const { template } = build({ idleTimeout: Duration.minutes(45) });
    template().hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      LoadBalancerAttributes: Match.arrayWith([{ Key: 'idle_timeout.timeout_seconds', Value: '2700' }]),
    });
  });

  it('listens on HTTP 80 and forwards to osrm-routed on 5000, health-checked with a nearest query', () => {
    const { template } = build();
    template().hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      Port: 80,
      Protocol: 'HTTP',
      DefaultActions: [Match.objectLike({ Type: 'forward' })],
    });
    template().hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      Port: 5000,
      Protocol: 'HTTP',
      TargetType: 'ip',
      HealthCheckPath: '/nearest/v1/driving/0,0',
      Matcher: { HttpCode: '200,400' },
    });
  });

  it('lets only the VPC reach the load balancer', () => {
    const { template } = build();
    template().hasResourceProperties('AWS::EC2::SecurityGroup', {
      GroupDescription: 'OSRM load balancer: match requests from inside the VPC',
      SecurityGroupIngress: [
        Match.objectLike({ CidrIp: { 'Fn::GetAtt': [Match.stringLikeRegexp('^Vpc'), 'CidrBlock'] }, FromPort: 80, ToPort: 80 }),
      ],
    });
  });

  it('fetches the extract, prepares it for MLD and runs osrm-routed with the matching size', () => {
    const { template } = build({ maxMatchingSize: 250, profile: 'bicycle' });
    const command = new Capture();
    const fetchCommand = new Capture();
    template().hasResourceProperties('AWS::ECS::TaskDefinition', {
      Cpu: '2048',
      Memory: '8192',
      EphemeralStorage: { SizeInGiB: 50 },
      ContainerDefinitions: [
        Match.objectLike({ Name: 'fetch-extract', Essential: false, Command: fetchCommand, ReadonlyRootFilesystem: true }),
        Match.objectLike({
          Name: 'osrm',
          Essential: true,
          EntryPoint: ['/bin/sh', '-c'],
          Command: [command],
          DependsOn: [{ ContainerName: 'fetch-extract', Condition: 'SUCCESS' }],
          PortMappings: [Match.objectLike({ ContainerPort: 5000 })],
          ReadonlyRootFilesystem: true,
        }),
      ],
    });
    const script = command.asString();
    assert.match(script, /osrm-extract -p '\/opt\/bicycle\.lua' 'berlin-latest\.osm\.pbf'/);
    assert.match(script, /osrm-partition 'berlin-latest\.osrm'\nosrm-customize 'berlin-latest\.osrm'/);
    assert.match(script, /exec osrm-routed --algorithm mld --port 5000 --max-matching-size 250 'berlin-latest\.osrm'$/);
    const fetch = fetchCommand.asArray();
    assert.deepEqual(fetch.slice(0, 2), ['s3', 'cp']);
    assert.equal(fetch.at(-1), '/data/berlin-latest.osm.pbf');
  });

  it('unpacks a prepared archive instead of preparing', () => {
    const script = osrmStartScript('germany.tar.gz', 'car', 100);
    assert.match(script, /tar -xf 'germany\.tar\.gz'/);
    assert.doesNotMatch(script, /osrm-extract/);
    assert.match(script, /exec osrm-routed --algorithm mld --port 5000 --max-matching-size 100 "\$\{base%\.mldgr\}"$/);
  });

  it('grants read of the extract object only, and decryption with the bucket key', () => {
    const { template } = build();
    const statements = new Capture();
    template().hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: Match.stringLikeRegexp('^OsrmServiceTaskTaskRole') }],
      PolicyDocument: { Statement: statements },
    });
    const list = statements.asArray() as { Action: string | string[]; Resource: unknown }[];
    const s3Statements = list.filter((s) => [s.Action].flat().some((a) => a.startsWith('s3:')));
    assert.equal(s3Statements.length, 1);
    assert.equal(s3Statements[0].Action, 's3:GetObject');
    assert.match(JSON.stringify(s3Statements[0].Resource), /"\/osrm\/berlin-latest\.osm\.pbf"\]/);
    assert.ok(list.some((s) => s.Action === 'kms:Decrypt'));
  });

  it('keeps encrypted logs with a retention, and rolls back a failed deployment', () => {
    const { template } = build();
    template().hasResourceProperties('AWS::Logs::LogGroup', {
      RetentionInDays: 365,
      KmsKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^OsrmServiceLogKey'), 'Arn'] },
    });
    template().hasResourceProperties('AWS::ECS::Service', {
      LaunchType: 'FARGATE',
      HealthCheckGracePeriodSeconds: 1800,
      DeploymentConfiguration: Match.objectLike({ DeploymentCircuitBreaker: { Enable: true, Rollback: true } }),
      NetworkConfiguration: { AwsvpcConfiguration: Match.objectLike({ AssignPublicIp: 'DISABLED' }) },
    });
  });

  it('exposes an http URL on the load balancer, or https on the given name', () => {
    const { osrm, stack } = build();
    assert.match(stack.resolve(osrm.url)['Fn::Join'][1][0], /^http:\/\//);
    const https = build({
      certificate: elbv2.ListenerCertificate.fromArn('arn:aws:acm:eu-west-1:111111111111:certificate/abc'),
      domainName: 'osrm.internal.example.com',
    });
    assert.equal(https.osrm.url, 'https://osrm.internal.example.com');
    https.template().hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', { Port: 443, Protocol: 'HTTPS' });
  });

  it('rejects bad props, naming every problem', () => {
    assert.throws(
      () => build({ extractKey: 'maps/berlin.zip', idleTimeout: Duration.hours(2), profile: 'Car!' }),
      /extractKey "maps\/berlin\.zip" must name a \.osm\.pbf extract.*profile "Car!".*idleTimeout must be 1-4000 seconds/,
    );
  });

  it('passes cdk-nag AwsSolutions and the cfn-guard Control Tower rules', () => {
    // given the app's compliance checks over a stack holding the service
    const outdir = mkdtempSync(join(tmpdir(), 'osrm-compliance-'));
    try {
      const app = new App({ outdir });
      addComplianceChecks(app);
      build({}, app);
      // when synthesized (the test's own VPC and bucket have findings, so synth fails)
      assert.throws(() => app.synth(), /Validation failed/);
      // then the report names no resource of the service
      const paths = readValidationReport(outdir).pluginReports.flatMap((r) =>
        r.violations.flatMap((v) => v.violatingConstructs.map((c) => `${v.ruleName} ${c.constructPath}`)),
      );
      assert.ok(
        paths.some((p) => p.includes('Compute/Vpc/')),
        'the report lists findings by construct path',
      );
      assert.deepEqual(
        paths.filter((p) => p.includes('/OsrmService/')),
        [],
      );
    } finally {
      rmSync(outdir, { recursive: true, force: true });
    }
  });
});
