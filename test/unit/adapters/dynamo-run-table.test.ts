import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { loadPipelinesConfig } from '../../../config/pipelines';
import { DynamoRunTable } from '../../../runtime/adapters/dynamo-run-table';
import { ExitCode, StorageError } from '../../../runtime/errors';
import { pendingChunk } from '../../../runtime/lifecycle';
import type { ChunkRecord, RunRecord } from '../../../runtime/model';
import { startEmulatorFixture, type EmulatorFixture } from './fixtures';

let runCounter = 0;
function newRunId(): string {
  runCounter += 1;
  return `run-${Date.now().toString(36)}-${runCounter}`;
}

function runRecord(runId: string, overrides: Partial<RunRecord> = {}): RunRecord {
  const config = loadPipelinesConfig().pipelines[0]!;
  return {
    runId,
    pipeline: config.name,
    inputKey: `intake/${config.name}/customers.xlsx`,
    inputName: 'customers.xlsx',
    status: 'STARTED',
    config,
    sender: 'batch-fanout@example.com',
    createdAt: 1_700_000_000_000,
    expiresAt: 1_707_776_000,
    ...overrides,
  };
}

function chunkRecords(runId: string, count: number): ChunkRecord[] {
  return Array.from({ length: count }, (_, chunk) => pendingChunk(runId, chunk, 500 + chunk, 1_700_000_000_000 + chunk));
}

