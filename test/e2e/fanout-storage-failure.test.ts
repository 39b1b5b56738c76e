/**
 * A fan-out child that cannot save its results stops calling the data source: when a result
 * part's PUT fails (a real S3 error from the emulator: the third part goes to a bucket that does
 * not exist), no new call starts, the child fails with the storage exit code, and its next
 * attempt redoes at most the part that failed and the one gathered behind it (plus the calls
 * that were in flight).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Readable } from 'node:stream';
import { exitCodeFor } from '../../batch-jobs/main';
import { toJsonl } from '../../batch-jobs/records/jsonl';
import type { StageContext } from '../../batch-jobs/stages/context';
import { readResultParts, runFanout } from '../../batch-jobs/stages/fanout';
import type { Task } from '../../batch-jobs/tasks/task';
import { startEmulators, type LocalEmulators } from '../../local/emulators';
import { createAwsClients } from '../../runtime/adapters/clients';
import { DynamoRunTable } from '../../runtime/adapters/dynamo-run-table';
import { S3ObjectStore } from '../../runtime/adapters/s3-object-store';
import { SesMailer } from '../../runtime/adapters/ses-mailer';
import { ExitCode, StorageError } from '../../runtime/errors';
import { silentLogger } from '../../runtime/log';
import { keys, type WorkItem } from '../../runtime/model';
import type { ObjectStore } from '../../runtime/ports';
import { taxConfig } from './fixtures';

let dir: string;
let emulators: LocalEmulators;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-storage-'));
  emulators = await startEmulators({ dataDir: join(dir, 'emu') });
});
after(async () => {
  await emulators.stop();
  await rm(dir, { recursive: true, force: true });
});

/**
 * The real S3 store, but the `failOn`-th result part goes to a bucket that does not exist. It
 * counts the part PUTs answered, so the test's task can pace itself by storage, not by time.
 */
class FailingPartStore implements ObjectStore {
  parts = 0;
  answered = 0;
  private waiters: Array<{ n: number; resolve: () => void }> = [];
  /** Task calls made when the failing PUT was answered. */
  callsAtFailure: number | undefined;
  constructor(
    private readonly real: S3ObjectStore,
    private readonly missing: S3ObjectStore,
    private readonly failOn: number,
    private readonly calls: () => number,
  ) {}
  get bucket() {
    return this.real.bucket;
  }
  /** Resolves once `n` part PUTs have been answered. */
  answeredAtLeast(n: number): Promise<void> {
    if (this.answered >= n) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }
  async put(key: string, body: string | Uint8Array | Readable, opts?: { contentType?: string }) {
    if (!key.includes('/results/')) return this.real.put(key, body, opts);
    try {
      if (++this.parts === this.failOn) {
        try {
          await this.missing.put(key, body, opts);
        } finally {
          this.callsAtFailure = this.calls();
        }
      }
      return await this.real.put(key, body, opts);
    } finally {
      this.answered++;
      for (const w of this.waiters.filter((w) => this.answered >= w.n)) w.resolve();
      this.waiters = this.waiters.filter((w) => this.answered < w.n);
    }
  }
  getStream(key: string) {
    return this.real.getStream(key);
  }
  getBytes(key: string) {
    return this.real.getBytes(key);
  }
  head(key: string) {
    return this.real.head(key);
  }
  list(prefix: string) {
    return this.real.list(prefix);
  }
  deleteMany(keys: string[]) {
    return this.real.deleteMany(keys);
  }
  presignGet(key: string, seconds: number) {
    return this.real.presignGet(key, seconds);
  }
}

