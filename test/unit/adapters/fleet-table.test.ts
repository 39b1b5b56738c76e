/**
 * The fan-out fleet's shared state in the run table (DynamoRunTable against dynalite), and the
 * shares FleetMember takes from it as children come and go. Epochs are given explicitly, so
 * nothing here depends on the clock.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FleetMember, type FleetShare } from '../../../batch-jobs/stages/fleet';
import { DynamoRunTable } from '../../../runtime/adapters/dynamo-run-table';
import { fleetLayout } from '../../../runtime/fleet';
import type { RunRecord } from '../../../runtime/model';
import { startEmulatorFixture, type EmulatorFixture } from './fixtures';

let counter = 0;
const newRunId = () => `fleet-${process.pid}-${++counter}`;

function run(runId: string, chunks: number): RunRecord {
  return {
    runId,
    pipeline: 'tax-due',
    inputKey: 'intake/tax-due/x.csv',
    inputName: 'x.csv',
    status: 'FANNING_OUT',
    sender: 'a@example.com',
    createdAt: 1,
    counts: { chunks, items: chunks * 10, rows: chunks * 10 },
  };
}

describe('fleet state in the run table', () => {
  let fx: EmulatorFixture;
  let table: DynamoRunTable;

  before(async () => {
    fx = await startEmulatorFixture();
    table = new DynamoRunTable(fx.clients.dynamo, fx.emu.table);
  });
  after(async () => fx.close());

  it('counts heartbeats per epoch over every shard, and takes a child that leaves out of its epoch', async () => {
    // given a fleet spread over 3 shards
    const runId = newRunId();
    for (const shard of [0, 1, 2, 2]) await table.heartbeatFleet(runId, 7, shard);
    await table.heartbeatFleet(runId, 8, 0);

    // when one child of epoch 7 leaves
    const before = await table.readFleet(runId, 7, 3, 1);
    await table.leaveFleet(runId, 7, 2);
    const afterLeave = await table.readFleet(runId, 7, 3, 1);

    // then
    assert.equal(before.live, 4);
    assert.equal(afterLeave.live, 3);
    assert.equal((await table.readFleet(runId, 8, 3, 0)).live, 1, 'epochs are counted apart');
    assert.equal((await table.readFleet(runId, 9, 3, 0)).live, 0, 'an epoch nobody counted in');
    assert.equal(before.limit, undefined, 'no limit until an operator sets one');
  });

  it('keeps an operator limit in every shard; null lifts a field, an absent one keeps it', async () => {
    // given a run of 2,500 chunks (3 shards)
    const runId = newRunId();
    await table.createRun(run(runId, 2_500));
    assert.equal(fleetLayout(2_500).shards, 3);

    // when
    const set = await table.setFleetLimit(runId, { ratePerSecond: 120, concurrency: 40 });
    await table.setFleetLimit(runId, { concurrency: null });

    // then every shard's copy says the same
    assert.equal(set.ratePerSecond, 120);
    assert.equal(set.concurrency, 40);
    for (const shard of [0, 1, 2]) {
      const { limit } = await table.readFleet(runId, 1, 3, shard);
      assert.equal(limit?.ratePerSecond, 120, `shard ${shard}`);
      assert.equal(limit?.concurrency, undefined, `shard ${shard}`);
    }
  });

  it('refuses a limit for a run that does not exist, and a limit that is not positive', async () => {
    await assert.rejects(table.setFleetLimit(newRunId(), { ratePerSecond: 5 }), /run does not exist/);
    await assert.rejects(table.setFleetLimit(newRunId(), { ratePerSecond: 0 }), /positive number/);
  });

  describe('FleetMember shares', () => {
    const member = (runId: string, child: number, shares: FleetShare[] = [], rate: number | null = 300) =>
      new FleetMember({ table, runId, child, chunks: 10, ratePerSecond: rate ?? undefined, onShare: (s) => shares.push(s), now: () => 0 });

    it('split the fleet rate over the children counted in the epoch, as children come and go', async () => {
      const runId = newRunId();
      const [a, b, c] = [member(runId, 0), member(runId, 1), member(runId, 2)];

      // epoch 1: three children
      for (const m of [a, b, c]) await m.heartbeat(1);
      for (const m of [a, b, c]) await m.read(1);
      assert.deepEqual(
        [a, b, c].map((m) => m.share.ratePerSecond),
        [100, 100, 100],
      );

      // epoch 2: c finished (it left epoch 2 after counting itself), the others take up its share
      for (const m of [a, b, c]) await m.heartbeat(2);
      await table.leaveFleet(runId, 2, c.shard);
      for (const m of [a, b]) await m.read(2);
      assert.deepEqual(
        [a, b].map((m) => m.share.ratePerSecond),
        [150, 150],
      );

      // epoch 3: d joins; until it has read a count that includes it, it is not ready
      const d = member(runId, 3);
      await d.read(2);
      assert.equal(d.ready, false, 'a child not yet counted may not call');
      assert.equal(d.share.ratePerSecond, 100, 'a child not yet counted reckons with itself');
      for (const m of [a, b, d]) await m.heartbeat(3);
      for (const m of [a, b, d]) await m.read(3);
      assert.equal(d.ready, true);
      assert.deepEqual(
        [a, b, d].map((m) => m.share.ratePerSecond),
        [100, 100, 100],
      );
      assert.ok(
        [a, b, d].reduce((sum, m) => sum + (m.share.ratePerSecond ?? 0), 0) <= 300,
        'the shares never add up to more than the fleet rate',
      );
    });

    it("follow an operator's limit at the next read, rate and concurrency ceiling alike", async () => {
      const runId = newRunId();
      await table.createRun(run(runId, 10));
      const shares: FleetShare[] = [];
      const [a, b] = [member(runId, 0, shares), member(runId, 1)];
      for (const m of [a, b]) await m.heartbeat(5);
      await a.read(5);
      assert.deepEqual(shares.at(-1), { ratePerSecond: 150, concurrency: undefined, live: 2 });

      await table.setFleetLimit(runId, { ratePerSecond: 60, concurrency: 9 });
      await a.read(5);
      assert.deepEqual(shares.at(-1), { ratePerSecond: 30, concurrency: 4, live: 2 });
    });

    it('a joining child whose write lands after the reads began waits for the next epoch (fake clock)', async () => {
      // GIVEN a fleet of 1-s epochs and a child joining 100 ms into epoch 5
      assert.equal(fleetLayout(10).epochMs, 1_000);
      const readyAt = async (writeLandsAt: number | undefined) => {
        const runId = newRunId();
        let clock = 5_100;
        const slowTable: typeof table = Object.create(table);
        slowTable.heartbeatFleet = async (...args: Parameters<typeof table.heartbeatFleet>) => {
          await table.heartbeatFleet(...args);
          // WHEN its joining write takes until `writeLandsAt`
          if (writeLandsAt !== undefined && clock < writeLandsAt) clock = writeLandsAt;
        };
        const m = new FleetMember({
          table: slowTable,
          runId,
          child: 0,
          chunks: 10,
          ratePerSecond: 300,
          now: () => clock,
          sleep: async (ms) => {
            clock += ms;
          },
          random: () => 0,
        });
        const stop = new AbortController();
        void m.whenReady().then(() => stop.abort());
        await m.run(stop.signal);
        return clock;
      };
      // THEN a write that lands in time makes it ready at epoch 5's read (3/4 in), a late one at epoch 6's
      assert.equal(await readyAt(undefined), 5_750);
      assert.equal(await readyAt(5_600), 6_750);
    });

    it('without a rate or a ceiling, a child is ready at once and counts itself nowhere', async () => {
      const runId = newRunId();
      const a = member(runId, 0, [], null);
      await a.heartbeat(1);
      await a.read(1);
      assert.equal(a.ready, true);
      assert.equal(a.share.ratePerSecond, undefined);
      assert.equal((await table.readFleet(runId, 1, 1, 0)).live, 0, 'no write when nothing is shared');
    });
  });
});
