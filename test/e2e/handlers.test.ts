/**
 * The event handlers against the real run table and mail emulators: each is idempotent (a
 * duplicated SNS message or Batch failure event starts nothing twice), and a failure ends the
 * run with one email and one cleanup.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createAwsClients } from '../../runtime/adapters/clients';
import { DynamoRunTable } from '../../runtime/adapters/dynamo-run-table';
import { S3ObjectStore } from '../../runtime/adapters/s3-object-store';
import { SesMailer } from '../../runtime/adapters/ses-mailer';
import type { HandlerDeps } from '../../runtime/run/deps';
import { handleJobFailed } from '../../lambda/handlers/on-job-failed';
import { handleObjectCreated, runIdFor } from '../../lambda/handlers/on-intake';
import { handleSplitDone } from '../../lambda/handlers/on-split-done';
import { startEmulators, type LocalEmulators } from '../../local/emulators';
import { silentLogger } from '../../runtime/log';
import { RecordingJobs, taxConfig } from './fixtures';

function pipelinesRecipients(config: HandlerDeps['config'], name: string): string[] {
  return config.pipelines.find((p) => p.name === name)?.recipients ?? [];
}

let dir: string;
let emulators: LocalEmulators;
let deps: HandlerDeps & { jobs: RecordingJobs };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-handlers-'));
  emulators = await startEmulators({ dataDir: dir });
  const clients = createAwsClients(emulators.env);
  deps = {
    config: taxConfig('http://127.0.0.1:9'),
    store: new S3ObjectStore(clients.s3, emulators.bucket),
    table: new DynamoRunTable(clients.dynamo, emulators.table),
    jobs: new RecordingJobs(),
    mailer: new SesMailer(clients.ses),
    log: silentLogger,
  };
});
after(async () => {
  await emulators.stop();
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
const event = () => ({
  bucket: emulators.bucket,
  key: `intake/tax-due/file-${++n}.csv`,
  eTag: `etag-${n}`,
  sequencer: `00${n}`,
  eventTime: '2026-11-22T10:15:00.000Z',
});

describe('handlers', () => {
  it('derives the same run id from the same event, and another for another upload', () => {
    const e = event();
    assert.equal(runIdFor(e), runIdFor({ ...e }));
    assert.notEqual(runIdFor(e), runIdFor({ ...e, eTag: 'other' }));
    assert.match(runIdFor(e), /^20261122T101500Z-[0-9a-f]{10}$/);
  });

  it('opens a run and submits split once for a duplicated S3 event', async () => {
    const e = event();
    const before = deps.jobs.submitted.length;
    const first = await handleObjectCreated(deps, e);
    const second = await handleObjectCreated(deps, e);
    assert.equal(first.action, 'started');
    assert.equal(second.action, 'duplicate');
    const jobs = deps.jobs.submitted.slice(before);
    assert.deepEqual(
      jobs.map((j) => j.stage),
      ['split'],
    );
    const run = await deps.table.getRun((first as { runId: string }).runId);
    assert.equal(run?.status, 'STARTED');
    assert.equal(run?.steps?.split, jobs[0]!.jobId);
    assert.ok(run!.expiresAt! > Date.now() / 1000 + 89 * 86_400, 'kept about 90 days');
  });

  it('submits split again when the first submission failed (the event is retried)', async () => {
    const e = event();
    deps.jobs.failNext = true;
    await assert.rejects(handleObjectCreated(deps, e), /Batch is unavailable/);
    const retried = await handleObjectCreated(deps, e);
    assert.equal(retried.action, 'started');
  });

  it('submits fan-out, consolidate after it and cleanup after that, once for a duplicated message', async () => {
    const opened = await handleObjectCreated(deps, event());
    const runId = (opened as { runId: string }).runId;
    await deps.table.updateRun(runId, { counts: { rows: 30, items: 30, chunks: 3 } });
    const before = deps.jobs.submitted.length;
    const msg = { runId, pipeline: 'tax-due', chunks: 3, items: 30 };
    const [a, b] = await Promise.all([handleSplitDone(deps, msg), handleSplitDone(deps, msg)]);
    assert.deepEqual([a.action, b.action].sort(), ['duplicate', 'submitted']);
    const jobs = deps.jobs.submitted.slice(before);
    assert.deepEqual(
      jobs.map((j) => j.stage),
      ['fanout', 'consolidate', 'cleanup'],
    );
    assert.equal(jobs[0]!.arraySize, 3);
    assert.deepEqual(jobs[1]!.dependsOn, [jobs[0]!.jobId]);
    assert.deepEqual(jobs[2]!.dependsOn, [jobs[1]!.jobId]);
    assert.equal((await deps.table.getRun(runId))?.status, 'FANNING_OUT');
  });

  it('a failed fan-out fails the run once and starts one partial consolidate, then cleanup after it', async () => {
    const opened = await handleObjectCreated(deps, event());
    const runId = (opened as { runId: string }).runId;
    await deps.table.updateRun(runId, { status: 'FANNING_OUT', counts: { chunks: 2 } });
    const mailsBefore = (await emulators.listMail()).length;
    const jobsBefore = deps.jobs.submitted.length;
    const failed = {
      jobName: 'fanout-x',
      jobId: 'arr:1',
      status: 'FAILED',
      statusReason: 'Essential container in task exited',
      parameters: { runId, stage: 'fanout', pipeline: 'tax-due' },
      container: { exitCode: 20 },
      attempts: [{}, {}, {}],
      arrayProperties: { index: 1 },
    };
    await handleJobFailed(deps, failed);
    await handleJobFailed(deps, failed);
    await handleJobFailed(deps, {
      ...failed,
      jobId: 'arr',
      arrayProperties: undefined,
      statusReason: 'Array Child Job failed',
      container: undefined,
    });
    await handleJobFailed(deps, {
      ...failed,
      jobName: 'consolidate-x',
      statusReason: 'Dependent Job failed',
      parameters: { ...failed.parameters, stage: 'consolidate' },
    });
    const run = await deps.table.getRun(runId);
    assert.equal(run?.status, 'FAILED');
    assert.match(run!.error!, /processing the work items.*chunk 1.*3 attempt.*storage bucket/);
    const jobs = deps.jobs.submitted.slice(jobsBefore);
    assert.deepEqual(
      jobs.map((j) => j.stage),
      ['consolidate', 'cleanup'],
      'one partial consolidate, cleanup after it',
    );
    assert.deepEqual(jobs[0]!.environment, { FANOUT_PARTIAL: '1' });
    assert.deepEqual(jobs[1]!.dependsOn, [jobs[0]!.jobId]);
    assert.equal((await emulators.listMail()).length, mailsBefore, 'the partial consolidate sends the email');

    // The partial consolidate fails too: the plain failure email goes out, and a new cleanup.
    await handleJobFailed(deps, {
      ...failed,
      jobName: 'partial',
      jobId: jobs[0]!.jobId,
      arrayProperties: undefined,
      parameters: { ...failed.parameters, stage: 'consolidate' },
    });
    await handleJobFailed(deps, {
      ...failed,
      jobName: 'cleanup',
      jobId: jobs[1]!.jobId,
      statusReason: 'Dependent Job failed',
      arrayProperties: undefined,
      parameters: { ...failed.parameters, stage: 'cleanup' },
    });
    const mails = (await emulators.listMail()).slice(mailsBefore);
    assert.equal(mails.length, 1, 'one failure email');
    assert.match(mails[0]!.subject, /FAILED tax-due/);
    assert.match(mails[0]!.text ?? '', /storage bucket could not be read or written/);
    assert.deepEqual(
      deps.jobs.submitted.slice(jobsBefore).map((j) => j.stage),
      ['consolidate', 'cleanup', 'cleanup'],
    );
    assert.equal(deps.jobs.submitted.at(-1)!.dependsOn, undefined);
  });

  it('a scheduled SFTP pull that failed for good becomes a failed run of its pipeline, emailed once with what to check', async () => {
    const source = {
      name: 'partner-a',
      host: 'sftp.partner.example',
      user: 'fanout',
      privateKey: { secretName: 'fanout/partner-a', env: 'PARTNER_A_KEY' },
      hostKeySha256: `SHA256:${'A'.repeat(43)}`,
      folder: '/outbox',
      pipeline: 'tax-due',
      schedule: 'rate(1 hour)',
    };
    const withSource = { ...deps, config: taxConfig('http://127.0.0.1:9', {}, { sources: [source] }) };
    const mailsBefore = (await emulators.listMail()).length;
    const jobsBefore = deps.jobs.submitted.length;
    const failed = {
      jobName: 'fanout-sftp-pull-partner-a',
      jobId: 'b7f0c2d4-pull',
      status: 'FAILED',
      parameters: { source: 'partner-a' },
      container: { exitCode: 11, logStreamName: 'partner-a/default/abc123' },
      attempts: [{}],
    };
    const first = await handleJobFailed(withSource, failed);
    const again = await handleJobFailed(withSource, failed);
    assert.equal(first.action, 'failed-run');
    assert.equal(again.action, 'ignored', 'a second delivery of the event changes nothing');
    const run = await deps.table.getRun((first as { runId: string }).runId);
    assert.equal(run?.status, 'FAILED');
    assert.equal(run?.pipeline, 'tax-due');
    assert.equal(run?.inputName, 'SFTP pull of partner-a');
    const mails = (await emulators.listMail()).slice(mailsBefore);
    assert.equal(mails.length, 1, 'one email');
    assert.deepEqual(mails[0]!.to.sort(), [...pipelinesRecipients(withSource.config, 'tax-due'), 'ops@example.com'].sort());
    const text = mails[0]!.text ?? '';
    assert.match(text, /SFTP pull of source "partner-a" \(fanout@sftp\.partner\.example:22 \/outbox\) failed after 1 attempt/);
    assert.match(text, /host key other than the pinned hostKeySha256/);
    assert.match(text, /log stream is partner-a\/default\/abc123/);
    assert.equal(deps.jobs.submitted.length, jobsBefore, 'nothing to clean up, no job submitted');

    // A job that names a source the config does not know is logged and left alone.
    const unknown = await handleJobFailed(withSource, { ...failed, jobId: 'other', parameters: { source: 'gone' } });
    assert.deepEqual(unknown, { action: 'ignored', why: 'job fanout-sftp-pull-partner-a names source "gone", which is not in the config' });
  });

  it('a failed split fails the run with one email and one cleanup, no partial results', async () => {
    const opened = await handleObjectCreated(deps, event());
    const runId = (opened as { runId: string }).runId;
    await deps.table.updateRun(runId, { status: 'SPLITTING', error: 'x.csv has no column "Tax Year".' });
    const mailsBefore = (await emulators.listMail()).length;
    const jobsBefore = deps.jobs.submitted.length;
    const failed = {
      jobName: 'split',
      jobId: 's',
      status: 'FAILED',
      parameters: { runId, stage: 'split', pipeline: 'tax-due' },
      container: { exitCode: 10 },
    };
    await handleJobFailed(deps, failed);
    await handleJobFailed(deps, failed);
    const mails = (await emulators.listMail()).slice(mailsBefore);
    assert.equal(mails.length, 1);
    assert.match(mails[0]!.text ?? '', /no column "Tax Year"/);
    assert.deepEqual(
      deps.jobs.submitted.slice(jobsBefore).map((j) => j.stage),
      ['cleanup'],
    );
  });

  it('leaves a succeeded run alone when a later job fails', async () => {
    const opened = await handleObjectCreated(deps, event());
    const runId = (opened as { runId: string }).runId;
    await deps.table.updateRun(runId, { status: 'SUCCEEDED' });
    const out = await handleJobFailed(deps, {
      jobName: 'cleanup',
      jobId: 'c',
      status: 'FAILED',
      parameters: { runId, stage: 'cleanup', pipeline: 'tax-due' },
      container: { exitCode: 20 },
    });
    assert.equal(out.action, 'ignored');
    assert.equal((await deps.table.getRun(runId))?.status, 'SUCCEEDED');
  });

  it('a file name with control characters ends FAILED with one failure email that shows them escaped, the subject intact', async () => {
    // given an upload whose name holds CR, LF (as a header injection would) and a tab
    const mailsBefore = (await emulators.listMail()).length;
    const jobsBefore = deps.jobs.submitted.length;
    const e = { ...event(), key: 'intake/tax-due/bad\r\nBcc: x@evil.example\tname.csv' };
    // when it arrives
    const out = await handleObjectCreated(deps, e);
    // then the run is FAILED, no job starts, and the pipeline's recipients get one email naming the file safely
    assert.equal(out.action, 'rejected');
    const run = await deps.table.getRun((out as { runId: string }).runId);
    assert.equal(run?.status, 'FAILED');
    assert.equal(deps.jobs.submitted.length, jobsBefore);
    const mails = (await emulators.listMail()).slice(mailsBefore);
    assert.equal(mails.length, 1);
    assert.deepEqual(mails[0]!.to, ['tax-team@example.com']);
    assert.equal(mails[0]!.subject, '[batch-fanout] FAILED tax-due: bad\\r\\nBcc: x@evil.example\\tname.csv');
    assert.match(mails[0]!.text ?? '', /The file name "bad\\r\\nBcc: x@evil\.example\\tname\.csv" holds control characters/);
    const eml = await emulators.getEml(mails[0]!.messageId);
    const headers = eml.slice(0, eml.indexOf('\r\n\r\n'));
    assert.equal(headers.match(/^Subject:/gim)?.length, 1, 'one Subject header');
    assert.doesNotMatch(headers, /^Bcc:/im, 'no header injected');
  });
});
