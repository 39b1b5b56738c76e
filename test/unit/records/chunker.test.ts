import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { InputError } from '../../../runtime/errors';
import type { Row, WorkItem } from '../../../runtime/model';
import { writeChunks, type ChunkingOptions } from '../../../batch-jobs/records/chunker';
import type { SourceRow } from '../../../batch-jobs/records/reader';
import { rejection, withTempDir } from './fixtures';

function sourceRows(rows: { row: Row; problems?: string[] }[], pulled?: { count: number }): AsyncIterable<SourceRow> {
  return (async function* () {
    let n = 1;
    for (const r of rows) {
      n++;
      if (pulled) pulled.count++;
      yield { rowNumber: n, row: r.row, problems: r.problems ?? [] };
    }
  })();
}

/** Runs writeChunks collecting the chunk bodies by chunk number. */
async function chunk(
  rows: AsyncIterable<SourceRow>,
  opts: Partial<ChunkingOptions> & { tmpDir: string; onWrite?: (n: number) => Promise<void> },
) {
  const bodies = new Map<number, Buffer>();
  const { onWrite, ...rest } = opts;
  const result = await writeChunks(rows, {
    chunkSize: 10,
    maxChunks: 10_000,
    writeChunk: async (n, body) => {
      assert.ok(!bodies.has(n), `chunk ${n} written twice`);
      await onWrite?.(n);
      bodies.set(n, body);
    },
    ...rest,
  });
  const chunks = [...bodies.keys()].sort((a, b) => a - b).map((n) => bodies.get(n)!);
  const items = chunks.map((b) =>
    b
      .toString('utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as WorkItem),
  );
  return { result, chunks, items };
}

describe('chunking: one row per item', () => {
  test('items are numbered in input order and cut into chunks of chunkSize', async () => {
    await withTempDir(async (tmpDir) => {
      // given 25 rows and chunks of 10
      const rows = Array.from({ length: 25 }, (_, i) => ({ row: { Id: `c${i}` } }));
      // when they are chunked
      const { result, items } = await chunk(sourceRows(rows), { tmpDir, chunkSize: 10 });
      // then chunk n holds items n*10.., each with its row number and row
      assert.deepEqual(result, { rows: 25, items: 25, chunks: 3, invalidItems: 0 });
      assert.deepEqual(
        items.map((c) => c.length),
        [10, 10, 5],
      );
      assert.deepEqual(items[1]![0], { i: 10, r: [12], d: [{ Id: 'c10' }] });
      assert.deepEqual(
        items.flat().map((it) => it.i),
        Array.from({ length: 25 }, (_, i) => i),
      );
    });
  });

  test('a row count that is a multiple of chunkSize leaves no empty chunk', async () => {
    await withTempDir(async (tmpDir) => {
      const { result, items } = await chunk(sourceRows(Array.from({ length: 20 }, () => ({ row: { Id: 'x' } }))), { tmpDir });
      assert.equal(result.chunks, 2);
      assert.deepEqual(
        items.map((c) => c.length),
        [10, 10],
      );
    });
  });

  test('a row with problems is an item with x; it is counted as invalid', async () => {
    await withTempDir(async (tmpDir) => {
      const rows = [{ row: { Id: 'a' } }, { row: { Id: null }, problems: ['row 3, column "Id": empty, but the column is required'] }];
      const { result, items } = await chunk(sourceRows(rows), { tmpDir });
      assert.equal(result.invalidItems, 1);
      assert.deepEqual(items[0], [
        { i: 0, r: [2], d: [{ Id: 'a' }] },
        { i: 1, r: [3], d: [{ Id: null }], x: ['row 3, column "Id": empty, but the column is required'] },
      ]);
    });
  });

  test('each chunk body is JSONL: one WorkItem per line, ending in a newline', async () => {
    await withTempDir(async (tmpDir) => {
      const { chunks } = await chunk(sourceRows([{ row: { Id: 'a' } }, { row: { Id: 'b' } }]), { tmpDir });
      assert.equal(chunks[0]!.toString('utf8'), '{"i":0,"r":[2],"d":[{"Id":"a"}]}\n{"i":1,"r":[3],"d":[{"Id":"b"}]}\n');
    });
  });

  test('more items than maxChunks allow is an InputError as soon as it is known, naming the limit and what to do', async () => {
    await withTempDir(async (tmpDir) => {
      // given 1,000 rows, 3 chunks of 2 allowed
      const pulled = { count: 0 };
      const rows = Array.from({ length: 1000 }, (_, i) => ({ row: { Id: `c${i}` } }));
      // when chunked
      const err = await rejection(chunk(sourceRows(rows, pulled), { tmpDir, chunkSize: 2, maxChunks: 3 }));
      // then it fails at the 7th item, without reading the rest
      assert.ok(err instanceof InputError);
      assert.equal(pulled.count, 7);
      assert.match(
        err.message,
        /^the input has more than 6 work items, but at most 6 fit in 3 chunks of 2 \(3 is the AWS Batch array limit\)/,
      );
      assert.match(err.message, /Raise the pipeline's chunkSize \(up to 10,000 items per chunk\) or split the file/);
    });
  });

  test('chunk writes run with bounded concurrency, and all of them finish', async () => {
    await withTempDir(async (tmpDir) => {
      let inFlight = 0;
      let most = 0;
      const written: number[] = [];
      const rows = Array.from({ length: 95 }, (_, i) => ({ row: { Id: `c${i}` } }));
      const result = await writeChunks(sourceRows(rows), {
        chunkSize: 10,
        maxChunks: 100,
        tmpDir,
        writeConcurrency: 3,
        writeChunk: async (n) => {
          inFlight++;
          most = Math.max(most, inFlight);
          await sleep(5);
          inFlight--;
          written.push(n);
        },
      });
      assert.equal(result.chunks, 10);
      assert.equal(most, 3);
      assert.deepEqual(
        written.sort((a, b) => a - b),
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
      );
    });
  });

  test('a failed chunk write fails writeChunks with that error', async () => {
    await withTempDir(async (tmpDir) => {
      const rows = Array.from({ length: 50 }, (_, i) => ({ row: { Id: `c${i}` } }));
      const err = await rejection(
        writeChunks(sourceRows(rows), {
          chunkSize: 10,
          maxChunks: 100,
          tmpDir,
          writeChunk: async (n) => {
            if (n === 1) throw new Error('storage is down');
          },
        }),
      );
      assert.equal(err.message, 'storage is down');
    });
  });
});

describe('chunking: grouped', () => {
  test('rows with the same (trimmed) key form one item, in order of first appearance, even when not contiguous', async () => {
    await withTempDir(async (tmpDir) => {
      const rows = [
        { row: { Trip: 'A', P: 1 } },
        { row: { Trip: 'B', P: 2 } },
        { row: { Trip: ' A ', P: 3 } },
        { row: { Trip: 'C', P: 4 } },
        { row: { Trip: 'B', P: 5 } },
      ];
      const { result, items } = await chunk(sourceRows(rows), { tmpDir, groupBy: 'trip' });
      assert.deepEqual(result, { rows: 5, items: 3, chunks: 1, invalidItems: 0 });
      assert.deepEqual(items[0], [
        {
          i: 0,
          k: 'A',
          r: [2, 4],
          d: [
            { Trip: 'A', P: 1 },
            { Trip: ' A ', P: 3 },
          ],
        },
        {
          i: 1,
          k: 'B',
          r: [3, 6],
          d: [
            { Trip: 'B', P: 2 },
            { Trip: 'B', P: 5 },
          ],
        },
        { i: 2, k: 'C', r: [5], d: [{ Trip: 'C', P: 4 }] },
      ]);
    });
  });

  test('numeric keys group by their text', async () => {
    await withTempDir(async (tmpDir) => {
      const { items } = await chunk(sourceRows([{ row: { Trip: 7 } }, { row: { Trip: '7' } }]), { tmpDir, groupBy: 'Trip' });
      assert.deepEqual(
        items[0]!.map((it) => [it.k, it.r]),
        [['7', [2, 3]]],
      );
    });
  });

  test('a row with an empty key is its own item, with the problem; problems of all rows are kept on the item', async () => {
    await withTempDir(async (tmpDir) => {
      const rows = [
        { row: { Trip: 'A', P: 'x' }, problems: ['row 2, column "P": "x" is not a number'] },
        { row: { Trip: '', P: 1 } },
        { row: { Trip: null, P: 2 }, problems: ['row 4, column "Trip": empty, but the column is required'] },
        { row: { Trip: 'A', P: 'y' }, problems: ['row 5, column "P": "y" is not a number'] },
      ];
      const { result, items } = await chunk(sourceRows(rows), { tmpDir, groupBy: 'Trip' });
      assert.equal(result.invalidItems, 3);
      assert.deepEqual(items[0], [
        {
          i: 0,
          k: 'A',
          r: [2, 5],
          d: [rows[0]!.row, rows[3]!.row],
          x: ['row 2, column "P": "x" is not a number', 'row 5, column "P": "y" is not a number'],
        },
        { i: 1, r: [3], d: [rows[1]!.row], x: ['row 3, column "Trip": empty, so the row cannot be grouped (it needs a Trip)'] },
        // the reader already said the cell is empty: not said twice
        { i: 2, r: [4], d: [rows[2]!.row], x: ['row 4, column "Trip": empty, but the column is required'] },
      ]);
    });
  });

  test('a group column missing from the input is an InputError', async () => {
    await withTempDir(async (tmpDir) => {
      const err = await rejection(chunk(sourceRows([{ row: { Id: 'a' } }]), { tmpDir, groupBy: 'Trip' }));
      assert.ok(err instanceof InputError);
      assert.match(err.message, /^the input has no column "Trip" to group rows by \(its columns are "Id"\)/);
    });
  });

  test('more groups than maxChunks allow is an InputError with the count', async () => {
    await withTempDir(async (tmpDir) => {
      const rows = Array.from({ length: 30 }, (_, i) => ({ row: { Trip: `t${i % 15}` } }));
      // in memory: known as soon as the 7th distinct key appears
      const inMemory = await rejection(chunk(sourceRows(rows), { tmpDir, groupBy: 'Trip', chunkSize: 2, maxChunks: 3 }));
      assert.ok(inMemory instanceof InputError);
      assert.match(inMemory.message, /^the input has more than 6 work items, but at most 6 fit in 3 chunks of 2/);
      // spilled: known once the partitions are grouped, before any chunk is written
      let writes = 0;
      const spilled = await rejection(
        chunk(sourceRows(rows), {
          tmpDir,
          groupBy: 'Trip',
          chunkSize: 2,
          maxChunks: 7,
          memoryRowsLimit: 4,
          onWrite: async () => {
            writes++;
          },
        }),
      );
      assert.ok(spilled instanceof InputError);
      assert.match(spilled.message, /^the input has 15 work items, but at most 14 fit in 7 chunks of 2/);
      assert.equal(writes, 0);
    });
  });

  test('spilled grouping writes exactly the chunks in-memory grouping writes, and removes its spill files', async () => {
    await withTempDir(async (tmpDir) => {
      // given 3,000 rows of 450 trips in a scattered order, some rows with problems and empty keys
      let seed = 42;
      const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
      const rows = Array.from({ length: 3000 }, (_, i) => {
        const trip = random() < 0.01 ? '' : `trip-${Math.floor(random() * 450)}`;
        return { row: { Trip: trip, Seq: i, Lat: random() }, problems: i % 97 === 0 ? [`row ${i + 2}, column "Lat": bad`] : [] };
      });
      const inMemory = await chunk(sourceRows(rows), { tmpDir, groupBy: 'Trip', chunkSize: 100 });
      // when the memory limit is far below the row count (level-1 partitions of ~47 rows > 40: split again)
      let spillSeen = false;
      const spilled = await chunk(sourceRows(rows), {
        tmpDir,
        groupBy: 'Trip',
        chunkSize: 100,
        memoryRowsLimit: 40,
        onWrite: async () => {
          spillSeen ||= (await readdir(tmpDir)).some((f) => f.startsWith('group-spill-'));
        },
      });
      assert.ok(spillSeen, 'the spill directory exists while chunks are written');
      // then chunks are identical, byte for byte
      assert.ok(inMemory.result.items > 400);
      assert.deepEqual(spilled.result, inMemory.result);
      assert.equal(spilled.chunks.length, inMemory.chunks.length);
      spilled.chunks.forEach((body, n) => assert.ok(body.equals(inMemory.chunks[n]!), `chunk ${n} differs`));
      assert.deepEqual(await readdir(tmpDir), []);
    });
  });
});
