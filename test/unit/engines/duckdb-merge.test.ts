import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mergeSpecSchema, JOIN_TYPES, type MergeSpecInput } from '../../../runtime/config/merge-schema';
import { InputError } from '../../../runtime/errors';
import { readLayout } from '../../../batch-jobs/engines/delimited-header';
import { runDuckdbMerge } from '../../../batch-jobs/engines/duckdb-merge';
import { planMerge } from '../../../batch-jobs/engines/merge-plan';
import { readDelimited, referenceCounts, referenceMerge, writeDelimited, type Rows } from './merge-reference';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'merge-duckdb-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const MiB = 1024 * 1024;

/** Merges two files written from rows with the spec, returns header and rows read back with papaparse. */
async function merge(name: string, left: Rows, right: Rows, input: MergeSpecInput, splitJoinAndSort?: boolean) {
  const spec = mergeSpecSchema.parse(input);
  const lp = join(dir, `${name}.left.txt`);
  const rp = join(dir, `${name}.right.txt`);
  await writeDelimited(lp, left, spec.delimiter);
  await writeDelimited(rp, right, spec.delimiter);
  const plan = planMerge(spec, await readLayout(lp, 'x.txt', 'left', spec), await readLayout(rp, 'y.txt', 'right', spec));
  const out = join(dir, `${name}.out.${spec.output.format}`);
  const result = await runDuckdbMerge({
    plan,
    leftPath: lp,
    rightPath: rp,
    outPath: out,
    memoryLimitBytes: 256 * MiB,
    tempDir: join(dir, 'spill'),
    threads: 2,
    splitJoinAndSort,
  });
  return { ...(await readDelimited(out, spec.output.format === 'tsv' ? '\t' : ',')), counts: result.counts, plan };
}

// Duplicates on both sides (7), leading zeros (007 vs 7), empty keys, unicode (NFC vs NFD é, CJK, emoji),
// a key with spaces, a formula-looking value, keys only on one side.
const X: Rows = [
  ['007', 'a'],
  ['7', 'b'],
  ['', 'empty-left'],
  ['7', 'd'],
  ['\u00e9', 'nfc'],
  ['李雷', 'cjk'],
  ['🙂', 'emoji'],
  [' 8', 'spaced'],
  ['only-left', '=1+1'],
];
const Y: Rows = [
  ['7', 'B'],
  ['7', 'BB'],
  ['007', 'A'],
  ['', 'empty-right'],
  ['e\u0301', 'nfd'],
  ['李雷', 'CJK'],
  ['🙂', 'EMOJI'],
  ['8', 'unspaced'],
  ['only-right', 'R'],
];
const HEADER = ['ID', 'value'];

