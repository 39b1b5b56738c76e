/**
 * An independent reference for the merge tests: the merge rules (keys compared as exact text,
 * empty keys never match, every pair of duplicates, the script's row order) as a plain nested loop
 * over rows held in memory, with no SQL. Also writes input files and reads output back with papaparse.
 */
import { readFile, writeFile } from 'node:fs/promises';
import Papa from 'papaparse';
import type { JoinType } from '../../../runtime/config/merge-schema';

export type Rows = string[][];

export interface ReferenceSpec {
  how: JoinType;
  /** 0-based key column indexes, pairwise. */
  leftKeys: number[];
  rightKeys: number[];
  trimKeys?: boolean;
}

/**
 * Output rows: every left column, then every right column but the keys; a left key shows the right
 * key on rows with no left match. Order: left rows in order, each with its matches in right order,
 * then the right rows that matched nothing.
 */
export function referenceMerge(left: Rows, right: Rows, s: ReferenceSpec): Rows {
  const norm = (v: string) => (s.trimKeys ? v.trim() : v);
  const keyOf = (row: string[], keys: number[]) => keys.map((k) => norm(row[k] ?? ''));
  const valid = (key: string[]) => key.every((k) => k !== '');
  const leftWidth = left[0]?.length ?? 0;
  const rightCols = (row: string[]) => row.filter((_, i) => !s.rightKeys.includes(i));
  const rightWidth = (right[0]?.length ?? 0) - s.rightKeys.length;
  const out: Rows = [];
  const rightMatched = new Set<number>();
  for (const l of left) {
    const lk = keyOf(l, s.leftKeys);
    let matched = false;
    if (valid(lk)) {
      right.forEach((r, j) => {
        const rk = keyOf(r, s.rightKeys);
        if (lk.every((v, i) => v === rk[i])) {
          matched = true;
          rightMatched.add(j);
          out.push([...l, ...rightCols(r)]);
        }
      });
    }
    if (!matched && (s.how === 'left' || s.how === 'full')) out.push([...l, ...new Array<string>(rightWidth).fill('')]);
  }
  if (s.how === 'right' || s.how === 'full') {
    right.forEach((r, j) => {
      if (rightMatched.has(j)) return;
      const l = new Array<string>(leftWidth).fill('');
      s.leftKeys.forEach((k, i) => (l[k] = r[s.rightKeys[i]!] ?? ''));
      out.push([...l, ...rightCols(r)]);
    });
  }
  return out;
}

/**
 * The email's key statistics by the same nested loop: rows per side, matched pairs, rows of each
 * side without a match (empty keys included), keys (distinct non-empty key tuples) with more than
 * one row on both sides, and rows with an empty key.
 */
export function referenceCounts(left: Rows, right: Rows, s: ReferenceSpec) {
  const norm = (v: string) => (s.trimKeys ? v.trim() : v);
  const keyOf = (row: string[], keys: number[]) => keys.map((k) => norm(row[k] ?? ''));
  const valid = (key: string[]) => key.every((k) => k !== '');
  const same = (a: string[], b: string[]) => a.every((v, i) => v === b[i]);
  let pairs = 0;
  const leftMatched = new Set<number>();
  const rightMatched = new Set<number>();
  left.forEach((l, i) => {
    const lk = keyOf(l, s.leftKeys);
    if (!valid(lk)) return;
    right.forEach((r, j) => {
      if (!same(lk, keyOf(r, s.rightKeys))) return;
      pairs++;
      leftMatched.add(i);
      rightMatched.add(j);
    });
  });
  const rowsWith = (rows: Rows, keys: number[], key: string[]) => rows.filter((r) => same(key, keyOf(r, keys))).length;
  const seen = new Set<string>();
  let keysDuplicatedBothSides = 0;
  for (const l of left) {
    const lk = keyOf(l, s.leftKeys);
    const id = JSON.stringify(lk);
    if (!valid(lk) || seen.has(id)) continue;
    seen.add(id);
    if (rowsWith(left, s.leftKeys, lk) > 1 && rowsWith(right, s.rightKeys, lk) > 1) keysDuplicatedBothSides++;
  }
  const empty = (rows: Rows, keys: number[]) => rows.filter((r) => !valid(keyOf(r, keys))).length;
  return {
    leftRows: left.length,
    rightRows: right.length,
    matchedPairs: pairs,
    leftUnmatched: left.length - leftMatched.size,
    rightUnmatched: right.length - rightMatched.size,
    keysDuplicatedBothSides,
    leftEmptyKeys: empty(left, s.leftKeys),
    rightEmptyKeys: empty(right, s.rightKeys),
  };
}

/** Writes rows as delimited text (no quoting: test values hold no delimiter, quote or newline unless said). */
export async function writeDelimited(path: string, rows: Rows, delimiter = '\t'): Promise<void> {
  await writeFile(path, `${rows.map((r) => r.join(delimiter)).join('\n')}\n`);
}

/** Reads a CSV/TSV file written by an engine: header and rows, with papaparse (an independent reader). */
export async function readDelimited(path: string, delimiter = ','): Promise<{ header: string[]; rows: Rows }> {
  const text = await readFile(path, 'utf8');
  const parsed = Papa.parse<string[]>(text, { delimiter, skipEmptyLines: true });
  if (parsed.errors.length > 0) throw new Error(`cannot parse ${path}: ${JSON.stringify(parsed.errors.slice(0, 3))}`);
  const [header = [], ...rows] = parsed.data;
  return { header, rows };
}
