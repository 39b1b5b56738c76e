/**
 * The Spark SQL of a merge (EMR Serverless): Spark cannot run here, so the generated text is checked
 * per join type, and its SELECT is run on DuckDB after a mechanical change of dialect (backquotes,
 * RLIKE, the row-number column) against the nested-loop reference.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DuckDBInstance } from '@duckdb/node-api';
import { JOIN_TYPES, mergeSpecSchema, type MergeSpecInput } from '../../../runtime/config/merge-schema';
import { loadSql } from '../../../batch-jobs/engines/duckdb-sql';
import { planMerge, type InputLayout } from '../../../batch-jobs/engines/merge-plan';
import { SPARK_VIEWS, STATEMENT_SEPARATOR, sparkJoinSql, sparkMergeScript } from '../../../batch-jobs/engines/spark-sql';
import { referenceMerge, writeDelimited, type Rows } from './merge-reference';

const layout = (role: 'left' | 'right', file: string, columns: string[]): InputLayout => ({ role, file, columns });
const plan = (input: Partial<MergeSpecInput> = {}) =>
  planMerge(
    mergeSpecSchema.parse({ inputs: { left: 'x_list.txt', right: 'y_list.txt' }, keys: { left: ['ID'], right: ['ID'] }, ...input }),
    layout('left', 'x_list.txt', ['ID', 'value']),
    layout('right', 'y_list.txt', ['ID', 'value']),
  );
const at = {
  left: 's3://bucket/intake/merge-xy/b1/x_list.txt',
  right: 's3://bucket/intake/merge-xy/b1/y_list.txt',
  output: 's3://bucket/results/merge-xy/b1/merged/',
  stats: 's3://bucket/work/run1/spark/stats/',
};

describe('Spark SQL of a merge', () => {
  const KEYWORD = { inner: 'INNER JOIN', left: 'LEFT OUTER JOIN', right: 'RIGHT OUTER JOIN', full: 'FULL OUTER JOIN' } as const;
  for (const how of JOIN_TYPES) {
    it(`${how}: the script reads both files as all-string CSV views and writes the ${how} join with a header`, () => {
      const statements = sparkMergeScript(plan({ how }), at).trimEnd().split(`\n${STATEMENT_SEPARATOR}\n`);
      assert.equal(statements.length, 6);
      const [leftSrc, leftView, rightSrc, rightView, stats, join] = statements as [string, string, string, string, string, string];
      assert.equal(
        leftSrc,
        "CREATE TEMPORARY VIEW fanout_left_src (c1 STRING, c2 STRING) USING csv OPTIONS (path 's3://bucket/intake/merge-xy/b1/x_list.txt', header 'true', sep '\\t', quote '\"', escape '\"', multiLine 'true', mode 'FAILFAST', encoding 'UTF-8', enforceSchema 'true', ignoreLeadingWhiteSpace 'false', ignoreTrailingWhiteSpace 'false')",
      );
      assert.equal(
        leftView,
        'CREATE TEMPORARY VIEW fanout_left AS SELECT *, monotonically_increasing_id() AS fanout_rn FROM fanout_left_src',
      );
      assert.match(
        rightSrc,
        /^CREATE TEMPORARY VIEW fanout_right_src \(c1 STRING, c2 STRING\) USING csv OPTIONS \(path 's3:\/\/bucket\/intake\/merge-xy\/b1\/y_list\.txt', header 'true'/,
      );
      assert.equal(
        rightView,
        'CREATE TEMPORARY VIEW fanout_right AS SELECT *, monotonically_increasing_id() AS fanout_rn FROM fanout_right_src',
      );
      assert.match(
        stats,
        /^INSERT OVERWRITE DIRECTORY 's3:\/\/bucket\/work\/run1\/spark\/stats\/' USING json SELECT \/\*\+ COALESCE\(1\) \*\/ \* FROM \(WITH/,
      );
      const key = how === 'right' || how === 'full' ? 'coalesce(l.c1, r.c1)' : 'l.c1';
      assert.equal(
        join,
        "INSERT OVERWRITE DIRECTORY 's3://bucket/results/merge-xy/b1/merged/' USING csv OPTIONS (header 'true', sep ',', quote '\"', escape '\"', emptyValue '', nullValue '', encoding 'UTF-8') " +
          `SELECT ${key} AS \`ID_x\`, l.c2 AS \`value_x\`, r.c2 AS \`value_y\` FROM fanout_left l ${KEYWORD[how]} fanout_right r ` +
          "ON l.c1 = r.c1 AND coalesce(l.c1, '') <> '' ORDER BY l.fanout_rn ASC NULLS LAST, r.fanout_rn ASC NULLS LAST",
      );
    });
  }

  it('quotes identifiers and literals the Spark way; order none drops the global sort; trimKeys trims both keys', () => {
    const p = planMerge(
      mergeSpecSchema.parse({
        inputs: { left: 'a', right: 'b' },
        keys: { left: ['it`s'], right: ['k'] },
        trimKeys: true,
        output: { order: 'none', formulaSafe: true, columns: [{ name: "o'k `x`", from: 'left', column: 'it`s' }] },
      }),
      layout('left', 'a', ['it`s']),
      layout('right', 'b', ['k']),
    );
    const sql = sparkJoinSql(p);
    assert.equal(
      sql,
      "SELECT CASE WHEN l.c1 RLIKE '^[-=+@\\\\t\\\\r]' THEN '\\'' || l.c1 ELSE l.c1 END AS `o'k ``x```" +
        " FROM fanout_left l INNER JOIN fanout_right r ON trim(l.c1) = trim(r.c1) AND coalesce(trim(l.c1), '') <> ''",
    );
    const script = sparkMergeScript(p, { ...at, left: "s3://b/it's.txt" });
    assert.ok(script.includes("path 's3://b/it\\'s.txt'"));
  });
});

describe('Spark SQL of a merge, its SELECT run on DuckDB', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'merge-spark-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const X: Rows = [
    ['7', 'a'],
    ['007', 'b'],
    ['', 'c'],
    ['7', 'd'],
    ['ü', 'e'],
  ];
  const Y: Rows = [
    ['7', 'A'],
    ['7', 'B'],
    ['7 ', 'C'],
    ['', 'D'],
    ['ü', 'E'],
    ['9', 'F'],
  ];
  for (const how of JOIN_TYPES) {
    it(`${how}: the same rows, in the same order, as the reference`, async () => {
      const p = plan({ how });
      const lp = join(dir, `${how}.x`);
      const rp = join(dir, `${how}.y`);
      await writeDelimited(lp, [['ID', 'value'], ...X]);
      await writeDelimited(rp, [['ID', 'value'], ...Y]);
      const db = await DuckDBInstance.create(':memory:');
      const c = await db.connect();
      try {
        await c.run(loadSql(p, 'left', lp).replace('fanout_left', 'fanout_left_t'));
        await c.run(loadSql(p, 'right', rp).replace('fanout_right', 'fanout_right_t'));
        // Spark's fanout_rn (monotonically_increasing_id over each file) is DuckDB's rowid here.
        for (const v of Object.values(SPARK_VIEWS)) await c.run(`CREATE VIEW ${v} AS SELECT *, rowid AS fanout_rn FROM ${v}_t`);
        const duckdbDialect = sparkJoinSql(p).replace(/`([^`]*)`/g, '"$1"');
        const rows = (await c.runAndReadAll(duckdbDialect)).getRows().map((r) => r.map((v) => (v === null ? '' : String(v))));
        assert.deepEqual(rows, referenceMerge(X, Y, { how, leftKeys: [0], rightKeys: [0] }));
      } finally {
        c.closeSync();
        db.closeSync();
      }
    });
  }
});
