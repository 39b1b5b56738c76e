/**
 * The Lambda handlers' events as AWS delivers them (S3 notification, SNS notification, EventBridge
 * "Batch Job State Change"), parsed with their schemas (runtime/events.ts), against the real run
 * table and mail emulators: a malformed event is logged with what was wrong and dropped, without
 * throwing and without touching the run; the well-formed events beside it are still handled.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { handleS3Event } from '../../lambda/handlers/on-intake';
import { handleJobStateEvent } from '../../lambda/handlers/on-job-failed';
import { handleSplitDoneEvent } from '../../lambda/handlers/on-split-done';
import { startEmulators, type LocalEmulators } from '../../local/emulators';
import { createLogger } from '../../runtime/log';
import { createPorts } from '../../runtime/ports-factory';
import type { HandlerDeps } from '../../runtime/run/deps';
import { RecordingJobs, taxConfig } from './fixtures';

/** A job queue that records submissions (the port: the Batch adapter has its own tests). */
interface LogLine {
  level: string;
  message: string;
  problems?: string[];
  error?: string;
  event?: string;
}

let dir: string;
let emulators: LocalEmulators;
let deps: HandlerDeps & { jobs: RecordingJobs };
let logged: LogLine[];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-handler-events-'));
  emulators = await startEmulators({ dataDir: dir });
  const { store, table, mailer } = createPorts({ FANOUT_BUCKET: emulators.bucket, FANOUT_TABLE: emulators.table }, emulators.env);
  logged = [];
  deps = {
    config: taxConfig('http://127.0.0.1:9'),
    store,
    table,
    mailer,
    jobs: new RecordingJobs(),
    log: createLogger({ sink: (line) => logged.push(JSON.parse(line) as LogLine) }),
  };
});
after(async () => {
  await emulators.stop();
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
function s3Record(key = `intake/tax-due/events-${++n}.csv`) {
  return {
    eventTime: '2026-12-01T02:00:00.000Z',
    s3: { bucket: { name: emulators.bucket }, object: { key, size: 10, eTag: `etag-${n}`, sequencer: `00${n}` } },
  };
}

/** Opens a run through the S3 handler, as the upload would. */
async function openedRun(): Promise<string> {
  const [outcome] = await handleS3Event(deps, { Records: [s3Record()] });
  assert.equal(outcome?.action, 'started');
  return (outcome as { runId: string }).runId;
}

const errorsSince = (from: number) => logged.slice(from).filter((l) => l.level === 'error');

describe('handler events', () => {
  it('S3: drops a record without an object key, logging what was missing, and opens no run', async () => {
    const from = logged.length;
    const jobsBefore = deps.jobs.submitted.length;
    const bad = { Records: [{ eventTime: '2026-12-01T02:00:00.000Z', s3: { bucket: { name: emulators.bucket }, object: { size: 1 } } }] };
    const outcomes = await handleS3Event(deps, bad);
    assert.equal(outcomes.length, 1);
    assert.equal(outcomes[0]!.action, 'ignored');
    const [line] = errorsSince(from);
    assert.equal(line?.message, 'dropped a malformed S3 event');
    assert.ok(
      line?.problems?.some((p) => p.startsWith('Records.0.s3.object.key:')),
      JSON.stringify(line),
    );
    assert.equal(deps.jobs.submitted.length, jobsBefore);
  });

  it("S3: S3's test event (no records) opens nothing and logs no error", async () => {
    const from = logged.length;
    assert.deepEqual(await handleS3Event(deps, { Service: 'Amazon S3', Event: 's3:TestEvent', Bucket: emulators.bucket }), []);
    assert.deepEqual(errorsSince(from), []);
  });

  it('SNS: drops a malformed and a non-JSON split-done message, and still handles the good one beside them', async () => {
    // given an opened run whose split is done, and an SNS delivery of three messages
    const runId = await openedRun();
    await deps.table.updateRun(runId, { counts: { rows: 20, items: 20, chunks: 2 } });
    const from = logged.length;
    const jobsBefore = deps.jobs.submitted.length;
    const event = {
      Records: [
        { Sns: { MessageId: 'm1', Message: JSON.stringify({ runId, pipeline: 'tax-due' }) } },
        { Sns: { MessageId: 'm2', Message: 'hello' } },
        { Sns: { MessageId: 'm3', Message: JSON.stringify({ runId, pipeline: 'tax-due', chunks: 2, items: 20 }) } },
      ],
    };
    // when the handler gets it
    const outcomes = await handleSplitDoneEvent(deps, event);
    // then the two bad messages are logged with what was wrong and dropped, the good one submits the chain
    assert.deepEqual(
      outcomes.map((o) => o.action),
      ['ignored', 'ignored', 'submitted'],
    );
    const errors = errorsSince(from);
    assert.equal(errors.length, 2);
    assert.match(errors[0]!.error ?? '', /not a split-done message .*chunks: Invalid input: expected number, received undefined/);
    assert.match(errors[1]!.error ?? '', /not a split-done message \(not JSON\): hello/);
    assert.deepEqual(
      deps.jobs.submitted.slice(jobsBefore).map((j) => j.stage),
      ['fanout', 'consolidate', 'cleanup'],
    );
  });

  it('SNS: drops an event that is no SNS notification at all', async () => {
    const from = logged.length;
    const outcomes = await handleSplitDoneEvent(deps, { Records: [{ Sns: { Message: 42 } }] });
    assert.deepEqual(
      outcomes.map((o) => o.action),
      ['ignored'],
    );
    const [line] = errorsSince(from);
    assert.equal(line?.message, 'dropped an event that is not an SNS notification');
    assert.deepEqual(line?.problems, ['Records.0.Sns.Message: Invalid input: expected string, received number']);
  });

  it('EventBridge: drops a job state event without a job id, leaving the run as it was', async () => {
    // given a run in fan-out
    const runId = await openedRun();
    await deps.table.updateRun(runId, { status: 'FANNING_OUT', counts: { chunks: 2 } });
    const from = logged.length;
    const mailsBefore = (await emulators.listMail()).length;
    // when a state change arrives whose detail lacks the job id and has a text exit code
    const outcome = await handleJobStateEvent(deps, {
      source: 'aws.batch',
      'detail-type': 'Batch Job State Change',
      detail: { jobName: 'fanout-x', status: 'FAILED', parameters: { runId, stage: 'fanout' }, container: { exitCode: 'twenty' } },
    });
    // then it is logged and dropped
    assert.equal(outcome.action, 'ignored');
    const [line] = errorsSince(from);
    assert.equal(line?.message, 'dropped a malformed Batch job state event');
    assert.deepEqual(line?.problems, [
      'detail.jobId: Invalid input: expected string, received undefined',
      'detail.container.exitCode: Invalid input: expected number, received string',
    ]);
    assert.equal((await deps.table.getRun(runId))?.status, 'FANNING_OUT');
    assert.equal((await emulators.listMail()).length, mailsBefore);
  });

  it('EventBridge: drops an event of another source', async () => {
    const from = logged.length;
    const outcome = await handleJobStateEvent(deps, { source: 'aws.ecs', 'detail-type': 'ECS Task State Change', detail: {} });
    assert.equal(outcome.action, 'ignored');
    assert.ok(errorsSince(from)[0]?.problems?.some((p) => p.startsWith('source:')));
  });

  it('EventBridge: a well-formed FAILED event fails the run', async () => {
    const runId = await openedRun();
    await deps.table.updateRun(runId, { status: 'SPLITTING' });
    const outcome = await handleJobStateEvent(deps, {
      version: '0',
      id: 'e1',
      source: 'aws.batch',
      'detail-type': 'Batch Job State Change',
      account: '123456789012',
      region: 'eu-west-1',
      time: '2026-12-01T02:00:00Z',
      resources: ['arn:aws:batch:eu-west-1:123456789012:job/s'],
      detail: {
        jobName: 'split',
        jobId: 's',
        jobArn: 'arn',
        status: 'FAILED',
        parameters: { runId, stage: 'split', pipeline: 'tax-due' },
        container: { exitCode: 21 },
      },
    });
    assert.deepEqual(outcome, { action: 'failed-run', runId });
    const run = await deps.table.getRun(runId);
    assert.equal(run?.status, 'FAILED');
    assert.match(run?.error ?? '', /reading and splitting the file.*run table could not be read or written/);
  });
});
