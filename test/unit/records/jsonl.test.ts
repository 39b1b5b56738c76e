import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { forEachJsonl, readJsonl, toJsonl } from '../../../batch-jobs/records/jsonl';
import { rejection, streamOf } from './fixtures';

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const v of it) out.push(v);
  return out;
}

describe('JSONL', () => {
  const values = [{ i: 0, d: [{ Name: 'Zoë 日本' }] }, { i: 1, e: 'line\nbreak' }, 42, 'text', null];

  test('toJsonl writes one JSON value per line, each ending in a newline', () => {
    assert.equal(toJsonl([{ a: 1 }, 'b']).toString('utf8'), '{"a":1}\n"b"\n');
    assert.equal(toJsonl([]).length, 0);
  });

  test('readJsonl reads back what toJsonl wrote, whatever the chunk boundaries', async () => {
    const body = toJsonl(values);
    for (const size of [1, 2, 5, 1024]) {
      assert.deepEqual(await all(readJsonl(streamOf(body, size), 'test')), values, `chunks of ${size}`);
    }
  });

  test('blank lines, CRLF and a last line without a newline are accepted', async () => {
    const text = '{"a":1}\r\n\r\n\n{"a":2}\n{"a":3}';
    assert.deepEqual(await all(readJsonl(streamOf(text), 'test')), [{ a: 1 }, { a: 2 }, { a: 3 }]);
  });

  test('forEachJsonl gives every value in order, as readJsonl does, whatever the chunk boundaries', async () => {
    const text = `${toJsonl(values).toString('utf8')}\r\n\n{"last":true}`;
    for (const size of [1, 3, 1024]) {
      const seen: unknown[] = [];
      await forEachJsonl(streamOf(text, size), 'test', (v) => seen.push(v));
      assert.deepEqual(seen, await all(readJsonl(streamOf(text, size), 'test')), `chunks of ${size}`);
    }
    const err = await rejection(forEachJsonl(streamOf('{"a":1}\n\n{"a":\n'), 'parts/3.jsonl', () => undefined));
    assert.match(err.message, /^parts\/3\.jsonl, line 3: not valid JSON/);
  });

  test('a bad line is an Error naming the source and the line number', async () => {
    const text = '{"a":1}\n\n{"a":\n{"a":3}\n';
    const err = await rejection(all(readJsonl(streamOf(text), 's3://bucket/work/run/chunks/7.jsonl')));
    assert.match(err.message, /^s3:\/\/bucket\/work\/run\/chunks\/7\.jsonl, line 3: not valid JSON/);
  });
});
