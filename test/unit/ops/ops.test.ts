/**
 * The operating commands' AWS calls, as they are serialized: Batch TerminateJob / CancelJob of a
 * cancel (the run record on the real DynamoDB emulator, Batch captured), CloudFormation
 * DescribeStacks of `--stack` (captured), with the messages for a stack that is not deployed and
 * for missing credentials; and `fanout estimate` of the demo file.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BatchClient } from '@aws-sdk/client-batch';
import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { join } from 'node:path';
import { DynamoRunTable } from '../../../runtime/adapters/dynamo-run-table';
import { cancelRun } from '../../../bin/ops/runs';
import { planRedrive, startRedrive } from '../../../bin/ops/redrive';
import { createOutcomesArchive } from '../../../batch-jobs/stages/outcomes-archive';
import { S3ObjectStore } from '../../../runtime/adapters/s3-object-store';
import type { SplitDoneMessage } from '../../../runtime/ports';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { describeAwsFailure, openTarget } from '../../../bin/ops/target';
import { estimate, loadPrices, readFileShape } from '../../../bin/ops/estimate';
import { loadPipelinesConfig } from '../../../config/pipelines';
import { requireShape } from '../../../runtime/config/schema';
import { PROJECT_ROOT } from '../../../local/local-run';
import { capturingClient, startEmulatorFixture, type EmulatorFixture } from '../adapters/fixtures';
import { fanoutInProcess, jsonOf } from '../../e2e/ops-helpers';

let fx: EmulatorFixture;
before(async () => {
  fx = await startEmulatorFixture();
});
after(async () => {
  await fx.close();
});

describe('fanout cancel', () => {
  it('ends the run CANCELLED, terminates split and fan-out, cancels consolidate and cleanup', async () => {
    const table = new DynamoRunTable(fx.clients.dynamo, fx.emu.table);
    const config = requireShape(loadPipelinesConfig().pipelines[0]!, 'items');
    await table.createRun({
      runId: 'run-1',
      pipeline: 'tax-due',
      inputKey: 'intake/tax-due/a.csv',
      inputName: 'a.csv',
      status: 'FANNING_OUT',
      config,
      sender: 'a@example.com',
      createdAt: 1,
      steps: { split: 'job-split', chain: 'submitted', fanout: 'job-fanout', consolidate: 'job-consolidate', cleanup: 'job-cleanup' },
    });
    const { client, requests } = capturingClient(BatchClient, { body: '{}' });
    const outcome = await cancelRun(table, client, 'run-1', 'test', { who: 'alice', now: Date.UTC(2026, 11, 1) });
    assert.deepEqual(outcome, { runId: 'run-1', terminated: ['job-split', 'job-fanout'], cancelled: ['job-consolidate', 'job-cleanup'] });
    assert.deepEqual(
      requests.map((r) => [r.method, r.path, JSON.parse(r.body)]),
      [
        ['POST', '/v1/terminatejob', { jobId: 'job-split', reason: 'fanout cancel of run run-1 by alice' }],
        ['POST', '/v1/terminatejob', { jobId: 'job-fanout', reason: 'fanout cancel of run run-1 by alice' }],
        ['POST', '/v1/canceljob', { jobId: 'job-consolidate', reason: 'fanout cancel of run run-1 by alice' }],
        ['POST', '/v1/canceljob', { jobId: 'job-cleanup', reason: 'fanout cancel of run run-1 by alice' }],
      ],
    );
    const run = await table.getRun('run-1');
    assert.equal(run?.status, 'CANCELLED');
    assert.equal(run?.error, 'Cancelled by alice with fanout cancel at 2026-12-01T00:00:00.000Z.');
    assert.ok(run?.steps?.cancel);
    await assert.rejects(cancelRun(table, client, 'run-1', 'test', { who: 'alice' }), /has already ended \(CANCELLED\); nothing to cancel/);
    await assert.rejects(cancelRun(table, client, 'nope', 'the test table', { who: 'alice' }), /no run nope in the test table/);
    assert.equal(requests.length, 4, 'nothing more was terminated');
  });
});

describe('fanout redrive', () => {
  it('keeps the redrive run as long as the first run was kept, and redoes only its failed item', async () => {
    const table = new DynamoRunTable(fx.clients.dynamo, fx.emu.table);
    const store = new S3ObjectStore(fx.clients.s3, fx.emu.bucket);
    const config = requireShape(loadPipelinesConfig().pipelines[0]!, 'items');
    const createdAt = Date.UTC(2026, 10, 1);
    const dir = await mkdtemp(join(tmpdir(), 'redrive-retention-'));
    try {
      const archive = createOutcomesArchive(dir);
      await archive.add({ i: 0, r: [2], d: [{ id: '1' }] }, { i: 0, s: 'done', a: 1 });
      await archive.add({ i: 1, r: [3], d: [{ id: '2' }] }, { i: 1, s: 'failed', e: 'source said 503', a: 3 });
      const outcomesKey = await archive.finish(store, 'history/run-7d/outcomes.jsonl.gz');
      await table.createRun({
        runId: 'run-7d',
        pipeline: 'tax-due',
        inputKey: 'intake/tax-due/a.csv',
        inputName: 'a.csv',
        status: 'FAILED',
        config,
        sender: 'a@example.com',
        createdAt,
        // A stack deployed with runRetentionDays 7, not the default.
        expiresAt: createdAt / 1000 + 7 * 86_400,
        outcomesKey,
      });
      const plan = await planRedrive(store, table, 'run-7d', 'test');
      assert.deepEqual([plan.redo, plan.badInput], [1, 0]);
      const announced: SplitDoneMessage[] = [];
      const now = Date.UTC(2026, 11, 1);
      const runId = await startRedrive({ store, table, notifier: { publishSplitDone: async (m) => void announced.push(m) } }, plan, {
        now,
        fallbackRetentionDays: 90,
      });
      const run = await table.getRun(runId);
      assert.equal(run?.redriveOf, 'run-7d');
      assert.equal(run?.expiresAt, Math.floor(now / 1000) + 7 * 86_400);
      assert.equal(announced.length, 1);
      assert.deepEqual(
        (await table.getChunks(runId, 1)).map((c) => c.items),
        [1],
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('--stack', () => {
  it('finds the bucket, table and topic in the stacks outputs', async () => {
    const body = (outputs: Record<string, string>) =>
      `<DescribeStacksResponse><DescribeStacksResult><Stacks><member><StackName>s</StackName><CreationTime>2026-01-01T00:00:00Z</CreationTime><StackStatus>CREATE_COMPLETE</StackStatus><Outputs>${Object.entries(
        outputs,
      )
        .map(([k, v]) => `<member><OutputKey>${k}</OutputKey><OutputValue>${v}</OutputValue></member>`)
        .join('')}</Outputs></member></Stacks></DescribeStacksResult></DescribeStacksResponse>`;
    const { client, requests } = capturingClient(CloudFormationClient, {
      body: body({ PipelineBucketName: 'bkt', RunTableName: 'tbl', SplitDoneTopicArn: 'arn:aws:sns:us-east-1:1:t' }),
    });
    const target = await openTarget({ stack: 'acme', env: { AWS_REGION: 'us-east-1' }, cloudFormation: client });
    assert.equal(target.store.bucket, 'bkt');
    assert.equal(target.table.tableName, 'tbl');
    assert.equal(target.describe, 'stack acme (us-east-1)');
    assert.deepEqual(requests.map((r) => new URLSearchParams(r.body).get('StackName')).sort(), ['acme-compute', 'acme-data']);
    assert.ok(requests.every((r) => new URLSearchParams(r.body).get('Action') === 'DescribeStacks'));
  });

  it('says when the stack is not deployed, and when credentials are missing', async () => {
    const { client } = capturingClient(CloudFormationClient, {
      statusCode: 400,
      body: '<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code><Message>Stack with id acme-data does not exist</Message></Error></ErrorResponse>',
    });
    await assert.rejects(
      openTarget({ stack: 'acme', env: { AWS_REGION: 'eu-west-1' }, cloudFormation: client }),
      /stack acme-(data|compute) is not deployed in eu-west-1/,
    );
    const noCreds = Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' });
    assert.match(
      describeAwsFailure(noCreds, 'acme-data', 'eu-west-1').message,
      /no AWS credentials found for stack acme-data: set AWS_PROFILE/,
    );
    assert.equal(describeAwsFailure(noCreds, 'acme-data', 'eu-west-1').exitCode, 2);
  });
});

describe('fanout estimate', () => {
  it('reads the demo file as split does and prices the run', async () => {
    const pipeline = requireShape(loadPipelinesConfig().pipelines.find((p) => p.name === 'tax-due')!, 'items');
    const file = join(PROJECT_ROOT, 'examples', 'tax-due', 'customers.xlsx');
    const shape = await readFileShape(file, pipeline);
    assert.deepEqual([shape.rows, shape.items, shape.chunks, shape.invalidItems], [2400, 2400, 5, 3]);
    const prices = await loadPrices();
    const quiet = estimate(shape, pipeline, prices, {
      latency: { meanMs: 100, transientShare: 0, source: 't' },
      parallel: 5,
      childStartSeconds: 0,
    });
    // 500 items a chunk at 64 in flight, 100 ms a call: 0.78 s, plus one call.
    assert.equal(quiet.fanout.boundBy, 'latency');
    assert.equal(quiet.fanout.wallSeconds, 0.9);
    // On Fargate Spot (the pipeline's compute) each wave first waits for its tasks to start: 2 waves of 3.
    const started = estimate(shape, pipeline, prices, { latency: { meanMs: 100, transientShare: 0, source: 't' }, parallel: 3 });
    assert.equal(started.fanout.startSeconds, 45);
    assert.equal(started.fanout.wallSeconds, 2 * (45 + 0.9));
    // With concurrency "auto" (here at most 64), 2.4% of calls refused with Retry-After 1 s: 64 in
    // flight see one in 1 - 0.976^64 of the rounds, and then all wait 1 s more; 8% retried in all,
    // so 500 / 0.92 calls a chunk.
    const paused = estimate(shape, { ...pipeline, concurrency: 'auto', maxConcurrency: 64 }, prices, {
      latency: { meanMs: 100, transientShare: 0.08, pausedShare: 0.024, retryAfterMs: 1000, source: 't' },
      parallel: 5,
      childStartSeconds: 0,
    });
    const perChild = 64 / (0.1 + (1 - 0.976 ** 64) * 1);
    assert.equal(paused.fanout.perChildCallsPerSecond, Math.round(perChild * 10) / 10);
    assert.ok(Math.abs(paused.fanout.wallSeconds - (500 / 0.92 / perChild + paused.fanout.tailSeconds + 0.1)) < 0.1);
    // With the pipeline's fixed 64, only the refused item waits, keeping its place: per item 1/0.92
    // calls of 0.1 s, and 0.08/0.92 failures each waiting 1 s (30% of them: the 429s) or the first
    // back-off, 0.1 s (the rest).
    const fixed = estimate(shape, pipeline, prices, {
      latency: { meanMs: 100, transientShare: 0.08, pausedShare: 0.024, retryAfterMs: 1000, source: 't' },
      parallel: 5,
      childStartSeconds: 0,
    });
    const itemSeconds = 0.1 / 0.92 + (1 / 0.92 - 1) * (0.3 * 1 + 0.7 * 0.1);
    assert.equal(fixed.fanout.perChildCallsPerSecond, Math.round((64 / 0.92 / itemSeconds) * 10) / 10);
    assert.ok(fixed.fanout.wallSeconds < paused.fanout.wallSeconds, 'a fixed limit does not hold every call for a refusal');
    const limited = estimate(shape, { ...pipeline, rateLimitPerSecond: 50 }, prices, {
      latency: { meanMs: 100, transientShare: 0, source: 't' },
      parallel: 5,
      childStartSeconds: 0,
    });
    assert.equal(limited.fanout.boundBy, 'rate limit');
    assert.equal(limited.fanout.callsPerSecond, 50);
    assert.equal(limited.fanout.wallSeconds, 50.1, '500 items at 10/s per child, plus one call');
    const b = limited.cost.batch;
    assert.ok(Math.abs(b.total - (b.compute + b.s3 + b.dynamodb + b.lambda + b.ses)) < 1e-3);
    assert.equal(limited.cost.prices.date, prices.date);

    const cli = await fanoutInProcess(['estimate', file, '--pipeline', 'tax-due', '--latency-ms', '100', '--json']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(jsonOf<{ file: { items: number } }>(cli).file.items, 2400);
    const flags = await fanoutInProcess([
      'estimate',
      file,
      '--pipeline',
      'tax-due',
      '--latency-ms',
      '100',
      '--failure-rate',
      '0.08',
      '--retry-after-rate',
      '0.024',
      '--start-seconds',
      '0',
      '--parallel',
      '5',
      '--json',
    ]);
    assert.equal(flags.code, 0, flags.stderr);
    // The flags reach the model: the same figures as the call above.
    assert.deepEqual(jsonOf<{ fanout: unknown }>(flags).fanout, fixed.fanout);
    const tooMany = await fanoutInProcess([
      'estimate',
      file,
      '--pipeline',
      'tax-due',
      '--failure-rate',
      '0.01',
      '--retry-after-rate',
      '0.02',
    ]);
    assert.equal(tooMany.code, 2);
    assert.match(tooMany.stderr, /--retry-after-rate must be in \[0, --failure-rate\]/);
    const text = await fanoutInProcess(['estimate', file, '--pipeline', 'tax-due', '--latency-ms', '100']);
    assert.match(text.stdout, /per-item CPU: 0\.2 ms \(bench\/fanout-stage\.ts/);
    assert.match(text.stdout, /prices us-east-1 as of \d{4}-\d\d-\d\d from config\/prices\.json/);
    assert.match(text.stdout, /Step Functions Distributed Map \+ Lambda \(ItemBatcher of 500/);
    const bad = await fanoutInProcess(['estimate', file, '--pipeline', 'nope']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /no pipeline "nope"/);
  });
});
