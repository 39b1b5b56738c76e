/** The dataset (merge) pipeline config: defaults that reproduce the script, and clear refusals. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { matchesPattern } from '../../../runtime/config/merge-schema';
import { ConfigError, loadConfigFile, parseAppConfig, requireShape } from '../../../runtime/config/schema';

const merge = (extra: Record<string, unknown> = {}, mergeExtra: Record<string, unknown> = {}) => ({
  pipelines: [
    {
      shape: 'dataset',
      name: 'merge-xy',
      merge: { inputs: { left: 'x_list.txt', right: 'y_list.txt' }, keys: { left: ['ID'], right: ['ID'] }, ...mergeExtra },
      recipients: ['a@example.com'],
      ...extra,
    },
  ],
});

function problems(raw: unknown): string[] {
  try {
    parseAppConfig(raw, 'test.json');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('dataset pipelines: the merge config', () => {
  it('defaults reproduce the script: inner join, tab, header row, CSV output in input order, DuckDB on Fargate Spot', () => {
    const p = requireShape(parseAppConfig(merge()).pipelines[0]!, 'dataset');
    assert.equal(p.engine, 'duckdb');
    assert.equal(p.compute, 'fargate-spot');
    assert.equal(p.merge.how, 'inner');
    assert.equal(p.merge.delimiter, '\t');
    assert.equal(p.merge.header, true);
    assert.equal(p.merge.trimKeys, false);
    assert.deepEqual(p.merge.output, { name: 'merged', format: 'csv', suffixes: ['_x', '_y'], order: 'input', formulaSafe: false });
  });

  it('the shipped example declares merge-xy', () => {
    const config = loadConfigFile(join(import.meta.dirname, '../../../examples/merge/pipelines.json'));
    const p = requireShape(config.pipelines[0]!, 'dataset');
    assert.equal(p.name, 'merge-xy');
    assert.deepEqual(p.merge.inputs, { left: 'x_list.txt', right: 'y_list.txt' });
  });

  it('refuses an unknown join type, a two-character delimiter and uneven keys, naming each field', () => {
    const lines = problems(merge({}, { how: 'outer', delimiter: '||', keys: { left: ['a', 'b'], right: ['a'] } }));
    assert.ok(
      lines.some((l) => l.startsWith('pipelines[0].merge.how:') && l.includes('"full"') && l.includes('(got "outer")')),
      lines.join('\n'),
    );
    assert.ok(
      lines.some((l) => l.startsWith('pipelines[0].merge.delimiter: must be one character')),
      lines.join('\n'),
    );
    // (uneven keys are reported once the other fields are valid)
    const uneven = problems(merge({}, { keys: { left: ['a', 'b'], right: ['a'] } }));
    assert.ok(
      uneven.some((l) => l.startsWith('pipelines[0].merge.keys: left and right need the same number of key columns (left has 2, right 1)')),
      uneven.join('\n'),
    );
  });

  it('refuses an input pattern with a folder, an unknown engine and EC2 compute, saying what to do', () => {
    const lines = problems(merge({ engine: 'spark', compute: 'ec2-spot' }, { inputs: { left: 'a/x.txt', right: 'y.txt' } }));
    assert.ok(
      lines.some((l) => l.startsWith('pipelines[0].merge.inputs.left: must be a file name or a glob')),
      lines.join('\n'),
    );
    assert.ok(
      lines.some((l) => l.startsWith('pipelines[0].engine:') && l.includes('"emr-serverless"')),
      lines.join('\n'),
    );
    assert.ok(
      lines.some(
        (l) => l.startsWith('pipelines[0].compute: a dataset pipeline runs its merge job on Fargate Spot') && l.includes('emr-serverless'),
      ),
      lines.join('\n'),
    );
  });

  it('matches input globs against file names only', () => {
    assert.ok(matchesPattern('x_*.tsv', 'x_2026-12-01.tsv'));
    assert.ok(matchesPattern('x_list.txt', 'x_list.txt'));
    assert.ok(!matchesPattern('x_list.txt', 'x_listXtxt'));
    assert.ok(!matchesPattern('x_?.tsv', 'x_10.tsv'));
  });
});
