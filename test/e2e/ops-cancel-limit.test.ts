/**
 * Operating a kept local run while it goes: `fanout status` lists it and shows it per chunk,
 * `fanout limit --rate` slows the data source down (asserted on the source's own per-second
 * counts, from the moment every child logged the change), and `fanout cancel` (from another
 * process, as a person would) stops the fan-out: the run ends CANCELLED, the partial results are
 * emailed (done rows with their values, the rest "not processed"), and cleanup follows.
 * Nothing here waits on a timer: each step starts when the source has seen enough requests.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { taxDueFor } from '../../local/sources/demo-data-source';
import { runLocal, type LocalRunResult } from '../../local/local-run';
import type { RunDetail, RunSummary } from '../../bin/ops/runs';
import { customers, readSheets, taxConfig, TOKEN, writeCustomersCsv } from './fixtures';
import { fanoutInProcess, fanoutProcess, jsonOf } from './ops-helpers';
import { startOpsSource, type OpsSource } from './ops-source';

let dir: string;
let source: OpsSource;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-ops-'));
  source = await startOpsSource({ latencyMs: 200 });
});
after(async () => {
  await source.close();
  await rm(dir, { recursive: true, force: true });
});

/** Epoch ms at which each fan-out child first logged a fleet share with a rate (the operator's limit). */
async function limitPickups(logFile: string): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  if (!existsSync(logFile)) return seen;
  for (const line of (await readFile(logFile, 'utf8')).split('\n')) {
    const m = /^\[(fanout\[\d+\])#\d+\] (\{.*\})$/.exec(line);
    if (!m) continue;
    const entry = JSON.parse(m[2]!) as { message?: string; time?: string; ratePerSecond?: number };
    // The fleet share a child takes up once the operator's rate is in the fleet shards.
    if (entry.message === 'fleet share' && typeof entry.ratePerSecond === 'number' && entry.time && !seen.has(m[1]!)) {
      seen.set(m[1]!, Date.parse(entry.time));
    }
  }
  return seen;
}

async function until(check: () => Promise<boolean> | boolean): Promise<void> {
  while (!(await check())) await new Promise((r) => setTimeout(r, 100));
}

