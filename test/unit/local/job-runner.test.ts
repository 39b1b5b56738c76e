/**
 * The local job runner reproduces the AWS Batch rules the pipeline relies on: array index and
 * attempt environment, dependsOn, retries on non-zero exit (not on bad-input exit codes),
 * per-attempt timeout (driven by a clock the test fires, never by wall time), and failure events
 * shaped like EventBridge's.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ExitCode } from '../../../runtime/errors';
import type { BatchJobFailedDetail } from '../../../lambda/handlers/on-job-failed';
import { LocalJobRunner, type LocalJobRunnerOptions, type RunnerClock } from '../../../local/job-runner';
import type { JobRequest, SplitDoneMessage } from '../../../runtime/ports';

/**
 * A stage played by a small script: writes what it saw to $OUT/<stage>-<index>-<attempt>.json,
 * then behaves as $BEHAVIOUR_<stage> says: "ok", "fail-first" (exit 20 on attempt 1),
 * "bad-input" (exit 10), "hang" (says it started with a progress report of 0 done, then never ends),
 * "hang-ignore-term" (the same, and answers SIGTERM with a report of 1 done instead of exiting),
 * "split-done" (announces over IPC), "needs:<file>" (fails unless file exists).
 */
const SCRIPT = `
const fs = require('fs');
const stage = process.argv[1];
const e = process.env;
const idx = e.AWS_BATCH_JOB_ARRAY_INDEX ?? 'none';
fs.writeFileSync(e.OUT + '/' + stage + '-' + idx + '-' + e.AWS_BATCH_JOB_ATTEMPT + '.json', JSON.stringify({
  index: e.AWS_BATCH_JOB_ARRAY_INDEX, attempt: e.AWS_BATCH_JOB_ATTEMPT, runId: e.FANOUT_RUN_ID, jobId: e.AWS_BATCH_JOB_ID, extra: e.EXTRA,
  stopAfter: e.FANOUT_TEST_STOP_AFTER_ITEMS,
}));
const b = e['BEHAVIOUR_' + stage] || 'ok';
if (b === 'fail-first' && e.AWS_BATCH_JOB_ATTEMPT === '1') process.exit(20);
if (b === 'bad-input') { console.error(JSON.stringify({ level: 'error', message: 'split failed', error: 'missing column' })); process.exit(10); }
const report = (done) => process.send({ type: 'progress', report: { stage, done, total: 1 } });
if (b === 'hang-ignore-term') process.on('SIGTERM', () => report(1));
if (b.startsWith('hang')) { report(0); setInterval(() => {}, 1000); }
if (b === 'split-done') process.send({ type: 'split-done', message: { runId: e.FANOUT_RUN_ID, pipeline: 'p', chunks: 3, items: 7 } }, () => process.disconnect());
if (b.startsWith('needs:') && !fs.existsSync(b.slice(6))) process.exit(20);
if (b === 'mark') fs.writeFileSync(e.OUT + '/' + stage + '.done', '');
`;

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'runner-test-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function freshOut(name: string): Promise<string> {
  const out = join(dir, name);
  await import('node:fs/promises').then((f) => f.mkdir(out));
  return out;
}

function runner(out: string, behaviour: Record<string, string>, extra: Partial<LocalJobRunnerOptions> = {}) {
  const env: Record<string, string> = { OUT: out };
  for (const [stage, b] of Object.entries(behaviour)) env[`BEHAVIOUR_${stage}`] = b;
  const failed: BatchJobFailedDetail[] = [];
  const r = new LocalJobRunner({
    env,
    commandFor: (stage) => ({ command: process.execPath, args: ['-e', SCRIPT, stage] }),
    maxParallel: 2,
    attempts: 3,
    onJobFailed: async (d) => {
      failed.push(d);
    },
    ...extra,
  });
  return { r, failed };
}

const job = (stage: JobRequest['stage'], more: Partial<JobRequest> = {}): JobRequest => ({
  name: `job-${stage}`,
  stage,
  runId: 'run-1',
  pipeline: 'p',
  compute: 'fargate-spot',
  ...more,
});

/** A clock whose timers fire only when the test says so. */
class ManualClock implements RunnerClock {
  readonly timers: { ms: number; fire: () => void; state: 'waiting' | 'fired' | 'cancelled' }[] = [];

  setTimer(ms: number, fire: () => void): () => void {
    const timer = { ms, fire, state: 'waiting' as 'waiting' | 'fired' | 'cancelled' };
    this.timers.push(timer);
    return () => {
      if (timer.state === 'waiting') timer.state = 'cancelled';
    };
  }

  /** Fires the waiting timers of `ms`; returns how many. */
  fire(ms: number): number {
    const due = this.timers.filter((t) => t.state === 'waiting' && t.ms === ms);
    for (const t of due) {
      t.state = 'fired';
      t.fire();
    }
    return due.length;
  }

