/**
 * The parts of the local twin that decide what AWS would do: Batch's retry decision, EventBridge
 * pattern matching, and reading the synthesized templates (an uninterpretable one names the resource).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { matchesEventPattern } from '../../../local/twin/event-pattern';
import { evaluate, iamRequestsFor, resourceClass } from '../../../local/twin/iam';
import { globMatches, shouldRetry } from '../../../local/twin/retry-strategy';
import { PLACEHOLDER_ORIGIN, synthKey, withPlaceholderOrigins } from '../../../local/twin/synth';
import { readTwinModel, TemplateError, type AppTemplates, type CfnTemplate } from '../../../local/twin/template';
import { PROJECT_ROOT } from '../../../local/local-run';
import { taxConfig } from '../../e2e/fixtures';

const names = { account: '123456789012', region: 'us-east-1', bucket: 'b', table: 't' };
const strategy = {
  attempts: 3,
  evaluateOnExit: [
    { action: 'RETRY' as const, onStatusReason: 'Your Spot Task was interrupted*' },
    { action: 'EXIT' as const, onExitCode: '10' },
    { action: 'RETRY' as const, onExitCode: '*' },
  ],
};

describe('retry strategy (as AWS Batch documents it)', () => {
  it('matches a glob exactly, or by prefix when it ends with *', () => {
    assert.ok(globMatches('10', '10'));
    assert.ok(!globMatches('10', '100'));
    assert.ok(globMatches('1*', '100'));
    assert.ok(globMatches('*', '0'));
    assert.ok(!globMatches('*', undefined));
  });

  it('lets the first matching condition decide', () => {
    // a Spot interruption with exit code 10 matches the RETRY rule first
    assert.equal(shouldRetry(strategy, { exitCode: 10, statusReason: 'Your Spot Task was interrupted.' }, 1).retry, true);
    assert.equal(shouldRetry(strategy, { exitCode: 10, statusReason: 'Essential container in task exited' }, 1).retry, false);
    assert.equal(shouldRetry(strategy, { exitCode: 20, statusReason: 'Essential container in task exited' }, 1).retry, true);
  });

  it('retries when no condition matches, and never past the attempts or after a timeout', () => {
    assert.equal(shouldRetry({ attempts: 3, evaluateOnExit: [{ action: 'EXIT', onExitCode: '10' }] }, { exitCode: 1 }, 1).retry, true);
    assert.equal(shouldRetry(strategy, { exitCode: 20 }, 3).retry, false);
    assert.equal(
      shouldRetry(strategy, { exitCode: 143, statusReason: 'Job attempt duration exceeded timeout', timedOut: true }, 1).retry,
      false,
    );
  });
});

describe('event patterns', () => {
  const pattern = {
    source: ['aws.batch'],
    'detail-type': ['Batch Job State Change'],
    detail: { status: ['FAILED'], jobQueue: ['arn:q1'] },
  };
  const event = (detail: Record<string, unknown>) => ({ source: 'aws.batch', 'detail-type': 'Batch Job State Change', detail });

  it('matches a failed job of a listed queue only', () => {
    assert.ok(matchesEventPattern(pattern, event({ status: 'FAILED', jobQueue: 'arn:q1' })));
    assert.ok(!matchesEventPattern(pattern, event({ status: 'FAILED', jobQueue: 'arn:other' })), 'another queue');
    assert.ok(!matchesEventPattern(pattern, event({ status: 'SUCCEEDED', jobQueue: 'arn:q1' })));
    assert.ok(!matchesEventPattern(pattern, event({ status: 'FAILED' })), 'no queue');
  });

  it('supports prefix, anything-but and exists', () => {
    assert.ok(matchesEventPattern({ detail: { jobName: [{ prefix: 'fanout-' }] } }, { detail: { jobName: 'fanout-x' } }));
    assert.ok(!matchesEventPattern({ detail: { status: [{ 'anything-but': ['FAILED'] }] } }, { detail: { status: 'FAILED' } }));
    assert.ok(matchesEventPattern({ detail: { reason: [{ exists: false }] } }, { detail: {} }));
  });
});

function templates(compute: CfnTemplate): AppTemplates {
  return { data: { stackName: 'd', template: { Resources: {} } }, compute: { stackName: 'c', template: compute } };
}

describe('reading the synthesized templates', () => {
  it('names the resource and property it cannot interpret', () => {
    const bad = templates({
      Resources: {
        Def1: {
          Type: 'AWS::Batch::JobDefinition',
          Properties: { Type: 'container', ContainerProperties: { Command: ['split'], ResourceRequirements: [] } },
        },
      },
    });
    assert.throws(
      () => readTwinModel(bad, names),
      (err: unknown) => err instanceof TemplateError && /job definition Def1.*VCPU and MEMORY/.test(err.message),
    );
    const unresolvable = templates({
      Resources: { P: { Type: 'AWS::SSM::Parameter', Properties: { Value: { 'Fn::GetAtt': ['Missing', 'Arn'] } } } },
    });
    assert.throws(
      () => readTwinModel(unresolvable, names),
      (err: unknown) => err instanceof TemplateError && /c P \(AWS::SSM::Parameter\) Properties.*Missing/.test(err.message),
    );
  });

  it("reads a job definition's retry rules, timeout, size and command", () => {
    const m = readTwinModel(
      templates({
        Resources: {
          Def1: {
            Type: 'AWS::Batch::JobDefinition',
            Properties: {
              Type: 'container',
              PlatformCapabilities: ['FARGATE'],
              ContainerProperties: {
                Command: ['fanout'],
                ResourceRequirements: [
                  { Type: 'VCPU', Value: '1' },
                  { Type: 'MEMORY', Value: '2048' },
                ],
                Environment: [{ Name: 'REGION', Value: { Ref: 'AWS::Region' } }],
              },
              RetryStrategy: { Attempts: 5, EvaluateOnExit: [{ Action: 'EXIT', OnExitCode: '11' }] },
              Timeout: { AttemptDurationSeconds: 600 },
            },
          },
        },
      }),
      names,
    );
    const def = [...m.jobDefinitions.values()][0]!;
    assert.deepEqual(
      {
        command: def.command,
        env: def.environment,
        attempts: def.attempts,
        rules: def.evaluateOnExit,
        timeout: def.timeoutSeconds,
        vcpus: def.vcpus,
        mem: def.memoryMiB,
        platform: def.platform,
      },
      {
        command: ['fanout'],
        env: { REGION: 'us-east-1' },
        attempts: 5,
        rules: [{ action: 'EXIT', onExitCode: '11' }],
        timeout: 600,
        vcpus: 1,
        mem: 2048,
        platform: 'FARGATE',
      },
    );
    assert.equal(def.arn, 'arn:aws:batch:us-east-1:123456789012:job-definition/Def1:1');
  });
});

describe('IAM requests of SDK calls', () => {
  const model = readTwinModel(templates({ Resources: {} }), names);
  it('authorizes a listing as s3:ListBucket on the bucket with its prefix, and SubmitJob on queue, definition and tags', () => {
    assert.deepEqual(
      iamRequestsFor(model, { client: 'S3Client', command: 'ListObjectsV2Command', input: { Bucket: 'b', Prefix: 'work/r/' } }),
      [{ action: 's3:ListBucket', resource: 'arn:aws:s3:::b', context: { 's3:prefix': 'work/r/' } }],
    );
    const submit = iamRequestsFor(model, {
      client: 'BatchClient',
      command: 'SubmitJobCommand',
      input: { jobQueue: 'arn:q', jobDefinition: 'arn:d', tags: ['k'] },
    });
    assert.deepEqual(
      submit.map((r) => `${r.action} ${r.resource}`),
      ['batch:SubmitJob arn:q', 'batch:SubmitJob arn:d', 'batch:TagResource arn:aws:batch:us-east-1:123456789012:job/twin-new-job'],
    );
  });
  it('evaluates S3 keys that match the same policy patterns once, and keys that match others apart', async () => {
    // given a role that may put under work/ but not under work/secret/
    const withRole = readTwinModel(
      templates({
        Resources: {
          Role: { Type: 'AWS::IAM::Role', Properties: {} },
          Policy: {
            Type: 'AWS::IAM::Policy',
            Properties: {
              Roles: [{ Ref: 'Role' }],
              PolicyDocument: {
                Version: '2012-10-17',
                Statement: [
                  { Effect: 'Allow', Action: 's3:PutObject', Resource: 'arn:aws:s3:::b/work/*' },
                  { Effect: 'Deny', Action: 's3:PutObject', Resource: 'arn:aws:s3:::b/work/secret/*' },
                ],
              },
            },
          },
        },
      }),
      names,
    );
    const role = 'arn:aws:iam::123456789012:role/Role';
    const key = (k: string) => resourceClass(withRole, role, `arn:aws:s3:::b/${k}`);
    // then two parts of a run share a class, a key under work/secret/ or results/ does not
    assert.equal(key('work/r/results/0/1.jsonl'), key('work/r2/results/7/12.jsonl'));
    assert.notEqual(key('work/r/results/0/1.jsonl'), key('work/secret/x'));
    assert.notEqual(key('work/r/results/0/1.jsonl'), key('results/x'));
    assert.equal(
      resourceClass(withRole, role, 'arn:aws:sns:us-east-1:1:t'),
      'arn:aws:sns:us-east-1:1:t',
      'other ARNs stand for themselves',
    );
    // and the classes' answers are IAM's for each of their keys
    const put = (k: string) => evaluate(withRole, role, { action: 's3:PutObject', resource: `arn:aws:s3:::b/${k}` });
    assert.deepEqual(await Promise.all(['work/r/1', 'work/r2/9', 'work/secret/x', 'results/x'].map(put)), [
      'Allowed',
      'Allowed',
      'ExplicitlyDenied',
      'ImplicitlyDenied',
    ]);
  });

  it('refuses a call it has no mapping for, naming it', () => {
    assert.throws(
      () => iamRequestsFor(model, { client: 'S3Client', command: 'PutBucketPolicyCommand', input: {} }),
      /S3Client PutBucketPolicyCommand/,
    );
  });
});

describe('the synth cache key', () => {
  it("is the same for configs that differ only in a data source's origin, and differs otherwise", async () => {
    const key = (url: string, chunkSize = 10) =>
      synthKey({ projectRoot: PROJECT_ROOT, config: withPlaceholderOrigins(taxConfig(url, { chunkSize })) });
    const a = withPlaceholderOrigins(taxConfig('http://127.0.0.1:40001'));
    const task = a.pipelines[0]!.shape === 'items' ? a.pipelines[0]!.task : undefined;
    assert.ok(task?.type === 'http-lookup' && task.url.startsWith(`${PLACEHOLDER_ORIGIN}/`), 'the origin is replaced, the path kept');
    assert.equal(await key('http://127.0.0.1:40001'), await key('http://127.0.0.1:40002'));
    assert.notEqual(await key('http://127.0.0.1:40001'), await key('http://127.0.0.1:40001', 20), 'another chunk size is another config');
  });
});
