/**
 * The intake of a merge batch against the real S3, run table and mail emulators: each S3 event
 * checks for its siblings; duplicated and reordered events start one run, once; a waiting batch
 * says what it lacks; a file straight under the pipeline folder, or two files for one input, fail
 * with an email that says what to do.
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
import { parseAppConfig } from '../../runtime/config/schema';
import type { HandlerDeps } from '../../runtime/run/deps';
import { handleObjectCreated } from '../../lambda/handlers/on-intake';
import { startEmulators, type LocalEmulators } from '../../local/emulators';
import { silentLogger } from '../../runtime/log';
import { RecordingJobs } from './fixtures';

/** A job queue that records submissions (the port; the Batch adapter has its own tests). */
let dir: string;
let emulators: LocalEmulators;
let deps: HandlerDeps & { jobs: RecordingJobs };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-merge-intake-'));
  emulators = await startEmulators({ dataDir: dir });
  const clients = createAwsClients(emulators.env);
  deps = {
    config: parseAppConfig({
      sender: 'fanout@example.com',
      pipelines: [
        {
          shape: 'dataset',
          name: 'merge-xy',
          merge: { inputs: { left: 'x_*.txt', right: 'y_list.txt' }, keys: { left: ['ID'], right: ['ID'] } },
          recipients: ['ds@example.com'],
        },
      ],
    }),
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

const event = (key: string) => ({ bucket: emulators.bucket, key, eventTime: new Date().toISOString() });

describe('merge intake', () => {
  it('waits for the last input, then starts one merge (and cleanup) however the events repeat or reorder', async () => {
    const x = 'intake/merge-xy/b1/x_2026.txt';
    const y = 'intake/merge-xy/b1/y_list.txt';
    await deps.store.put(x, 'ID\tvalue\n1\ta\n');
    const first = await handleObjectCreated(deps, event(x));
    assert.equal(first.action, 'waiting');
    assert.deepEqual('lacking' in first && first.lacking, ['right input y_list.txt']);
    const waiting = await deps.table.getRun('runId' in first ? first.runId : '');
    assert.equal(waiting?.status, 'WAITING_FOR_INPUTS');
    assert.deepEqual(waiting?.dataset?.waitingFor, ['right input y_list.txt']);
    assert.equal(deps.jobs.submitted.length, 0);

    await deps.store.put(y, 'ID\tvalue\n1\tb\n');
    // y's event, x's event again (duplicated), y's again, concurrently and out of order
    const outcomes = await Promise.all([
      handleObjectCreated(deps, event(y)),
      handleObjectCreated(deps, event(x)),
      handleObjectCreated(deps, event(y)),
    ]);
    assert.equal(outcomes.filter((o) => o.action === 'started').length, 1, JSON.stringify(outcomes));
    assert.ok(outcomes.every((o) => o.action === 'started' || o.action === 'duplicate'));
    assert.deepEqual(
      deps.jobs.submitted.map((j) => [j.stage, j.dependsOn]),
      [
        ['merge', undefined],
        ['cleanup', ['job-1']],
      ],
    );
    const run = await deps.table.getRun('runId' in first ? first.runId : '');
    assert.equal(run?.status, 'STARTED');
    assert.deepEqual(run?.dataset?.inputs, { left: x, right: y });
    assert.equal(run?.steps?.engine, 'job-1');
    // a late event after the start changes nothing
    assert.equal((await handleObjectCreated(deps, event(x))).action, 'duplicate');
    assert.equal(deps.jobs.submitted.length, 2);
  });

  it('a file that is no input is ignored and remembered for the email', async () => {
    await deps.store.put('intake/merge-xy/b2/readme.md', 'notes');
    await deps.store.put('intake/merge-xy/b2/x_a.txt', 'ID\n1\n');
    await deps.store.put('intake/merge-xy/b2/y_list.txt', 'ID\n1\n');
    const o = await handleObjectCreated(deps, event('intake/merge-xy/b2/y_list.txt'));
    assert.equal(o.action, 'started');
    const run = await deps.table.getRun('runId' in o ? o.runId : '');
    assert.deepEqual(run?.dataset?.ignored, ['intake/merge-xy/b2/readme.md']);
  });

  it('two files for one input fail the batch with an email naming both', async () => {
    await deps.store.put('intake/merge-xy/b3/x_a.txt', 'ID\n1\n');
    await deps.store.put('intake/merge-xy/b3/x_b.txt', 'ID\n1\n');
    const o = await handleObjectCreated(deps, event('intake/merge-xy/b3/x_b.txt'));
    assert.equal(o.action, 'rejected');
    assert.match(
      'reason' in o ? o.reason : '',
      /left input x_\*\.txt matches x_a\.txt, x_b\.txt[\s\S]*still lacks: right input y_list\.txt/,
    );
    const run = await deps.table.getRun('runId' in o ? o.runId : '');
    assert.equal(run?.status, 'FAILED');
    const mails = await emulators.listMail();
    assert.ok(mails.some((m) => m.to.includes('ds@example.com') && /x_a\.txt, x_b\.txt/.test(m.text ?? '')));
  });

  it('a file straight under the pipeline folder is refused: a merge needs a batch folder', async () => {
    await deps.store.put('intake/merge-xy/x_list.txt', 'ID\n1\n');
    const o = await handleObjectCreated(deps, event('intake/merge-xy/x_list.txt'));
    assert.equal(o.action, 'rejected');
    assert.match('reason' in o ? o.reason : '', /upload x_\*\.txt and y_list\.txt into intake\/merge-xy\/<batch name>\//);
  });
});
