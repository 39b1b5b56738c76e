/**
 * A deployment of 50 pipelines synthesizes: the handlers' environment no longer grows with the
 * pipelines (each pipeline's queue and job definitions are in its own SSM parameter), and the
 * compute stack stays within CloudFormation's limits (500 resources, a 1 MB template).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pipelinesConfig } from '../../config/pipelines';
import type { AppConfigInput } from '../../runtime/config/schema';
import { buildApp } from './fixture';

const PIPELINES = 50;

describe('a deployment of 50 pipelines', () => {
  // given 50 lookup pipelines with long names, half on EC2 Spot, each with its own credential
  const base = pipelinesConfig.pipelines.find((p) => p.name === 'tax-due')!;
  if (base.task.type !== 'http-lookup') throw new Error('tax-due is an http-lookup pipeline');
  const pipelines: AppConfigInput = {
    ...pipelinesConfig,
    pipelines: Array.from({ length: PIPELINES }, (_, i) => ({
      ...base,
      name: `customer-lookup-pipeline-number-${String(i).padStart(2, '0')}`,
      compute: i % 2 === 0 ? ('fargate-spot' as const) : ('ec2-spot' as const),
      task: { ...base.task, credential: { secretName: `batch-fanout/pipeline-${i}/token`, env: 'TAX_API_TOKEN' } },
    })),
  };

  // when the app is synthesized
  const built = buildApp({ pipelines, bundling: false });
  const resources = built.compute.toJSON().Resources as Record<string, { Type: string; Properties?: Record<string, any> }>;

  it('stays within 500 resources, a 1 MB template (without whitespace) and 10 managed policies per role', () => {
    const count = Object.keys(resources).length;
    assert.ok(count < 500, `${count} resources`);
    const file = JSON.parse(readFileSync(join(built.outdir, `${built.stacks.compute.stackName}.template.json`), 'utf8')) as unknown;
    const bytes = Buffer.byteLength(JSON.stringify(file));
    assert.ok(bytes < 1_000_000, `${bytes} bytes`);
    // CDK moves what does not fit a role's inline policy into managed "overflow" policies; IAM attaches at most 10 by default.
    const overflow = new Map<string, number>();
    for (const [id, r] of Object.entries(resources)) {
      if (r.Type === 'AWS::IAM::ManagedPolicy')
        overflow.set(id.replace(/OverflowPolicy.*$/, ''), (overflow.get(id.replace(/OverflowPolicy.*$/, '')) ?? 0) + 1);
    }
    for (const [role, n] of overflow) assert.ok(n <= 10, `${role}: ${n} managed policies`);
  });

  it('gives the handlers an environment that does not grow with the pipelines', () => {
    for (const fn of Object.values(resources).filter(
      (r) => r.Type === 'AWS::Lambda::Function' && r.Properties?.Handler === 'index.handler',
    )) {
      const size = JSON.stringify(fn.Properties?.Environment?.Variables ?? {}).length;
      assert.ok(size < 1_500, `${size} characters of environment (unresolved)`);
    }
  });

  it('writes one job-targets parameter per pipeline', () => {
    const names = Object.values(resources)
      .filter((r) => r.Type === 'AWS::SSM::Parameter')
      .map((r) => String(r.Properties?.Name));
    assert.equal(names.length, PIPELINES);
    assert.ok(names.includes('/batch-fanout-compute/job-targets/customer-lookup-pipeline-number-49'));
  });

  it('shares one execution role among the definitions that read no secret; each fan-out reads only its own secret', () => {
    const defs = Object.entries(resources).filter(
      ([id, r]) => r.Type === 'AWS::Batch::JobDefinition' && id.startsWith('Pipelinecustomerlookuppipelinenumber07'),
    );
    assert.equal(defs.length, 4);
    const roles = new Set(defs.map(([, r]) => JSON.stringify(r.Properties?.ContainerProperties?.ExecutionRoleArn)));
    assert.equal(roles.size, 2);
    const policy = Object.entries(resources).find(
      ([id, r]) => r.Type === 'AWS::IAM::Policy' && id.startsWith('Pipelinecustomerlookuppipelinenumber07FanoutExecutionRole'),
    );
    assert.ok(policy);
    const text = JSON.stringify(policy[1].Properties?.PolicyDocument);
    assert.match(text, /batch-fanout\/pipeline-7\/token/);
    assert.doesNotMatch(text, /pipeline-8\/token/);
  });
});