describe('DynamoRunTable against dynalite', () => {
  let fx: EmulatorFixture;
  let table: DynamoRunTable;

  before(async () => {
    fx = await startEmulatorFixture();
    table = new DynamoRunTable(fx.clients.dynamo, fx.emu.table);
  });
  after(async () => fx.close());

  it('opens a run once: a second createRun with the same id answers false and changes nothing', async () => {
    // given
    const runId = newRunId();
    const run = runRecord(runId);

    // when
    const first = await table.createRun(run);
    const second = await table.createRun({ ...run, status: 'FAILED', inputName: 'other.xlsx' });

    // then the first record is kept whole, with an empty steps map
    assert.equal(first, true);
    assert.equal(second, false);
    assert.deepEqual(await table.getRun(runId), { ...run, steps: {} });
  });

  it('answers undefined for a run that does not exist', async () => {
    assert.equal(await table.getRun('no-such-run'), undefined);
  });

  it('stores the run under pk RUN#<runId>, sk RUN, with expiresAt as the TTL attribute', async () => {
    // given
    const runId = newRunId();
    await table.createRun(runRecord(runId));

    // when the item is read by its raw key
    const res = await fx.clients.dynamo.send(new GetCommand({ TableName: fx.emu.table, Key: { pk: `RUN#${runId}`, sk: 'RUN' } }));

    // then
    assert.equal(res.Item?.runId, runId);
    assert.equal(res.Item?.expiresAt, 1_707_776_000);
  });

  it('lets exactly one of several concurrent callers claim a step', async () => {
    // given
    const runId = newRunId();
    await table.createRun(runRecord(runId));

    // when five callers claim the same step at once
    const results = await Promise.all([1, 2, 3, 4, 5].map((n) => table.claimStep(runId, 'fanout', `caller-${n}`)));

    // then one wins, and the step holds the winner's value
    assert.equal(results.filter(Boolean).length, 1);
    const winner = results.indexOf(true) + 1;
    assert.deepEqual((await table.getRun(runId))?.steps, { fanout: `caller-${winner}` });
  });

  it('keeps steps apart: claiming one step does not block another', async () => {
    // given
    const runId = newRunId();
    await table.createRun(runRecord(runId));

    // when
    const a = await table.claimStep(runId, 'fanout', 'pending');
    const b = await table.claimStep(runId, 'failure-email', 'sent');

    // then
    assert.equal(a, true);
    assert.equal(b, true);
    assert.deepEqual((await table.getRun(runId))?.steps, { fanout: 'pending', 'failure-email': 'sent' });
  });

  it('overwrites a claimed step with setStep, and releaseStep lets it be claimed again', async () => {
    // given a claimed step
    const runId = newRunId();
    await table.createRun(runRecord(runId));
    await table.claimStep(runId, 'split', 'pending');

    // when its value is set, then it is released and claimed again
    await table.setStep(runId, 'split', 'job-1');
    const afterSet = (await table.getRun(runId))?.steps;
    const claimWhileHeld = await table.claimStep(runId, 'split', 'other');
    await table.releaseStep(runId, 'split');
    const claimAfterRelease = await table.claimStep(runId, 'split', 'job-2');

    // then
    assert.deepEqual(afterSet, { split: 'job-1' });
    assert.equal(claimWhileHeld, false);
    assert.equal(claimAfterRelease, true);
    assert.deepEqual((await table.getRun(runId))?.steps, { split: 'job-2' });
  });

  it('refuses to claim a step of a run that does not exist', async () => {
    await assert.rejects(table.claimStep('no-such-run', 'fanout', 'x'), (err: unknown) => {
      assert.ok(err instanceof StorageError);
      assert.match(err.message, /run no-such-run/);
      assert.match(err.message, /does not exist/);
      return true;
    });
  });

  it('applies a patch, leaving fields it does not name (or names as undefined) as they were', async () => {
    // given
    const runId = newRunId();
    await table.createRun(runRecord(runId, { error: 'kept' }));

    // when
    const ok = await table.updateRun(runId, {
      status: 'FANNING_OUT',
      counts: { items: 1200, chunks: 3 },
      splitDoneAt: 1_700_000_100_000,
      error: undefined,
    });

    // then
    assert.equal(ok, true);
    const run = await table.getRun(runId);
    assert.equal(run?.status, 'FANNING_OUT');
    assert.deepEqual(run?.counts, { items: 1200, chunks: 3 });
    assert.equal(run?.splitDoneAt, 1_700_000_100_000);
    assert.equal(run?.error, 'kept');
    assert.equal(run?.inputName, 'customers.xlsx');
  });

  it('applies a patch only when the status is one of statusIn, and answers false otherwise', async () => {
    // given a run that has failed
    const runId = newRunId();
    await table.createRun(runRecord(runId, { status: 'FAILED' }));

    // when one update requires a running status and another accepts FAILED
    const refused = await table.updateRun(runId, { status: 'SUCCEEDED' }, { statusIn: ['SPLITTING', 'FANNING_OUT', 'CONSOLIDATING'] });
    const statusAfterRefusal = (await table.getRun(runId))?.status;
    const accepted = await table.updateRun(runId, { cleanedAt: 5 }, { statusIn: ['SUCCEEDED', 'FAILED'] });

    // then
    assert.equal(refused, false);
    assert.equal(statusAfterRefusal, 'FAILED');
    assert.equal(accepted, true);
    assert.equal((await table.getRun(runId))?.cleanedAt, 5);
  });

  it('answers false to an update of a run that does not exist, without creating it', async () => {
    // when
    const ok = await table.updateRun('no-such-run-2', { status: 'FAILED' });

    // then
    assert.equal(ok, false);
    assert.equal(await table.getRun('no-such-run-2'), undefined);
  });

  it('puts, reads back in chunk order, and deletes 250 chunks in batches', async () => {
    // given 250 chunk records, written in a shuffled order
    const runId = newRunId();
    const chunks = chunkRecords(runId, 250);
    const shuffled = [...chunks].sort((a, b) => ((a.chunk * 7919) % 250) - ((b.chunk * 7919) % 250));

    // when they are put and read back
    await table.putChunks(shuffled);
    const read = await table.getChunks(runId, 250);

    // then every chunk is there, in chunk order, as written
    assert.deepEqual(read, chunks);

    // when they are deleted
    await table.deleteChunks(runId, 250);

    // then none is left
    assert.deepEqual(await table.getChunks(runId, 250), []);
    assert.equal(await table.getChunk(runId, 0), undefined);
  });

  it('leaves out chunks that do not exist when reading a range', async () => {
    // given chunks 0..9 only
    const runId = newRunId();
    await table.putChunks(chunkRecords(runId, 10));

    // when 120 are asked for
    const read = await table.getChunks(runId, 120);

    // then
    assert.deepEqual(
      read.map((c) => c.chunk),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    );
  });

  it('keeps each chunk under its own partition key CHUNK#<runId>#<n>', async () => {
    // given
    const runId = newRunId();
    await table.putChunks(chunkRecords(runId, 3));

    // when chunk 2 is read by its raw key
    const res = await fx.clients.dynamo.send(new GetCommand({ TableName: fx.emu.table, Key: { pk: `CHUNK#${runId}#2`, sk: 'CHUNK' } }));

    // then it is there, with a TTL so leftovers expire
    assert.equal(res.Item?.chunk, 2);
    assert.equal(typeof res.Item?.expiresAt, 'number');
    assert.ok((res.Item?.expiresAt as number) > Date.now() / 1000);
  });

  it('updates one chunk, keeping its other fields', async () => {
    // given
    const runId = newRunId();
    await table.putChunks(chunkRecords(runId, 4));

    // when
    await table.updateChunk(runId, 2, { status: 'RUNNING', done: 300, failed: 4, attempt: 2, lastPart: 3, updatedAt: 42 });

    // then
    assert.deepEqual(await table.getChunk(runId, 2), {
      runId,
      chunk: 2,
      items: 502,
      status: 'RUNNING',
      done: 300,
      failed: 4,
      retries: 0,
      attempt: 2,
      lastPart: 3,
      updatedAt: 42,
    });
    assert.equal((await table.getChunk(runId, 1))?.status, 'PENDING');
  });

  it('refuses to update a chunk that does not exist', async () => {
    await assert.rejects(table.updateChunk('no-such-run', 0, { done: 1 }), /chunk 0 of run no-such-run .*does not exist/);
  });

  it('turns a table failure into a StorageError with exit code TABLE naming table and operation', async () => {
    // given a table that does not exist
    const missing = new DynamoRunTable(fx.clients.dynamo, 'no-such-table');

    // when / then
    await assert.rejects(missing.getRun('r1'), (err: unknown) => {
      assert.ok(err instanceof StorageError);
      assert.equal(err.exitCode, ExitCode.TABLE);
      assert.match(err.message, /GetItem on table no-such-table/);
      assert.match(err.message, /ResourceNotFoundException/);
      return true;
    });
    await assert.rejects(missing.putChunks(chunkRecords('r1', 30)), (err: unknown) => {
      assert.ok(err instanceof StorageError);
      assert.equal(err.exitCode, ExitCode.TABLE);
      assert.match(err.message, /BatchWriteItem on table no-such-table/);
      return true;
    });
  });
});
