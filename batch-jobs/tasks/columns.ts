/**
 * Reading item rows. A configured column is found by its exact key first, then case- and
 * space-insensitively (`normaliseHeader`). The key found is remembered, since the rows a task
 * sees share their keys, so the usual read is one property lookup.
 */
import { normaliseHeader } from '../../runtime/config/schema';
import type { Cell, Row } from '../../runtime/model';

/** The column's value in a row, or undefined when the row has no such column. */
export function columnLookup(name: string): (row: Row) => Cell | undefined {
  const wanted = normaliseHeader(name);
  let cachedKey: string | undefined;
  return (row) => {
    const key =
      cachedKey !== undefined && Object.hasOwn(row, cachedKey)
        ? cachedKey
        : Object.hasOwn(row, name)
          ? name
          : Object.keys(row).find((k) => normaliseHeader(k) === wanted);
    if (key === undefined) return undefined;
    cachedKey = key;
    return row[key] ?? null;
  };
}

/** The column's value in a row; a missing column reads as null (an empty cell). */
export function columnReader(name: string): (row: Row) => Cell {
  const lookup = columnLookup(name);
  return (row) => lookup(row) ?? null;
}

/** A finite number, or decimal text of one ("12.50", " -3e2 "); anything else is undefined. */
export function toNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const s = value.trim();
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}
