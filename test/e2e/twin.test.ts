/**
 * The local run is the synthesized app's twin: a grant taken out of a synthesized policy fails the
 * run, naming the call, the principal and the missing permission; a retry rule changed in a job
 * definition is the rule the local runner follows; a Batch event the rule's pattern does not
 * match is not delivered.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDemoDataSource, type DemoDataSource } from '../../local/sources/demo-data-source';
import { runLocal, type LocalRunOptions } from '../../local/local-run';
import type { AppTemplates, CfnResource, Json } from '../../local/twin/template';
import { customers, taxConfig, TOKEN, writeCustomersCsv } from './fixtures';

let dir: string;
let source: DemoDataSource;
let file: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-twin-'));
  source = await startDemoDataSource({ port: 0, token: TOKEN, transientFailureRate: 0, latencyMs: [20, 40] });
  file = join(dir, 'customers.csv');
  await writeCustomersCsv(file, customers(30));
});
after(async () => {
  await source.close();
  await rm(dir, { recursive: true, force: true });
});

function run(name: string, extra: Partial<LocalRunOptions>) {
  return runLocal({
    file,
    pipeline: 'tax-due',
    config: taxConfig(source.url, { chunkSize: 10, concurrency: 1 }),
    outDir: join(dir, `out-${name}`),
    env: { TAX_API_TOKEN: TOKEN },
    ...extra,
  });
}

/** The compute stack's resource whose logical id starts with `prefix`. */
function resource(t: AppTemplates, prefix: string): CfnResource {
  const found = Object.entries(t.compute.template.Resources ?? {}).find(([id]) => id.startsWith(prefix));
  assert.ok(found, `a resource ${prefix}*`);
  return found[1];
}

describe('the local run as the twin of the synthesized app', () => {
  it('fails when a synthesized policy lacks a grant the code needs, naming the call, the principal and the permission', async () => {
    // given the split job role's policy without its sns:Publish statement
    const result = await run('no-publish', {
      editTemplates: (t) => {
        const doc = resource(t, 'SplitJobRoleDefaultPolicy').Properties!.PolicyDocument as { Statement: Array<Record<string, Json>> };
        const before = doc.Statement.length;
        doc.Statement = doc.Statement.filter((s) => s.Action !== 'sns:Publish');
        assert.equal(doc.Statement.length, before - 1);
      },
    });

    // then the run fails on the IAM check and says what is missing
    assert.equal(result.status, 'FAILED');
    assert.equal(result.iam.denied, 1);
    assert.ok(result.iam.calls > 20);
    assert.match(
      result.error ?? '',
      /SNS Publish by job split \(SplitJobRole[A-Z0-9]+\) was denied \(ImplicitlyDenied\): missing sns:Publish on arn:aws:sns:us-east-1:123456789012:SplitDoneTopic/,
    );
  });

  it('follows a retry rule changed in the job definition', async () => {
    // given fan-out's definition says EXIT (not RETRY) on a Fargate Spot interruption
    const result = await run('exit-on-reclaim', {
      editTemplates: (t) => {
        const strategy = resource(t, 'PipelinetaxdueFanoutDefinition').Properties!.RetryStrategy as {
          EvaluateOnExit: Array<Record<string, Json>>;
        };
        assert.equal(strategy.EvaluateOnExit[0]!.OnStatusReason, 'Your Spot Task was interrupted*');
        strategy.EvaluateOnExit[0]!.Action = 'EXIT';
      },
      // when the first fan-out child is reclaimed once it has done some items
      interrupt: (job, { index, attempt }, report) =>
        job.request.stage === 'fanout' && index === 0 && attempt === 1 && report.done >= 1 ? 'spot-reclaim' : undefined,
    });

    // then that child is not retried, and the run fails because of it
    const fanout = result.jobs.find((j) => j.request.stage === 'fanout')!;
    const child0 = fanout.attempts.filter((a) => a.index === 0);
    assert.equal(child0.length, 1, 'no second attempt');
    assert.equal(child0[0]!.statusReason, 'Your Spot Task was interrupted.');
    assert.match(child0[0]!.retryDecision ?? '', /EXIT/);
    assert.equal(fanout.state, 'FAILED');
    assert.equal(result.status, 'FAILED');
    assert.equal(result.iam.denied, 0, result.error);
  });

  it('does not deliver a Batch event the failed-jobs rule does not match', async () => {
    // given the rule matches another queue only
    const result = await run('rule-elsewhere', {
      editTemplates: (t) => {
        const pattern = resource(t, 'FailedJobsRule').Properties!.EventPattern as { detail: { jobQueue: Json } };
        pattern.detail.jobQueue = ['arn:aws:batch:us-east-1:123456789012:job-queue/SomeoneElses'];
      },
      // when fan-out fails for good (its attempts pass the timeout, which Batch does not retry)
      interrupt: (job) => (job.request.stage === 'fanout' ? 'timeout' : undefined),
    });

    // then no failure handler ran: the run is left as it was, with no failure email
    assert.equal(result.jobs.find((j) => j.request.stage === 'fanout')!.state, 'FAILED');
    assert.notEqual(result.run?.status, 'FAILED');
    assert.equal(result.mails.length, 0);
  });
});
