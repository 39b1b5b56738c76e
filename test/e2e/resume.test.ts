/**
 * A fan-out child that is started again resumes from its result parts: items that already have
 * an outcome are not called again, and the parts are numbered on. Shown two ways: a child whose
 * parts were left by an earlier attempt (stage run in-process against the emulators), and a whole
 * local run whose fan-out attempts are stopped after N items (the runner's stopAfterItems hook: the
 * child sends itself SIGTERM, as on a Spot reclaim), so nothing here races the clock.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LocalJob } from '../../local/job-runner';
import { readResultParts, runFanout } from '../../batch-jobs/stages/fanout';
import type { StageContext } from '../../batch-jobs/stages/context';
import type { Task } from '../../batch-jobs/tasks/task';
import { startDemoDataSource, type DemoDataSource } from '../../local/sources/demo-data-source';
import { createAwsClients } from '../../runtime/adapters/clients';
import { DynamoRunTable } from '../../runtime/adapters/dynamo-run-table';
import { S3ObjectStore } from '../../runtime/adapters/s3-object-store';
import { SesMailer } from '../../runtime/adapters/ses-mailer';
import { startEmulators, type LocalEmulators } from '../../local/emulators';
import { runLocal } from '../../local/local-run';
import { createLogger, LOG_EVENTS } from '../../runtime/log';
import { keys, type ResultLine, type WorkItem } from '../../runtime/model';
import { ExitCode } from '../../runtime/errors';
import { toJsonl } from '../../batch-jobs/records/jsonl';
import { customers, readSheets, taxConfig, TOKEN, writeCustomersCsv } from './fixtures';

let dir: string;
let emulators: LocalEmulators;
let source: DemoDataSource;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-resume-'));
  emulators = await startEmulators({ dataDir: join(dir, 'emu') });
  source = await startDemoDataSource({ port: 0, token: TOKEN, latencyMs: [10, 30], transientFailureRate: 0 });
});
after(async () => {
  await source.close();
  await emulators.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('resuming a fan-out child', () => {
  it('calls only the items without an outcome, and numbers its parts on', async () => {
    const clients = createAwsClients(emulators.env);
    const store = new S3ObjectStore(clients.s3, emulators.bucket);
    const table = new DynamoRunTable(clients.dynamo, emulators.table);
    const config = taxConfig('http://127.0.0.1:9', { chunkSize: 30, concurrency: 4 });
    const runId = 'resume-run';
    await table.createRun({
      runId,
      pipeline: 'tax-due',
      inputKey: 'intake/tax-due/x.csv',
      inputName: 'x.csv',
      status: 'FANNING_OUT',
      config: config.pipelines[0]!,
      sender: config.sender,
      createdAt: Date.now(),
      counts: { rows: 60, items: 60, chunks: 2 },
    });
    // Chunk 1 holds items 30..59; an earlier attempt recorded 30..44 in two parts.
    const items: WorkItem[] = Array.from({ length: 30 }, (_, k) => ({ i: 30 + k, r: [32 + k], d: [{ 'Customer ID': String(k) }] }));
    await store.put(keys.chunk(runId, 1), toJsonl(items));
    const earlier: ResultLine[] = items.slice(0, 15).map((it) => ({ i: it.i, s: 'done', f: { 'Tax Due': it.i }, a: 1 }));
    await store.put(keys.resultPart(runId, 1, 0), toJsonl(earlier.slice(0, 8)));
    await store.put(keys.resultPart(runId, 1, 1), toJsonl(earlier.slice(8)));
    await table.putChunks([
      { runId, chunk: 1, items: 30, status: 'RUNNING', done: 15, failed: 0, retries: 2, attempt: 1, lastPart: 1, updatedAt: 0 },
    ]);

    const called: number[] = [];
    const logLines: string[] = [];
    const task: Task = {
      output: { rowColumns: [{ name: 'Tax Due', type: 'number' }] },
      run: async (item) => {
        called.push(item.i);
        return { fields: { 'Tax Due': item.i * 10 } };
      },
    };
    const ctx: StageContext = {
      runId,
      store,
      table,
      mailer: new SesMailer(clients.ses),
      notifier: { publishSplitDone: async () => undefined },
      log: createLogger({ sink: (line) => logLines.push(line) }),
      env: {},
      arrayIndex: 1,
      attempt: 2,
      tmpDir: dir,
      signal: new AbortController().signal,
      resultLinkDays: 7,
    };
    const result = await runFanout(ctx, { createTask: () => task, partItems: 6 });

    assert.deepEqual(
      called.sort((a, b) => a - b),
      items.slice(15).map((it) => it.i),
      'only items without an outcome',
    );
    assert.equal(result.resumed, 15);
    assert.equal(result.done, 30);
    const { outcomes, lastPart } = await readResultParts(ctx, runId, 1);
    assert.equal(outcomes.size, 30, 'every item has exactly one outcome');
    assert.equal(outcomes.get(31)!.f!['Tax Due'], 31, 'earlier outcomes kept');
    assert.equal(outcomes.get(50)!.f!['Tax Due'], 500, 'new outcomes recorded');
    assert.ok(lastPart >= 4, `parts numbered on after 1 (last part ${lastPart})`);
    const chunk = await table.getChunk(runId, 1);
    assert.equal(chunk!.status, 'DONE');
    assert.equal(chunk!.done, 30);
    assert.equal(chunk!.attempt, 2);
    assert.equal(chunk!.retries, 2, 'retries of the earlier attempt kept');
    // Progress lines (the dashboard's items per minute) count only this attempt's items.
    const progress = logLines
      .map((l) => JSON.parse(l) as { message: string; done?: number })
      .filter((e) => e.message === LOG_EVENTS.fanoutProgress);
    assert.ok(progress.length >= 3, 'a progress line per result part');
    assert.equal(
      progress.reduce((sum, e) => sum + (e.done ?? 0), 0),
      15,
    );
  });

  it('a local run whose fan-out attempts are stopped after some items resumes and finishes', async () => {
    const input = customers(40).map((c, n) => ({ ...c, id: String(100000 + n * 13) }));
    const file = join(dir, 'slow.csv');
    await writeCustomersCsv(file, input);
    const before = source.stats().requests;
    // Given a fan-out whose first two attempts stop themselves after 12 outcomes each
    const result = await runLocal({
      file,
      pipeline: 'tax-due',
      config: taxConfig(source.url, { concurrency: 2, chunkSize: 1000 }),
      outDir: join(dir, 'out-slow'),
      env: { TAX_API_TOKEN: TOKEN },
      stopAfterItems: (stage, attempt) => (stage === 'fanout' && attempt <= 2 ? 12 : undefined),
    });
    assert.equal(result.iam.denied, 0, result.error);
    // Then the third attempt finishes the run
    assert.equal(result.status, 'SUCCEEDED', result.error);
    assert.equal(result.succeeded, 40);
    const fanout = fanoutJob(result.jobs);
    assert.deepEqual(
      fanout.attempts.map((a) => a.exitCode),
      [ExitCode.TERMINATED, ExitCode.TERMINATED, ExitCode.OK],
      'stopped twice (exit 143, saving progress), then done',
    );
    // and each attempt started from what the ones before it had saved
    const resumed = (await starts(join(result.outDir, 'jobs.log'))).map((s) => s.resumed);
    assert.equal(resumed.length, 3);
    assert.equal(resumed[0], 0);
    assert.ok(resumed[1]! >= 12 && resumed[1]! < 40, `attempt 2 resumed after attempt 1's outcomes (${resumed[1]})`);
    assert.ok(resumed[2]! >= resumed[1]! + 12 && resumed[2]! < 40, `attempt 3 resumed after attempt 2's outcomes (${resumed[2]})`);
    // Each stop may lose the calls in flight (concurrency 2) but never redoes finished items.
    const requests = source.stats().requests - before;
    assert.ok(requests >= 40 && requests <= 40 + 2 * 2, `${requests} requests for 40 items over 2 stops`);
  });

  it('a fan-out that fails for good still delivers what was done, with the failure email', async () => {
    const input = customers(60).map((c, n) => ({ ...c, id: String(300000 + n * 7) }));
    const file = join(dir, 'doomed.csv');
    await writeCustomersCsv(file, input);
    // Given a fan-out whose job definition allows one attempt (set in the synthesized template), stopped after 20 outcomes
    const result = await runLocal({
      file,
      pipeline: 'tax-due',
      config: taxConfig(source.url, { concurrency: 2, chunkSize: 1000 }),
      outDir: join(dir, 'out-doomed'),
      env: { TAX_API_TOKEN: TOKEN },
      editTemplates: (t) => {
        const def = Object.entries(t.compute.template.Resources ?? {}).find(([id]) => id.startsWith('PipelinetaxdueFanoutDefinition'))![1];
        (def.Properties!.RetryStrategy as { Attempts: number }).Attempts = 1;
      },
      stopAfterItems: (stage) => (stage === 'fanout' ? 20 : undefined),
    });
    assert.equal(result.iam.denied, 0);
    assert.equal(result.status, 'FAILED');
    assert.deepEqual(
      fanoutJob(result.jobs).attempts.map((a) => a.exitCode),
      [ExitCode.TERMINATED],
    );
    assert.match(result.error ?? '', /processing the work items.*stopped/);
    // 20 outcomes, and at most the one other call in flight when the child stopped
    assert.ok(result.succeeded >= 20 && result.succeeded <= 21, `the items done before the stop (${result.succeeded})`);

    assert.equal(result.mails.length, 1, 'one email: the failure, with the partial results');
    const mail = result.mails[0]!;
    assert.match(
      mail.subject,
      new RegExp(`FAILED tax-due: doomed\\.csv - partial results: ${result.succeeded} done, ${60 - result.succeeded} not processed`),
    );
    assert.equal(mail.attachments.length, 1);
    assert.ok(mail.attachments[0]!.content.equals(await readFile(result.resultFile!)));

    const rows = (await readSheets(result.resultFile!)).get('Results')!.slice(1);
    assert.equal(rows.length, 60, 'every row is in the workbook');
    const done = rows.filter((r) => r[8] === 'done');
    const notProcessed = rows.filter((r) => /^not processed/.test(String(r[9])));
    assert.equal(done.length, result.succeeded);
    assert.equal(done.length + notProcessed.length, 60);
    assert.ok(
      result.jobs.some((j) => j.request.stage === 'cleanup' && j.state === 'SUCCEEDED'),
      'cleanup ran after the partial results',
    );
  });
});

function fanoutJob(jobs: LocalJob[]): LocalJob {
  const fanout = jobs.filter((j) => j.request.stage === 'fanout');
  assert.equal(fanout.length, 1, 'one fan-out job');
  return fanout[0]!;
}

/** The "fan-out child starting" lines of a run's jobs.log, in attempt order. */
async function starts(logFile: string): Promise<{ attempt: number; resumed: number }[]> {
  const out: { attempt: number; resumed: number }[] = [];
  for (const line of (await readFile(logFile, 'utf8')).split('\n')) {
    const m = /^\[fanout#(\d+)\] (\{.*\})$/.exec(line);
    if (!m) continue;
    const entry = JSON.parse(m[2]!) as { message?: string; resumed?: number };
    if (entry.message === 'fan-out child starting') out.push({ attempt: Number(m[1]), resumed: entry.resumed! });
  }
  return out.sort((a, b) => a.attempt - b.attempt);
}