describe('a fan-out child whose result part cannot be written', () => {
  it('stops calling, exits with the storage exit code, and its next attempt redoes at most one part', async () => {
    const clients = createAwsClients(emulators.env);
    const s3 = new S3ObjectStore(clients.s3, emulators.bucket);
    const table = new DynamoRunTable(clients.dynamo, emulators.table);
    const concurrency = 4;
    const partItems = 10;
    const config = taxConfig('http://127.0.0.1:9', { chunkSize: 200, concurrency });
    const runId = 'storage-failure-run';
    await table.createRun({
      runId,
      pipeline: 'tax-due',
      inputKey: 'intake/tax-due/x.csv',
      inputName: 'x.csv',
      status: 'FANNING_OUT',
      config: config.pipelines[0]!,
      sender: config.sender,
      createdAt: Date.now(),
      counts: { rows: 200, items: 200, chunks: 1 },
    });
    const items: WorkItem[] = Array.from({ length: 200 }, (_, i) => ({ i, r: [i + 2], d: [{ 'Customer ID': String(i) }] }));
    await s3.put(keys.chunk(runId, 0), toJsonl(items));
    await table.putChunks([
      { runId, chunk: 0, items: 200, status: 'PENDING', done: 0, failed: 0, retries: 0, attempt: 0, lastPart: -1, updatedAt: 0 },
    ]);

    const called: number[] = [];
    let started = 0;
    let pace: FailingPartStore | undefined;
    // A source slower than storage: the calls of part k+2 go out once part k's PUT was answered.
    const task: Task = {
      output: { rowColumns: [{ name: 'Tax Due', type: 'number' }] },
      run: async (item, ctx) => {
        const n = started++;
        await pace?.answeredAtLeast(Math.floor(n / partItems) - 1);
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (ctx.signal.aborted) throw ctx.signal.reason;
        called.push(item.i);
        return { fields: { 'Tax Due': item.i } };
      },
    };
    const store = new FailingPartStore(s3, new S3ObjectStore(clients.s3, 'no-such-bucket'), 3, () => called.length);
    pace = store;
    const ctx = (attempt: number, st: ObjectStore): StageContext => ({
      runId,
      store: st,
      table,
      mailer: new SesMailer(clients.ses),
      notifier: { publishSplitDone: async () => undefined },
      log: silentLogger,
      env: {},
      arrayIndex: 0,
      attempt,
      tmpDir: dir,
      signal: new AbortController().signal,
      resultLinkDays: 7,
    });

    // when the third part cannot be written
    const err = await runFanout(ctx(1, store), { createTask: () => task, partItems }).then(
      () => assert.fail('the child must fail'),
      (e: unknown) => e,
    );

    // then the child fails with S3's error and exit code, and started no call after it
    assert.ok(err instanceof StorageError, `a StorageError (${String(err)})`);
    assert.equal(exitCodeFor(err), ExitCode.STORAGE);
    assert.match(err.message, /no-such-bucket/);
    assert.ok(store.callsAtFailure !== undefined);
    assert.ok(
      called.length - store.callsAtFailure! <= concurrency,
      `${called.length - store.callsAtFailure!} calls started after the failed PUT (at most the ${concurrency} slots may have been starting)`,
    );
    assert.ok(called.length < 200, `it stopped early (${called.length} of 200 calls)`);
    assert.equal((await readResultParts({ store: s3 }, runId, 0)).outcomes.size, 2 * partItems, 'parts 1 and 2 were saved');

    // and the next attempt resumes from the saved parts: at most one part and the in-flight calls are redone
    const firstAttempt = new Set(called);
    called.length = 0;
    pace = undefined;
    const result = await runFanout(ctx(2, s3), { createTask: () => task, partItems });
    const redone = called.filter((i) => firstAttempt.has(i)).length;
    assert.equal(result.done, 200);
    assert.equal(result.resumed, 2 * partItems);
    assert.ok(
      redone <= 2 * partItems + concurrency,
      `${redone} items called again (the failed part and the one gathered behind it are ${2 * partItems}, ${concurrency} in flight)`,
    );
    const { outcomes } = await readResultParts({ store: s3 }, runId, 0);
    assert.equal(outcomes.size, 200, 'every item has an outcome');
  });
});