describe('status, limit and cancel on a kept local run', () => {
  it('shows the run, slows the source within seconds, and cancels with the partial results email', async () => {
    const keep = join(dir, 'kept');
    const file = join(dir, 'customers.csv');
    const people = customers(1200).map((c) => ({ ...c, year: 2020 }));
    await writeCustomersCsv(file, people);
    const config = taxConfig(source.url, { chunkSize: 300, concurrency: 2 });
    const running: Promise<LocalRunResult> = runLocal({
      file,
      pipeline: 'tax-due',
      config,
      outDir: join(dir, 'out'),
      keepDir: keep,
      maxParallel: 4,
      env: { TAX_API_TOKEN: TOKEN },
    });
    running.catch(() => undefined);

    // Status during the run.
    await Promise.race([source.seen(100), running.then((r) => assert.fail(`the run ended early: ${r.status} ${r.error ?? ''}`))]);
    const list = jsonOf<{ runs: RunSummary[] }>(await fanoutInProcess(['status', '--local', keep, '--json']));
    assert.equal(list.runs.length, 1);
    const runId = list.runs[0]!.runId;
    assert.equal(list.runs[0]!.status, 'FANNING_OUT');
    assert.equal(list.runs[0]!.input, 'customers.csv');
    // Progress reaches the run table with each result part (every 500 items or 5 s).
    let during: RunDetail | undefined;
    await until(async () => {
      during = jsonOf<RunDetail>(await fanoutInProcess(['status', runId, '--local', keep, '--json']));
      return during.itemsDone > 0 || during.status !== 'FANNING_OUT';
    });
    assert.ok(during);
    assert.equal(during.status, 'FANNING_OUT');
    assert.equal(during.stages.split, 'done');
    assert.equal(during.stages.fanout, 'running');
    assert.equal(during.chunkProgress.length, 4);
    assert.equal(during.items, 1200);
    assert.ok(during.itemsDone > 0, 'items are done');
    assert.ok(during.callsPerSecond !== null && during.callsPerSecond > 0, `a call rate: ${during.callsPerSecond}`);
    assert.deepEqual(during.limits, { ratePerSecond: null, concurrency: 8, setBy: 'pipeline' });

    // Limit: 8 calls/s fleet-wide (2 per child; the bucket holds at most 1 token per child). Before it,
    // the source sees up to 40/s (4 children, 2 in flight, 200 ms).
    const limited = await fanoutInProcess(['limit', runId, '--rate', '8', '--local', keep]);
    assert.equal(limited.code, 0, limited.stderr);
    const requestsAtLimit = source.requests;
    const logFile = join(keep, 'jobs.log');
    let pickedUp = 0;
    await until(async () => {
      const pickups = await limitPickups(logFile);
      if (pickups.size < 4) return false;
      pickedUp = Math.max(...pickups.values());
      return true;
    });
    // Three whole seconds of the source's clock, from the third after the last child took up a
    // fleet share with the rate (the fleet applies a limit at its next epoch; calls let through
    // before are still arriving).
    const first = Math.floor(pickedUp / 1000) + 3;
    await until(() => Math.floor(Date.now() / 1000) >= first + 3 && source.requests > requestsAtLimit);
    const perSecond = source.perSecond();
    const before = [...perSecond].filter(([s]) => s < Math.floor(pickedUp / 1000) - 3).map(([, n]) => n);
    const afterLimit = [first, first + 1, first + 2].map((s) => perSecond.get(s) ?? 0);
    assert.ok(Math.max(...before) > 13, `before the limit the source saw more than the cap: ${before.join(', ')}`);
    for (const n of afterLimit) assert.ok(n <= 8 + 4 + 1, `after the limit at most 8/s (+ burst): ${afterLimit.join(', ')}`);
    const detail = jsonOf<RunDetail>(await fanoutInProcess(['status', runId, '--local', keep, '--json']));
    assert.deepEqual(detail.limits, { ratePerSecond: 8, concurrency: 8, setBy: 'fanout limit' });

    // Cancel from another process.
    const cancelled = await fanoutProcess(['cancel', runId, '--local', keep, '--json'], dir);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    const outcome = jsonOf<{ terminated: string[]; cancelled: string[]; status: string }>(cancelled);
    assert.equal(outcome.status, 'CANCELLED');
    assert.equal(outcome.terminated.length, 2, 'split and fan-out were terminated');
    assert.equal(outcome.cancelled.length, 2, 'consolidate and cleanup were cancelled');

    const result = await running;
    assert.equal(result.status, 'CANCELLED');
    assert.equal(result.iam.denied, 0, result.error);
    assert.match(result.run?.error ?? '', /Cancelled by .* with fanout cancel/);
    assert.ok(result.run?.cleanedAt, 'cleanup followed');
    assert.equal(result.mails.length, 1, result.mails.map((m) => m.subject).join('; '));
    const mail = result.mails[0]!;
    assert.match(mail.subject, /^\[batch-fanout\] CANCELLED tax-due: customers\.csv - partial results: [\d,]+ done, [\d,]+ not processed$/);
    assert.match(mail.text ?? '', /was cancelled before it finished/);
    const fanoutJob = result.jobs.find((j) => j.request.stage === 'fanout' && !j.request.environment)!;
    assert.equal(fanoutJob.state, 'FAILED');
    assert.equal(
      fanoutJob.attempts.filter((a) => a.exitCode !== 0 && a.exitCode !== 143).length,
      0,
      'children stopped by SIGTERM, saving progress',
    );

    // The partial workbook: every row, done ones with the source's values, the others not processed.
    const sheets = await readSheets(result.resultFile!);
    const rows = sheets.get('Results')!;
    assert.equal(rows.length, 1 + people.length);
    const header = rows[0] as string[];
    const col = (name: string) => header.indexOf(name);
    let done = 0;
    let notProcessed = 0;
    for (const [k, person] of people.entries()) {
      const row = rows[k + 1]!;
      assert.equal(row[col('Customer ID')], person.id);
      if (row[col('Status')] === 'done') {
        done++;
        assert.equal(row[col('Tax Due')], taxDueFor(person.id, 2020).taxDue, `row ${k + 2}`);
      } else {
        notProcessed++;
        assert.match(String(row[col('Error')]), /not processed/, `row ${k + 2}`);
      }
    }
    assert.ok(done > 0 && notProcessed > 0, `some done (${done}) and some not processed (${notProcessed})`);
    assert.equal(done, result.run?.counts?.succeeded);
    assert.match(mail.subject, new RegExp(`${done.toLocaleString('en-US')} done, ${notProcessed.toLocaleString('en-US')} not processed`));

    // Status after the run: the emulators are started again on the kept folder.
    assert.ok(!existsSync(join(keep, 'endpoints.json')), 'the run process no longer serves the folder');
    const afterRun = await fanoutInProcess(['status', runId, '--local', keep, '--json']);
    assert.equal(afterRun.code, 1, 'a cancelled run exits 1, as a failed fanout run');
    const ended = jsonOf<RunDetail>(afterRun);
    assert.equal(ended.status, 'CANCELLED');
    assert.equal(ended.stages.fanout, 'cancelled');
    assert.equal(ended.stages.cleanup, 'done');
    assert.equal(ended.itemsDone, done);

    // The run cannot be cancelled or limited again; an unknown run id says so.
    const again = await fanoutInProcess(['cancel', runId, '--local', keep]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /has already ended \(CANCELLED\); nothing to cancel/);
    const unknown = await fanoutInProcess(['limit', 'no-such-run', '--rate', '5', '--local', keep]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /no run no-such-run in local run kept in/);
  });
});