describe('DuckDB merge engine', () => {
  for (const how of JOIN_TYPES) {
    it(`${how} join: row for row as the nested-loop reference (duplicates, leading zeros, empty and unicode keys)`, async () => {
      // given two files with a header row
      // when they are merged on ID
      const r = await merge(`join-${how}`, [HEADER, ...X], [HEADER, ...Y], {
        inputs: { left: 'x', right: 'y' },
        keys: { left: ['ID'], right: ['ID'] },
        how,
      });
      // then the output is the reference's, in the same order, with the script's column names
      assert.deepEqual(r.header, ['ID_x', 'value_x', 'value_y']);
      assert.deepEqual(r.rows, referenceMerge(X, Y, { how, leftKeys: [0], rightKeys: [0] }));
      assert.equal(r.counts.outputRows, r.rows.length);
    });
  }

  for (const how of JOIN_TYPES) {
    it(`${how} join: the same rows and counts when the join and the sort run as two queries (low memory), and unordered`, async () => {
      const spec = { inputs: { left: 'x', right: 'y' }, keys: { left: ['ID'], right: ['ID'] }, how };
      const expected = referenceMerge(X, Y, { how, leftKeys: [0], rightKeys: [0] });
      const one = await merge(`one-${how}`, [HEADER, ...X], [HEADER, ...Y], spec, false);
      const split = await merge(`split-${how}`, [HEADER, ...X], [HEADER, ...Y], spec, true);
      assert.deepEqual(one.rows, expected);
      assert.deepEqual(split.rows, expected);
      assert.deepEqual(split.counts, one.counts);
      // no order: the files are joined directly (no tables); the same rows in some order, the same counts
      const unordered = await merge(`none-${how}`, [HEADER, ...X], [HEADER, ...Y], { ...spec, output: { order: 'none' } });
      const sorted = (rows: string[][]) => [...rows].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
      assert.deepEqual(sorted(unordered.rows), sorted(expected));
      assert.deepEqual(unordered.counts, one.counts);
    });
  }

  it('counts rows, unmatched rows, empty keys and keys duplicated on both sides', async () => {
    const r = await merge('counts', [HEADER, ...X], [HEADER, ...Y], {
      inputs: { left: 'x', right: 'y' },
      keys: { left: ['ID'], right: ['ID'] },
    });
    assert.deepEqual(r.counts, {
      leftRows: 9,
      rightRows: 9,
      outputRows: 7, // 007, 7x2x2, 李雷, 🙂
      leftUnmatched: 4, // empty, é (NFC), " 8", only-left
      rightUnmatched: 4, // empty, é (NFD), 8, only-right
      keysDuplicatedBothSides: 1, // 7
      leftEmptyKeys: 1,
      rightEmptyKeys: 1,
    });
  });

  it('counts as the reference on generated composite keys (duplicates on both sides, empty key parts, spaces), every join type and path', async () => {
    // deterministic pseudo-random rows: keys from a small alphabet so that many repeat on both sides
    let seed = 7;
    const rand = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const PARTS = ['', 'a', 'b', ' a', 'c', '007', '7', 'only-left'];
    const part = (n: number) => PARTS[rand(n)]!;
    const rows = (n: number, tag: string, parts: number): Rows =>
      Array.from({ length: n }, (_, i) => [part(parts), part(parts), `${tag}${i}`]);
    const L = rows(300, 'l', 8);
    const R = rows(250, 'r', 7);
    for (const trimKeys of [false, true]) {
      const ref = referenceCounts(L, R, { how: 'inner', leftKeys: [0, 1], rightKeys: [1, 0], trimKeys });
      assert.ok(ref.keysDuplicatedBothSides > 0 && ref.leftEmptyKeys > 0 && ref.leftUnmatched > ref.leftEmptyKeys);
      for (const how of JOIN_TYPES) {
        const unmatched =
          (how === 'left' || how === 'full' ? ref.leftUnmatched : 0) + (how === 'right' || how === 'full' ? ref.rightUnmatched : 0);
        const { matchedPairs, ...expected } = { ...ref, outputRows: ref.matchedPairs + unmatched };
        for (const [order, split] of [
          ['input', false],
          ['input', true],
          ['none', false],
        ] as const) {
          const r = await merge(
            `gen-${how}-${order}-${split}-${trimKeys}`,
            [['p', 'q', 'v'], ...L],
            [['q', 'p', 'w'], ...R],
            {
              inputs: { left: 'x', right: 'y' },
              keys: { left: ['p', 'q'], right: ['p', 'q'] },
              how,
              trimKeys,
              output: { order },
            },
            split,
          );
          assert.deepEqual(r.counts, expected, `${how} ${order} split=${split} trimKeys=${trimKeys} (${matchedPairs} pairs)`);
        }
      }
    }
  });

  it('headerless files get positional names; keys by position; trimKeys matches " 8" with "8"', async () => {
    const r = await merge('headerless', X, Y, {
      inputs: { left: 'x', right: 'y' },
      keys: { left: ['#1'], right: ['column1'] },
      header: false,
      trimKeys: true,
      how: 'left',
    });
    assert.deepEqual(r.header, ['column1_x', 'column2_x', 'column2_y']);
    assert.deepEqual(r.rows, referenceMerge(X, Y, { how: 'left', leftKeys: [0], rightKeys: [0], trimKeys: true }));
    assert.ok(r.rows.some((row) => row[0] === ' 8' && row[2] === 'unspaced'));
  });

  it('composite keys, comma-separated input, TSV output, explicit output columns', async () => {
    const L: Rows = [
      ['a', '1', 'x1'],
      ['a', '2', 'x2'],
      ['b', '1', 'x3'],
      ['b', '', 'x4'],
    ];
    const R: Rows = [
      ['1', 'a', 'y1'],
      ['1', 'b', 'y2'],
      ['2', 'a', 'y3'],
      ['', 'b', 'y4'],
      ['1', 'a', 'y5'],
    ];
    const r = await merge('composite', [['k1', 'k2', 'v'], ...L], [['n', 'k', 'w'], ...R], {
      inputs: { left: 'x', right: 'y' },
      keys: { left: ['k1', 'k2'], right: ['k', 'n'] },
      delimiter: ',',
      how: 'full',
      output: {
        format: 'tsv',
        columns: [
          { name: 'key 1', from: 'left', column: 'k1' },
          { name: 'key 2', from: 'left', column: 'k2' },
          { name: 'left value', from: 'left', column: 'v' },
          { name: 'right value', from: 'right', column: 'w' },
        ],
      },
    });
    assert.deepEqual(r.header, ['key 1', 'key 2', 'left value', 'right value']);
    const ref = referenceMerge(L, R, { how: 'full', leftKeys: [0, 1], rightKeys: [1, 0] });
    assert.deepEqual(r.rows, ref);
  });

  it('quoted values with delimiters, quotes and line breaks come back exactly; formulaSafe prefixes formulas', async () => {
    const lp = join(dir, 'quoted.left.csv');
    const rp = join(dir, 'quoted.right.csv');
    await writeFile(lp, 'id,text\n1,"a, b"\n2,"say ""hi"""\n3,"two\nlines"\n4,=SUM(A1)\n');
    await writeFile(rp, 'id,other\n1,-5\n2,@x\n3,+1\n4,plain\n');
    const spec = mergeSpecSchema.parse({
      inputs: { left: 'x', right: 'y' },
      keys: { left: ['id'], right: ['id'] },
      delimiter: ',',
      output: { formulaSafe: true },
    });
    const plan = planMerge(spec, await readLayout(lp, 'x.csv', 'left', spec), await readLayout(rp, 'y.csv', 'right', spec));
    const out = join(dir, 'quoted.out.csv');
    await runDuckdbMerge({ plan, leftPath: lp, rightPath: rp, outPath: out, memoryLimitBytes: 256 * MiB, tempDir: join(dir, 'spill') });
    const r = await readDelimited(out);
    assert.deepEqual(r.header, ['id_x', 'text', 'other']);
    assert.deepEqual(r.rows, [
      ['1', 'a, b', "'-5"],
      ['2', 'say "hi"', "'@x"],
      ['3', 'two\nlines', "'+1"],
      ['4', "'=SUM(A1)", 'plain'],
    ]);
  });

  it('a header and no rows is a valid, empty merge', async () => {
    const r = await merge('header-only', [HEADER], [HEADER, ...Y], {
      inputs: { left: 'x', right: 'y' },
      keys: { left: ['ID'], right: ['ID'] },
    });
    assert.deepEqual(r.rows, []);
    assert.equal(r.counts.leftRows, 0);
    assert.equal(r.counts.rightRows, 9);
  });
});

