/**
 * GPS fixes of one trip for the `osrm-match` task: reads each row's timestamp, latitude,
 * longitude and accuracy, says why a row cannot be used, and orders the usable fixes by time.
 *
 * Pure functions, no I/O: the task (osrm-match.ts) and the tests share them.
 */
import type { OsrmMatchTaskConfig } from '../../runtime/config/schema';
import type { Cell, Row } from '../../runtime/model';
import { columnReader, toNumber } from './columns';

/** One usable fix, with where it came from. */
export interface GpsPoint {
  /** Index of the row in `item.d` (and `item.r`). */
  index: number;
  /** Source row number as a spreadsheet shows it. */
  row: number;
  /** Seconds since the UNIX epoch, fractions kept (OSRM is sent whole seconds). */
  time: number;
  lat: number;
  lon: number;
  /** Search radius sent to OSRM, metres: the row's accuracy, or the configured default. */
  radiusM: number;
}

/** A row that cannot be sent to OSRM, and why (the text names the row number). */
export interface InvalidPoint {
  index: number;
  row: number;
  reason: string;
}

export interface TripPoints {
  /** Usable fixes, sorted by time (stable: equal times keep input order). */
  points: GpsPoint[];
  invalid: InvalidPoint[];
}

/** Largest UNIX time in seconds accepted (year 5138); larger numbers are most likely milliseconds. */
const MAX_UNIX_SECONDS = 1e11;

/**
 * ISO 8601 date-times as they appear in GPS exports: `2024-05-01T08:30:00Z`, with a space
 * instead of the `T`, fractions of seconds, `+02:00`/`+0200`/`+02` offsets. A time without an
 * offset is taken as UTC (documented in docs/map-matching.md).
 */
const ISO_DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;

/** Parses a timestamp cell: ISO 8601 text or UNIX seconds (number or numeric text). */
export function parseTimestamp(value: Cell): { ok: true; seconds: number } | { ok: false; reason: string } {
  if (value === null || value === '') return { ok: false, reason: 'timestamp is empty' };
  if (typeof value === 'boolean') return { ok: false, reason: `timestamp "${String(value)}" is not a time` };
  if (typeof value === 'number' || /^[+-]?\d+(\.\d+)?$/.test(value.trim())) {
    const n = typeof value === 'number' ? value : Number(value.trim());
    if (!Number.isFinite(n) || n < 0) return { ok: false, reason: `timestamp ${String(value)} is not a UNIX time in seconds` };
    if (n >= MAX_UNIX_SECONDS) {
      return {
        ok: false,
        reason: `timestamp ${String(value)} is too large for UNIX seconds (milliseconds? divide by 1000)`,
      };
    }
    return { ok: true, seconds: n };
  }
  const text = value.trim();
  const m = ISO_DATE_TIME.exec(text);
  if (!m) {
    return { ok: false, reason: `timestamp "${text}" is neither ISO 8601 (2024-05-01T08:30:00Z) nor UNIX seconds` };
  }
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = s === undefined ? 0 : Number(s);
  const utc = Date.UTC(year, month - 1, day, hour, minute, second);
  const check = new Date(utc);
  if (
    month < 1 ||
    month > 12 ||
    hour > 23 ||
    minute > 59 ||
    second > 59 ||
    check.getUTCFullYear() !== year ||
    check.getUTCMonth() !== month - 1 ||
    check.getUTCDate() !== day
  ) {
    return { ok: false, reason: `timestamp "${text}" is not a valid date and time` };
  }
  let offsetMinutes = 0;
  if (zone !== undefined && zone.toUpperCase() !== 'Z') {
    const zm = /^([+-])(\d{2}):?(\d{2})?$/.exec(zone);
    const zh = Number(zm?.[2] ?? 0);
    const zmin = Number(zm?.[3] ?? 0);
    if (!zm || zh > 14 || zmin > 59) return { ok: false, reason: `timestamp "${text}" has an invalid UTC offset` };
    offsetMinutes = (zm[1] === '-' ? -1 : 1) * (zh * 60 + zmin);
  }
  const seconds = utc / 1000 - offsetMinutes * 60 + (frac === undefined ? 0 : Number(frac));
  if (seconds < 0) return { ok: false, reason: `timestamp "${text}" is before 1970` };
  return { ok: true, seconds };
}

function show(value: Cell): string {
  return typeof value === 'string' ? `"${value}"` : String(value);
}

export type PointReader = (rows: readonly Row[], rowNumbers: readonly number[]) => TripPoints;

/**
 * Builds the reader of a trip's rows for one task config. Rules, per row:
 * - timestamp: ISO 8601 (no offset = UTC) or UNIX seconds; required.
 * - latitude in [-90, 90], longitude in [-180, 180], both numbers; 0,0 is taken as a missing fix.
 * - accuracy (when the column is configured): empty or 0 = unknown, the default radius is used;
 *   otherwise a positive number of metres, used as OSRM's radius.
 */
export function createPointReader(config: Pick<OsrmMatchTaskConfig, 'columns' | 'defaultRadiusM'>): PointReader {
  const c = config.columns;
  const readTime = columnReader(c.timestamp);
  const readLat = columnReader(c.latitude);
  const readLon = columnReader(c.longitude);
  const readAccuracy = c.accuracy === undefined ? undefined : columnReader(c.accuracy);
  return (rows, rowNumbers) => {
    const points: GpsPoint[] = [];
    const invalid: InvalidPoint[] = [];
    rows.forEach((row, index) => {
      const rowNumber = rowNumbers[index] ?? index + 2;
      const problems: string[] = [];
      const t = parseTimestamp(readTime(row));
      if (!t.ok) problems.push(t.reason);
      const latCell = readLat(row);
      const lonCell = readLon(row);
      const lat = toNumber(latCell);
      const lon = toNumber(lonCell);
      if (latCell === null || latCell === '') problems.push('latitude is empty');
      else if (lat === undefined) problems.push(`latitude ${show(latCell)} is not a number`);
      else if (lat < -90 || lat > 90) problems.push(`latitude ${lat} is outside -90..90`);
      if (lonCell === null || lonCell === '') problems.push('longitude is empty');
      else if (lon === undefined) problems.push(`longitude ${show(lonCell)} is not a number`);
      else if (lon < -180 || lon > 180) problems.push(`longitude ${lon} is outside -180..180`);
      if (lat === 0 && lon === 0) problems.push('0,0 is not a real fix (a missing position)');
      let radiusM = config.defaultRadiusM;
      if (readAccuracy !== undefined) {
        const accCell = readAccuracy(row);
        if (accCell !== null && accCell !== '') {
          const acc = toNumber(accCell);
          if (acc === undefined || acc < 0) problems.push(`accuracy ${show(accCell)} is not a distance in metres`);
          else if (acc > 0) radiusM = acc;
        }
      }
      if (problems.length > 0 || !t.ok || lat === undefined || lon === undefined) {
        invalid.push({ index, row: rowNumber, reason: `row ${rowNumber}: ${problems.join('; ')}` });
        return;
      }
      points.push({ index, row: rowNumber, time: t.seconds, lat, lon, radiusM });
    });
    // Array.prototype.sort is stable (ES2019): fixes with equal times keep their input order.
    points.sort((a, b) => a.time - b.time);
    return { points, invalid };
  };
}