  waiting(): number[] {
    return this.timers.filter((t) => t.state === 'waiting').map((t) => t.ms);
  }
}

async function seen(out: string): Promise<Array<Record<string, string | undefined> & { file: string }>> {
  const files = (await readdir(out)).filter((f) => f.endsWith('.json')).sort();
  return Promise.all(files.map(async (file) => ({ file, ...JSON.parse(await readFile(join(out, file), 'utf8')) })));
}

describe('LocalJobRunner', () => {
  it('gives each array child its index, attempt 1, the run id and a child job id', async () => {
    const out = await freshOut('array');
    const { r } = runner(out, {});
    const { jobId } = await r.submit(job('fanout', { arraySize: 4, environment: { EXTRA: 'x' } }));
    await r.idle();
    const runs = await seen(out);
    assert.deepEqual(runs.map((s) => s.index).sort(), ['0', '1', '2', '3']);
    assert.ok(runs.every((s) => s.attempt === '1' && s.runId === 'run-1' && s.extra === 'x'));
    assert.deepEqual(
      runs.map((s) => s.jobId).sort(),
      [0, 1, 2, 3].map((i) => `${jobId}:${i}`),
    );
    assert.equal(r.list()[0]!.state, 'SUCCEEDED');
  });

  it('runs a plain job without an array index', async () => {
    const out = await freshOut('plain');
    const { r } = runner(out, {});
    await r.submit(job('split'));
    await r.idle();
    const runs = await seen(out);
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.index, undefined);
  });

  it('starts a dependent job only after its dependency succeeded', async () => {
    const out = await freshOut('depends');
    const { r } = runner(out, { split: 'mark', fanout: `needs:${join(out, 'split.done')}` }, { attempts: 1 });
    const a = await r.submit(job('split'));
    await r.submit(job('fanout', { dependsOn: [a.jobId] }));
    await r.idle();
    assert.deepEqual(
      r.list().map((j) => j.state),
      ['SUCCEEDED', 'SUCCEEDED'],
    );
  });

  it('retries a child that exits non-zero and records both attempts', async () => {
    const out = await freshOut('retry');
    const { r, failed } = runner(out, { fanout: 'fail-first' });
    await r.submit(job('fanout', { arraySize: 2 }));
    await r.idle();
    const runs = await seen(out);
    assert.equal(runs.length, 4);
    assert.deepEqual(runs.map((s) => `${s.index}/${s.attempt}`).sort(), ['0/1', '0/2', '1/1', '1/2']);
    assert.equal(r.list()[0]!.state, 'SUCCEEDED');
    assert.equal(failed.length, 0);
  });

  it('does not retry the bad-input exit code, and reports the failure like EventBridge', async () => {
    const out = await freshOut('bad-input');
    const { r, failed } = runner(out, { split: 'bad-input' });
    const { jobId } = await r.submit(job('split'));
    await r.idle();
    assert.equal((await seen(out)).length, 1);
    assert.equal(failed.length, 1);
    const d = failed[0]!;
    assert.equal(d.jobId, jobId);
    assert.equal(d.status, 'FAILED');
    assert.deepEqual(d.parameters, { runId: 'run-1', stage: 'split', pipeline: 'p' });
    assert.equal(d.container?.exitCode, ExitCode.BAD_INPUT);
    assert.equal(d.statusReason, 'Essential container in task exited');
    assert.match(r.list()[0]!.attempts[0]!.logTail ?? '', /missing column/);
  });

  it('fails a job whose dependency failed, with "Dependent Job failed"', async () => {
    const out = await freshOut('dep-failed');
    const { r, failed } = runner(out, { split: 'bad-input' });
    const a = await r.submit(job('split'));
    await r.submit(job('consolidate', { dependsOn: [a.jobId] }));
    await r.idle();
    const [, b] = r.list();
    assert.equal(b!.state, 'FAILED');
    assert.equal(b!.statusReason, 'Dependent Job failed');
    assert.equal((await seen(out)).filter((s) => s.file.startsWith('consolidate')).length, 0);
    assert.ok(failed.some((d) => d.statusReason === 'Dependent Job failed' && d.parameters?.stage === 'consolidate'));
  });

  it('reports a failed array child with its index, then the parent', async () => {
    const out = await freshOut('child-failed');
    const { r, failed } = runner(out, { fanout: 'bad-input' });
    const { jobId } = await r.submit(job('fanout', { arraySize: 2 }));
    await r.idle();
    assert.deepEqual(failed.map((d) => d.jobId).sort(), [jobId, `${jobId}:0`, `${jobId}:1`].sort());
    assert.equal(failed.find((d) => d.jobId === `${jobId}:1`)?.arrayProperties?.index, 1);
    assert.equal(failed.find((d) => d.jobId === jobId)?.statusReason, 'Array Child Job failed');
  });

  it('stops an attempt with SIGTERM when its timeout fires, and, as AWS Batch, does not retry it', async () => {
    // Given a stage that never ends, and a clock whose timers fire when the test says
    const out = await freshOut('timeout');
    const clock = new ManualClock();
    const fired: number[] = [];
    const { r, failed } = runner(
      out,
      { cleanup: 'hang' },
      {
        timeoutMs: 300_000,
        killGraceMs: 7_000,
        attempts: 2,
        clock,
        // When each attempt has started, its timeout passes
        onProgress: () => fired.push(clock.fire(300_000)),
      },
    );
    await r.submit(job('cleanup'));
    await r.idle();
    // Then the attempt was stopped by SIGTERM, and the job failed for good without a second attempt
    assert.deepEqual(fired, [1], "one timeout, armed with the job's timeout");
    const attempts = r.list()[0]!.attempts;
    assert.deepEqual(
      attempts.map((a) => [a.attempt, a.signal, a.exitCode]),
      [[1, 'SIGTERM', 143]],
    );
    assert.equal((await seen(out)).length, 1);
    assert.equal(failed.length, 1);
    assert.match(failed[0]!.statusReason ?? '', /Job attempt duration exceeded timeout/);
    assert.deepEqual(clock.waiting(), [], 'the kill timers were cancelled when the children ended');
  });

  it('kills an attempt that ignores SIGTERM once the grace has passed', async () => {
    // Given a stage that never ends and ignores SIGTERM
    const out = await freshOut('kill');
    const clock = new ManualClock();
    const { r, failed } = runner(
      out,
      { cleanup: 'hang-ignore-term' },
      {
        timeoutMs: 300_000,
        killGraceMs: 7_000,
        attempts: 1,
        clock,
        // When its timeout passes (report 0: started), then the grace (report 1: it got SIGTERM and stayed)
        onProgress: (_job, report) => clock.fire(report.done === 0 ? 300_000 : 7_000),
      },
    );
    await r.submit(job('cleanup'));
    await r.idle();
    // Then SIGKILL ended it
    assert.deepEqual(
      r.list()[0]!.attempts.map((a) => a.signal),
      ['SIGKILL'],
    );
    assert.equal(failed.length, 1);
    assert.match(failed[0]!.statusReason ?? '', /timeout/);
  });

  it('hands the stop-after-items test hook to the attempts it names only', async () => {
    const out = await freshOut('stop-after');
    const { r } = runner(
      out,
      { fanout: 'fail-first' },
      {
        stopAfterItems: (stage, attempt, index) => (stage === 'fanout' && attempt === 1 && index === 1 ? 5 : undefined),
      },
    );
    await r.submit(job('fanout', { arraySize: 2 }));
    await r.idle();
    const runs = await seen(out);
    assert.deepEqual(runs.map((s) => `${s.index}/${s.attempt}:${s.stopAfter ?? '-'}`).sort(), ['0/1:-', '0/2:-', '1/1:5', '1/2:-']);
  });

  it('delivers split-done over IPC to the handler, and idle() waits for it', async () => {
    const out = await freshOut('ipc');
    const got: SplitDoneMessage[] = [];
    const { r } = runner(
      out,
      { split: 'split-done' },
      {
        onSplitDone: async (m) => {
          await new Promise((res) => setTimeout(res, 50));
          got.push(m);
        },
      },
    );
    await r.submit(job('split'));
    await r.idle();
    assert.deepEqual(got, [{ runId: 'run-1', pipeline: 'p', chunks: 3, items: 7 }]);
  });

  it('refuses an array size over 10,000', async () => {
    const { r } = runner(await freshOut('too-big'), {});
    await assert.rejects(r.submit(job('fanout', { arraySize: 10_001 })), /2\.\.10,000/);
  });
  it('terminates a running job (SIGTERM, no further attempt) and fails a waiting dependant with the reason, as TerminateJob', async () => {
    // Given a running job that would be retried, and a job that depends on it
    const out = await freshOut('terminate');
    let r!: LocalJobRunner;
    let running = '';
    ({ r } = runner(out, { fanout: 'hang' }, { onProgress: () => r.terminate(running, 'fanout cancel of run run-1') }));
    const first = await r.submit(job('fanout'));
    running = first.jobId;
    const after = await r.submit(job('consolidate', { dependsOn: [first.jobId] }));
    // When it is terminated as soon as it runs
    await r.idle();
    // Then it stopped on SIGTERM after one attempt, failed with the reason, and its dependant never ran
    const [stopped, dependant] = [r.get(first.jobId)!, r.get(after.jobId)!];
    assert.equal(stopped.state, 'FAILED');
    assert.equal(stopped.statusReason, 'fanout cancel of run run-1');
    assert.deepEqual(
      stopped.attempts.map((a) => [a.attempt, a.signal]),
      [[1, 'SIGTERM']],
    );
    assert.equal(dependant.state, 'FAILED');
    assert.equal(dependant.attempts.length, 0);
    assert.equal(r.terminate('no-such-job', 'x'), false, 'an unknown job is not found');
  });
});
