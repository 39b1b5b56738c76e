/**
 * The input deadline of a merge batch, against the real S3, run table and mail emulators with an
 * injected clock: a batch that still lacks an input when its deadline passes ends FAILED, once,
 * with an email naming the input; a batch before its deadline, or whose inputs are all there,
 * is left alone; a late file after the failure starts nothing.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createAwsClients } from '../../runtime/adapters/clients';
import { DynamoRunTable } from '../../runtime/adapters/dynamo-run-table';
import { DynamoWaitingRuns } from '../../runtime/adapters/dynamo-waiting-runs';
import { S3ObjectStore } from '../../runtime/adapters/s3-object-store';
import { SesMailer } from '../../runtime/adapters/ses-mailer';
import { parseAppConfig } from '../../runtime/config/schema';
import type { HandlerDeps } from '../../runtime/run/deps';
import { handleObjectCreated } from '../../lambda/handlers/on-intake';
import { sweepWaitingRuns } from '../../lambda/handlers/merge-deadline';
import { startEmulators, type LocalEmulators } from '../../local/emulators';
import { silentLogger } from '../../runtime/log';
import { RecordingJobs } from './fixtures';

const HOUR = 3_600_000;
const T0 = Date.parse('2026-12-01T08:00:00Z');
let clock = T0;
let dir: string;
let emulators: LocalEmulators;
let deps: HandlerDeps & { jobs: RecordingJobs };
let finder: DynamoWaitingRuns;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-merge-deadline-'));
  emulators = await startEmulators({ dataDir: dir });
  const clients = createAwsClients(emulators.env);
  deps = {
    config: parseAppConfig({
      sender: 'fanout@example.com',
      pipelines: [
        {
          shape: 'dataset',
          name: 'merge-xy',
          merge: { inputs: { left: 'x_list.txt', right: 'y_list.txt' }, keys: { left: ['ID'], right: ['ID'] } },
          recipients: ['ds@example.com'],
        },
        {
          shape: 'dataset',
          name: 'merge-fast',
          inputDeadlineHours: 2,
          merge: { inputs: { left: 'x_list.txt', right: 'y_list.txt' }, keys: { left: ['ID'], right: ['ID'] } },
          recipients: ['ds@example.com'],
        },
      ],
    }),
    store: new S3ObjectStore(clients.s3, emulators.bucket),
    table: new DynamoRunTable(clients.dynamo, emulators.table),
    jobs: new RecordingJobs(),
    mailer: new SesMailer(clients.ses),
    log: silentLogger,
    now: () => clock,
  };
  finder = new DynamoWaitingRuns(clients.dynamo, emulators.table);
});
after(async () => {
  await emulators.stop();
  await rm(dir, { recursive: true, force: true });
});

const upload = async (key: string) => {
  await deps.store.put(key, 'ID\tvalue\n1\ta\n');
  return handleObjectCreated(deps, { bucket: emulators.bucket, key, eventTime: new Date(clock).toISOString() });
};

describe('merge batch input deadline', () => {
  it('a batch lacking an input past its deadline (default 24 h) ends FAILED once, and the email names the input', async () => {
    // given a batch with only its left input, opened at T0
    clock = T0;
    const first = await upload('intake/merge-xy/late/x_list.txt');
    assert.equal(first.action, 'waiting');
    const runId = 'runId' in first ? first.runId : '';
    assert.equal((await deps.table.getRun(runId))?.dataset?.deadlineAt, T0 + 24 * HOUR);

    // when the sweep runs one minute before the deadline, then it leaves the batch waiting
    clock = T0 + 24 * HOUR - 60_000;
    const early = (await sweepWaitingRuns(deps, finder)).filter((o) => o.runId === runId);
    assert.deepEqual(early, [{ runId, action: 'not-due', deadlineAt: T0 + 24 * HOUR }]);
    assert.equal((await deps.table.getRun(runId))?.status, 'WAITING_FOR_INPUTS');

    // when it runs at the deadline, then the run is FAILED with a reason naming what it lacks
    clock = T0 + 24 * HOUR;
    const due = (await sweepWaitingRuns(deps, finder)).filter((o) => o.runId === runId);
    assert.equal(due.length, 1);
    assert.equal(due[0]?.action, 'failed');
    const run = await deps.table.getRun(runId);
    assert.equal(run?.status, 'FAILED');
    assert.match(run?.error ?? '', /did not get all its inputs within 24 hours.*still lacks right input y_list\.txt/s);
    assert.equal(run?.finishedAt, clock);
    // and one email to the pipeline's recipients says so
    const mails = (await emulators.listMail()).filter((m) => m.text?.includes(runId));
    assert.equal(mails.length, 1);
    assert.deepEqual(mails[0]?.to, ['ds@example.com']);
    assert.match(mails[0]?.text ?? '', /still lacks right input y_list\.txt/);
    assert.match(mails[0]?.text ?? '', /intake\/merge-xy\/<new batch name>\//);

    // when the sweep runs again, then the ended run is not found and nothing is sent twice
    clock += HOUR;
    assert.deepEqual(
      (await sweepWaitingRuns(deps, finder)).filter((o) => o.runId === runId),
      [],
    );
    assert.equal((await emulators.listMail()).filter((m) => m.text?.includes(runId)).length, 1);
    // when the missing file arrives after the failure, then nothing starts
    const late = await upload('intake/merge-xy/late/y_list.txt');
    assert.equal(late.action, 'duplicate');
    assert.equal(deps.jobs.submitted.length, 0);
  });

  it("the pipeline's inputDeadlineHours sets the deadline", async () => {
    clock = T0;
    const first = await upload('intake/merge-fast/quick/y_list.txt');
    const runId = 'runId' in first ? first.runId : '';
    clock = T0 + 2 * HOUR;
    const due = (await sweepWaitingRuns(deps, finder)).find((o) => o.runId === runId);
    assert.equal(due?.action, 'failed');
    assert.match(due && 'reason' in due ? due.reason : '', /within 2 hours.*still lacks left input x_list\.txt/s);
  });

  it('a batch whose inputs are all there at the deadline (its last event lost) is started, once', async () => {
    clock = T0;
    const first = await upload('intake/merge-xy/lost-event/x_list.txt');
    const runId = 'runId' in first ? first.runId : '';
    // the right input is stored, but its event has not reached the intake handler
    await deps.store.put('intake/merge-xy/lost-event/y_list.txt', 'ID\tvalue\n1\tb\n');
    clock = T0 + 25 * HOUR;
    const o = (await sweepWaitingRuns(deps, finder)).find((x) => x.runId === runId);
    assert.deepEqual(o, { runId, action: 'started' });
    assert.equal((await deps.table.getRun(runId))?.status, 'STARTED');
    assert.deepEqual(
      deps.jobs.submitted.map((j) => [j.stage, j.runId]),
      [
        ['merge', runId],
        ['cleanup', runId],
      ],
    );
    // and the event arriving after all starts nothing more
    const late = await handleObjectCreated(deps, {
      bucket: emulators.bucket,
      key: 'intake/merge-xy/lost-event/y_list.txt',
      eventTime: new Date(clock).toISOString(),
    });
    assert.equal(late.action, 'duplicate');
    assert.equal(deps.jobs.submitted.length, 2);
  });
});
