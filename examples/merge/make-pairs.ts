/**
 * Generates a large pair of tab-separated files for the merge pipeline, as the benchmark needs:
 * `ID\tvalue` headers, N rows per file, a third of the keys on both sides, 5% of the rows
 * repeating an earlier key of their file (so some keys are duplicated on both sides), keys in no
 * order, values of a chosen length. Deterministic (seeded).
 *
 *   npx tsx examples/merge/make-pairs.ts --rows 10000000 --out /tmp/pairs [--value-bytes 10]
 */
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { flagValue, isMain } from '../cli';
import { mulberry32 } from '../seeded-random';

export interface PairOptions {
  rows: number;
  dir: string;
  /** Characters of each value. @default 10 */
  valueBytes?: number;
  /** Share of each file's distinct keys found in the other. @default 1/3 */
  shared?: number;
  /** Share of rows repeating an earlier key of the same file. @default 0.05 */
  duplicated?: number;
  seed?: number;
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

/** A key number spread over the key space (so the files are in no key order). */
const spread = (n: number) => (Math.imul(n, 2654435761) >>> 0).toString(36);

async function writeSide(path: string, side: 'x' | 'y', o: Required<PairOptions>): Promise<void> {
  const rand = mulberry32(o.seed + (side === 'x' ? 1 : 2));
  const out = createWriteStream(path, { highWaterMark: 1 << 20 });
  const sharedUpTo = Math.floor(o.rows * o.shared);
  const keys: string[] = [];
  // A pool of values: drawing each character would cost more than the rest of the row.
  const pool = Array.from({ length: 4096 }, () => Array.from({ length: o.valueBytes }, () => LETTERS[Math.floor(rand() * 26)]).join(''));
  let buf = 'ID\tvalue\n';
  for (let i = 0; i < o.rows; i++) {
    let key: string;
    if (i > 0 && rand() < o.duplicated) {
      key = keys[Math.floor(rand() * keys.length)]!;
    } else {
      const n = keys.length;
      // the first third of each side's distinct keys are the same numbers on both sides
      key = n < sharedUpTo ? `k${spread(n)}` : `${side}${spread(n)}`;
      keys.push(key);
    }
    buf += `${key}\t${pool[Math.floor(rand() * pool.length)]}\n`;
    if (buf.length > 1 << 20) {
      if (!out.write(buf)) await once(out, 'drain');
      buf = '';
    }
  }
  out.end(buf);
  await once(out, 'finish');
}

/** Writes `x_list.txt` and `y_list.txt` into `dir`; returns their paths. */
export async function makePairs(opts: PairOptions): Promise<{ x: string; y: string }> {
  const o: Required<PairOptions> = { valueBytes: 10, shared: 1 / 3, duplicated: 0.05, seed: 20261201, ...opts };
  await mkdir(o.dir, { recursive: true });
  const x = join(o.dir, 'x_list.txt');
  const y = join(o.dir, 'y_list.txt');
  await Promise.all([writeSide(x, 'x', o), writeSide(y, 'y', o)]);
  return { x, y };
}

if (isMain(import.meta.url)) {
  const args = process.argv.slice(2);
  const rows = Number(flagValue(args, '--rows', '1000000'));
  const dir = flagValue(args, '--out', 'fanout-out/pairs');
  const valueBytes = Number(flagValue(args, '--value-bytes', '10'));
  const t = Date.now();
  const { x, y } = await makePairs({ rows, dir, valueBytes });
  console.log(`wrote ${x} and ${y}: ${rows.toLocaleString('en-US')} rows each, ${((Date.now() - t) / 1000).toFixed(1)} s`);
}