describe('DuckDB merge engine: bad input names file, row and column', () => {
  const ordered = mergeSpecSchema.parse({ inputs: { left: 'x', right: 'y' }, keys: { left: ['ID'], right: ['ID'] } });
  async function attempt(name: string, leftText: string | Buffer, rightText = 'ID\tvalue\n1\ta\n', spec = ordered) {
    const lp = join(dir, `${name}.l`);
    const rp = join(dir, `${name}.r`);
    await writeFile(lp, leftText);
    await writeFile(rp, rightText);
    const plan = planMerge(spec, await readLayout(lp, 'x_list.txt', 'left', spec), await readLayout(rp, 'y_list.txt', 'right', spec));
    await runDuckdbMerge({
      plan,
      leftPath: lp,
      rightPath: rp,
      outPath: join(dir, `${name}.out`),
      memoryLimitBytes: 256 * MiB,
      tempDir: join(dir, 'spill'),
    });
  }
  const rejects = (p: Promise<unknown>, re: RegExp, location: Partial<InputError['location']>) =>
    assert.rejects(p, (err: unknown) => {
      assert.ok(err instanceof InputError, String(err));
      assert.match(err.message, re);
      for (const [k, v] of Object.entries(location)) assert.equal(err.location[k as keyof InputError['location']], v);
      return true;
    });

  it('a missing key column lists the headers found', () =>
    rejects(
      attempt('nokey', 'Id2\tvalue\n1\ta\n'),
      /x_list\.txt \(left input\): key column "ID" is missing; row 1 \(the header row\) has 2 columns: "Id2", "value"/,
      {
        file: 'x_list.txt',
        row: 1,
        column: 'ID',
      },
    ));

  it('a comma-separated file in a tab pipeline says so', () =>
    rejects(attempt('commas', 'ID,value\n1,a\n'), /looks comma-separated, but the pipeline reads tab-separated files/, { row: 1 }));

  it('a row with an extra value names its row and column', () =>
    rejects(
      attempt('long', 'ID\tvalue\n1\ta\n2\tb\textra\n'),
      /x_list\.txt \(left input\), row 3: 3 values, but the header row has 2 columns; the 3rd value is extra/,
      {
        file: 'x_list.txt',
        row: 3,
        column: '#3',
      },
    ));

  it('with no output order (the files read in the join itself), a ragged row of the right file names that file', () =>
    rejects(
      attempt('right-long', 'ID\tvalue\n1\ta\n', 'ID\tvalue\n1\tb\n2\tc\textra\n', {
        ...ordered,
        output: { ...ordered.output, order: 'none' },
      }),
      /y_list\.txt \(right input\), row 3: 3 values, but the header row has 2 columns/,
      { file: 'y_list.txt', row: 3, column: '#3' },
    ));

  it('a short row names the missing column', () =>
    rejects(
      attempt('short', 'ID\tvalue\n1\ta\n2\n'),
      /row 3: 1 value, but the header row has 2 columns; column "value" and after are missing/,
      { row: 3, column: 'value' },
    ));

  it('a binary file is not delimited text', () =>
    rejects(
      attempt('binary', Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x00, 0x00, 0x0a, 0x00])),
      /x_list\.txt \(left input\) is not delimited text: row 1 holds a NUL byte/,
      {
        row: 1,
      },
    ));

  it('Latin-1 text is not UTF-8', () =>
    rejects(attempt('latin1', Buffer.from('ID\tvalue\n1\tZo\xeb\n', 'latin1')), /is not UTF-8 text/, { file: 'x_list.txt' }));

  it('an empty file is refused', () =>
    rejects(attempt('empty', ''), /x_list\.txt \(left input\) is empty \(0 bytes\)/, { file: 'x_list.txt' }));
});
