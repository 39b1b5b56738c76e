/**
 * The run lifecycle: the transition table is whole and consistent, illegal moves are refused (by
 * the type checker where the statuses are literals, at run time otherwise) before anything is
 * written, and the helpers' conditional writes hold against the real DynamoDB emulator.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadPipelinesConfig } from '../../config/pipelines';
import { DynamoRunTable } from '../../runtime/adapters/dynamo-run-table';
import {
  assertTransition,
  fail,
  IllegalTransitionError,
  isTerminal,
  moveRun,
  once,
  openRun,
  RUN_STATUSES,
  SHAPE_PATHS,
  sourcesOf,
  succeed,
  TERMINAL_STATUSES,
  TRANSITIONS,
  type RunStatus,
} from '../../runtime/lifecycle';
import type { RunRecord } from '../../runtime/model';
import { startEmulatorFixture, type EmulatorFixture } from './adapters/fixtures';

let counter = 0;
function newRun(status: RunRecord['status'] = 'STARTED'): RunRecord {
  const config = loadPipelinesConfig().pipelines[0]!;
  return {
    runId: `lifecycle-${Date.now().toString(36)}-${++counter}`,
    pipeline: config.name,
    inputKey: `intake/${config.name}/customers.xlsx`,
    inputName: 'customers.xlsx',
    status,
    config,
    sender: 'batch-fanout@example.com',
    createdAt: 1_700_000_000_000,
  };
}

describe('run lifecycle: the table', () => {
  it('names a list of next statuses for every status, each a known status', () => {
    assert.deepEqual(Object.keys(TRANSITIONS).sort(), [...RUN_STATUSES].sort());
    for (const [from, next] of Object.entries(TRANSITIONS)) {
      for (const to of next) assert.ok((RUN_STATUSES as readonly string[]).includes(to), `${from} -> ${to}`);
    }
  });

  it('has exactly SUCCEEDED, FAILED and CANCELLED as final statuses', () => {
    assert.deepEqual([...TERMINAL_STATUSES].sort(), ['CANCELLED', 'FAILED', 'SUCCEEDED']);
    assert.equal(isTerminal('FANNING_OUT'), false);
    assert.equal(isTerminal('CANCELLED'), true);
  });

  it('lets every status that is not final fail or be cancelled', () => {
    for (const status of RUN_STATUSES.filter((s) => !isTerminal(s))) {
      assert.doesNotThrow(() => assertTransition(status, 'FAILED'));
      assert.doesNotThrow(() => assertTransition(status, 'CANCELLED'));
    }
  });

  it('walks the happy path of each job shape through legal moves only', () => {
    for (const [shape, path] of Object.entries(SHAPE_PATHS)) {
      for (let i = 1; i < path.length; i++) {
        assert.doesNotThrow(() => assertTransition(path[i - 1]!, path[i]!), `${shape}: ${path[i - 1]} -> ${path[i]}`);
      }
      assert.equal(isTerminal(path.at(-1)!), true, `${shape} ends in a final status`);
    }
  });

  it('keeps the sources of the items moves that the stages used before the lifecycle existed', () => {
    // The items shape's runs never are in the planned statuses, so these are today's lists.
    const items = (to: RunStatus) => sourcesOf(to).filter((s) => (SHAPE_PATHS.items as readonly string[]).includes(s));
    assert.deepEqual(items('SPLITTING'), ['STARTED', 'SPLITTING']);
    assert.deepEqual(items('FANNING_OUT'), ['STARTED', 'SPLITTING']);
    assert.deepEqual(items('CONSOLIDATING'), ['FANNING_OUT', 'CONSOLIDATING']);
    assert.deepEqual(items('SUCCEEDED'), ['FANNING_OUT', 'CONSOLIDATING']);
    assert.deepEqual(items('FAILED'), ['STARTED', 'SPLITTING', 'FANNING_OUT', 'CONSOLIDATING']);
  });

  it('refuses a move out of a final status with a message naming both statuses', () => {
    assert.throws(
      () => assertTransition('SUCCEEDED', 'CONSOLIDATING'),
      (err: unknown) =>
        err instanceof IllegalTransitionError &&
        err.message ===
          'illegal run transition SUCCEEDED -> CONSOLIDATING: SUCCEEDED is final, a run leaves it for nothing (see runtime/lifecycle.ts)',
    );
  });

  it('refuses a backward move and says where the run may go instead', () => {
    assert.throws(
      () => assertTransition('CONSOLIDATING', 'SPLITTING'),
      /illegal run transition CONSOLIDATING -> SPLITTING: from CONSOLIDATING a run goes only to CONSOLIDATING, SUCCEEDED, FAILED or CANCELLED/,
    );
  });

  it('refuses a status read from storage that is not a run status', () => {
    assert.throws(() => assertTransition('DONE' as RunStatus, 'FAILED'), /"DONE" is not a run status/);
  });
});

describe('run lifecycle against dynalite', () => {
  let fx: EmulatorFixture;
  let table: DynamoRunTable;

  before(async () => {
    fx = await startEmulatorFixture();
    table = new DynamoRunTable(fx.clients.dynamo, fx.emu.table);
  });
  after(async () => fx.close());

  it('moves a run along the items path and refuses to move it backwards', async () => {
    // given a run that has split
    const run = newRun();
    await openRun(table, { ...run, status: 'STARTED' });
    assert.equal(await moveRun(table, run.runId, 'SPLITTING'), true);
    assert.equal(await moveRun(table, run.runId, 'FANNING_OUT'), true);
    // when a late, duplicated split moves it again
    const late = await moveRun(table, run.runId, 'SPLITTING');
    // then nothing changed
    assert.equal(late, false);
    assert.equal((await table.getRun(run.runId))?.status, 'FANNING_OUT');
  });

  it('fails a run once: the first reason wins, and a failed run is not succeeded afterwards', async () => {
    // given a run that fan-out failed
    const run = newRun();
    await openRun(table, { ...run, status: 'STARTED' });
    await moveRun(table, run.runId, 'FANNING_OUT');
    // when two failure events and a late consolidate arrive
    const first = await fail(table, run.runId, 'chunk 3 failed', 10);
    const second = await fail(table, run.runId, 'dependent job failed', 20);
    const late = await succeed(table, run.runId, 30);
    // then
    assert.deepEqual([first, second, late], [true, false, false]);
    const stored = await table.getRun(run.runId);
    assert.equal(stored?.status, 'FAILED');
    assert.equal(stored?.error, 'chunk 3 failed');
    assert.equal(stored?.finishedAt, 10);
  });

  it('writes the patch of a move in the same conditional update', async () => {
    const run = newRun();
    await openRun(table, { ...run, status: 'STARTED' });
    await moveRun(table, run.runId, 'FANNING_OUT');
    await moveRun(table, run.runId, 'CONSOLIDATING');
    assert.equal(await succeed(table, run.runId, 42, { resultKey: 'results/x.xlsx' }), true);
    const stored = await table.getRun(run.runId);
    assert.deepEqual([stored?.status, stored?.finishedAt, stored?.resultKey], ['SUCCEEDED', 42, 'results/x.xlsx']);
  });

  it('refuses an illegal move before writing anything: a type error with literals, a runtime error otherwise', async () => {
    // given a run in FANNING_OUT
    const run = newRun();
    await openRun(table, { ...run, status: 'STARTED' });
    await moveRun(table, run.runId, 'FANNING_OUT');
    // when code asks for moves the lifecycle does not have
    // @ts-expect-error -- nothing leads to WAITING_FOR_INPUTS: a run is opened in it
    const toOpening = moveRun(table, run.runId, 'WAITING_FOR_INPUTS');
    // @ts-expect-error -- SUCCEEDED is final, it is no source of CONSOLIDATING
    const fromFinal = moveRun(table, run.runId, 'CONSOLIDATING', { from: ['SUCCEEDED'] });
    const dynamic: RunStatus[] = JSON.parse('["FAILED"]');
    const fromDynamic = moveRun(table, run.runId, 'FANNING_OUT', { from: dynamic as never[] });
    // then each is an IllegalTransitionError, and the run is untouched
    await assert.rejects(toOpening, /illegal run transition \(new run\) -> WAITING_FOR_INPUTS: no status leads to WAITING_FOR_INPUTS/);
    await assert.rejects(fromFinal, /illegal run transition SUCCEEDED -> CONSOLIDATING: SUCCEEDED is final/);
    await assert.rejects(fromDynamic, IllegalTransitionError);
    assert.equal((await table.getRun(run.runId))?.status, 'FANNING_OUT');
  });

  it('opens a run only in an opening status', async () => {
    const run = newRun();
    await assert.rejects(
      // @ts-expect-error -- a run cannot be opened half-way
      openRun(table, { ...run, status: 'FANNING_OUT' }),
      /\(new run\) -> FANNING_OUT: a run opens as STARTED, WAITING_FOR_INPUTS or FAILED/,
    );
    assert.equal(await table.getRun(run.runId), undefined);
  });

  it('does a step once, and releases it for a retry when the work throws', async () => {
    // given a run
    const run = newRun();
    await openRun(table, { ...run, status: 'STARTED' });
    let calls = 0;
    // when the first attempt fails, a retry succeeds and a duplicate arrives after it
    await assert.rejects(
      once(table, run.runId, 'result-email', 't1', async () => {
        calls++;
        throw new Error('SES is down');
      }),
      /SES is down/,
    );
    const retry = await once(table, run.runId, 'result-email', 't2', async () => ++calls);
    const duplicate = await once(table, run.runId, 'result-email', 't3', async () => ++calls);
    // then the work ran twice (the failure and the retry), never for the duplicate
    assert.deepEqual(retry, { claimed: true, value: 2 });
    assert.deepEqual(duplicate, { claimed: false });
    assert.equal((await table.getRun(run.runId))?.steps?.['result-email'], 't2');
  });

  it('keeps a claim when releaseOnError says so', async () => {
    const run = newRun();
    await openRun(table, { ...run, status: 'STARTED' });
    await assert.rejects(
      once(table, run.runId, 'chain', 'submitting', async () => Promise.reject(new Error('half submitted')), {
        releaseOnError: () => false,
      }),
    );
    assert.equal((await table.getRun(run.runId))?.steps?.chain, 'submitting');
  });
});

describe('run lifecycle: one place', () => {
  it('leaves status conditions to the lifecycle module and the run table adapter', () => {
    // The acceptance check, kept: no stage or handler writes a status condition of its own.
    const allowed = new Set(['runtime/lifecycle.ts', 'runtime/adapters/dynamo-run-table.ts', 'runtime/ports.ts']);
    const offenders: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (statSync(path).isDirectory()) walk(path);
        else if (path.endsWith('.ts') && !allowed.has(path) && readFileSync(path, 'utf8').includes('statusIn')) offenders.push(path);
      }
    };
    for (const dir of ['batch-jobs', 'runtime', 'lambda']) walk(dir);
    assert.deepEqual(offenders, []);
  });
});
