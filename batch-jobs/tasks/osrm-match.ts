/**
 * The `osrm-match` task: map-matches one trip (a work item of all rows sharing a trip id) with
 * OSRM's match service, `GET {base}/match/v1/{profile}/{coordinates}` (osrm-backend docs/http.md).
 *
 * Per call (one attempt; fan-out owns retries):
 * 1. each row's timestamp, latitude, longitude and accuracy are read and checked; a row that
 *    cannot be used is reported on its own line ("invalid input (row 17): ...") and not sent;
 * 2. the usable fixes are sorted by time (stable), cut into windows of at most `maxPoints`
 *    sharing `overlap` fixes (osrm-match-windows.ts), and each window is sent in turn;
 * 3. the answers are stitched so each fix gets at most one matched location, and the results
 *    are returned aligned with the item's rows in their original order.
 *
 * Outcomes: a transport failure, 408/425/429/5xx or an unreadable answer is a TransientError
 * (the whole trip is retried; windows already answered are kept for the retry, see
 * `WindowCache`). An OSRM error code (NoMatch, NoSegment, TooBig, InvalidValue...) fails the
 * window it answered. A trip whose windows all failed, or with fewer than two usable fixes,
 * fails (PermanentError with the reasons). A trip with some windows failed is a partial
 * success: it is done, the fixes of the failed windows say why they have no match, and the
 * trip's Note names the failed windows.
 *
 * The base URL is `env.FANOUT_OSRM_BASE_URL` when set (the OSRM service deployed on AWS by
 * lib/osrm-service.ts), else the task config's `baseUrl`.
 */
import { ConfigError, type ColumnType, type OsrmMatchTaskConfig } from '../../runtime/config/schema';
import type { Env } from '../../runtime/env';
import { EnvironmentError, PermanentError, TransientError, errorMessage } from '../../runtime/errors';
import type { HttpClient } from '../http/client';
import type { Row, WorkItem } from '../../runtime/model';
import { buildMatchUrl, haversineM, normaliseBaseUrl, readMatchResponse, type MatchPoint } from './osrm-match-api';
import { columnReader } from './columns';
import { createPointReader, type GpsPoint } from './osrm-match-points';
import { planWindows, stitch, type Window, type WindowResult } from './osrm-match-windows';
import type { OutputColumn, Task, TaskContext, TaskOutputShape, TaskResult } from './task';

/** Environment variable that overrides the config's base URL (set by the infrastructure). */
export const OSRM_BASE_URL_ENV = 'FANOUT_OSRM_BASE_URL';

/** key -> [header, type], in sheet order. */
type ColumnTable = Record<string, readonly [string, ColumnType]>;

/** Result columns per point (Results sheet). */
const ROW_COLUMNS = {
  matchedLongitude: ['Matched longitude', 'number'],
  matchedLatitude: ['Matched latitude', 'number'],
  matchDistance: ['Match distance (m)', 'number'],
  matchingIndex: ['Matching index', 'integer'],
  timeOrder: ['Order in trip', 'integer'],
  dropped: ['Dropped because', 'text'],
} as const satisfies ColumnTable;

/** Item fields per trip (the `Trips` sheet). */
const TRIP_COLUMNS = {
  tripId: ['Trip id', 'text'],
  points: ['Points', 'integer'],
  pointsMatched: ['Points matched', 'integer'],
  distance: ['Matched distance (m)', 'number'],
  duration: ['Duration (s)', 'number'],
  confidence: ['Mean confidence', 'number'],
  matchings: ['Matchings', 'integer'],
  note: ['Note', 'text'],
} as const satisfies ColumnTable;

type Headers<C extends ColumnTable> = { readonly [K in keyof C]: C[K][0] };

function headersOf<C extends ColumnTable>(columns: C): Headers<C> {
  return Object.fromEntries(Object.entries(columns).map(([key, [name]]) => [key, name])) as Headers<C>;
}

function outputColumns(columns: ColumnTable): OutputColumn[] {
  return Object.values(columns).map(([name, type]) => ({ name, type }));
}

/** Result column headers per point (Results sheet). */
export const OSRM_ROW_COLUMNS = headersOf(ROW_COLUMNS);

/** Item field headers per trip (the `Trips` sheet). */
export const OSRM_TRIP_COLUMNS = headersOf(TRIP_COLUMNS);

/** The shape does not depend on the task's options. */
const OSRM_OUTPUT: TaskOutputShape = {
  rowColumns: outputColumns(ROW_COLUMNS),
  itemSheet: { name: 'Trips', keyColumn: OSRM_TRIP_COLUMNS.tripId, columns: outputColumns(TRIP_COLUMNS) },
};

export function describeOsrmMatchOutput(_config: OsrmMatchTaskConfig): TaskOutputShape {
  return OSRM_OUTPUT;
}

/** The base URL the task calls: the environment override, else the config; validated. */
export function resolveOsrmBaseUrl(config: Pick<OsrmMatchTaskConfig, 'baseUrl'>, env: Env): string {
  const fromEnv = env[OSRM_BASE_URL_ENV]?.trim() || undefined;
  try {
    return normaliseBaseUrl(fromEnv ?? config.baseUrl);
  } catch (err) {
    const message = errorMessage(err);
    if (fromEnv !== undefined) {
      throw new EnvironmentError(`environment variable ${OSRM_BASE_URL_ENV}: ${message}`);
    }
    throw new ConfigError('osrm-match task', [`baseUrl: ${message}`]);
  }
}

/**
 * Windows already answered for items being retried, so a retry after a transient failure of
 * window 3 does not ask for windows 1 and 2 again. Bounded: the oldest entries go first.
 */
class WindowCache {
  private readonly entries = new Map<number, (WindowResult | undefined)[]>();
  constructor(private readonly maxItems: number) {}

  get(item: number, windows: number): (WindowResult | undefined)[] {
    const found = this.entries.get(item);
    if (found !== undefined && found.length === windows) return found;
    const fresh = new Array<WindowResult | undefined>(windows).fill(undefined);
    this.entries.set(item, fresh);
    while (this.entries.size > this.maxItems) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
    return fresh;
  }

  delete(item: number): void {
    this.entries.delete(item);
  }
}

function round(n: number, decimals: number): number {
  const f = 10 ** decimals;
  return Math.round(n * f) / f;
}

/** A point's result row without a match. */
function unmatchedRow(timeOrder: number | null, dropped: string | null): Row {
  const R = OSRM_ROW_COLUMNS;
  return {
    [R.matchedLongitude]: null,
    [R.matchedLatitude]: null,
    [R.matchDistance]: null,
    [R.matchingIndex]: null,
    [R.timeOrder]: timeOrder,
    [R.dropped]: dropped,
  };
}

function summarise(reasons: string[], max = 5): string {
  const shown = reasons.slice(0, max).join('; ');
  return reasons.length > max ? `${shown}; and ${reasons.length - max} more` : shown;
}

export function createOsrmMatchTask(config: OsrmMatchTaskConfig, deps: { client: HttpClient; env: Env }): Task {
  const baseUrl = resolveOsrmBaseUrl(config, deps.env);
  const readPoints = createPointReader(config);
  const readTripId = columnReader(config.columns.tripId);
  const cache = new WindowCache(1024);
  const R = OSRM_ROW_COLUMNS;
  const T = OSRM_TRIP_COLUMNS;

  async function matchWindow(points: readonly GpsPoint[], w: Window, ctx: TaskContext): Promise<WindowResult> {
    const slice: MatchPoint[] = points.slice(w.start, w.end);
    const url = buildMatchUrl(slice, { baseUrl, profile: config.profile, splitGaps: config.splitGaps });
    const res = await deps.client.request({
      method: 'GET',
      url,
      headers: { accept: 'application/json' },
      timeoutMs: config.timeoutMs,
      signal: ctx.signal,
    });
    try {
      return { ok: true, response: readMatchResponse(res, slice.length) };
    } catch (err) {
      if (err instanceof PermanentError) return { ok: false, reason: err.message };
      throw err;
    }
  }

  async function run(item: WorkItem, ctx: TaskContext): Promise<TaskResult> {
    const tripId = item.k ?? String(item.d.map(readTripId).find((v) => v !== null && v !== '') ?? '');
    const { points, invalid } = readPoints(item.d, item.r);
    if (points.length < 2) {
      cache.delete(item.i);
      const why = invalid.length > 0 ? `: ${summarise(invalid.map((p) => p.reason))}` : '';
      throw new PermanentError(
        `trip ${tripId} has ${points.length} usable fix(es) of ${item.d.length}; map matching needs at least 2${why}`,
      );
    }

    const windows = planWindows(points.length, config.maxPoints, config.overlap);
    const results = cache.get(item.i, windows.length);
    for (let k = 0; k < windows.length; k++) {
      if (results[k] !== undefined) continue;
      try {
        results[k] = await matchWindow(points, windows[k], ctx);
      } catch (err) {
        // Transient (kept windows are reused by the retry) or an abort: the attempt ends here.
        if (!(err instanceof TransientError)) cache.delete(item.i);
        throw err;
      }
    }
    cache.delete(item.i);
    const answered = results as WindowResult[];
    const failed = answered.map((r, k) => ({ r, k })).filter((x): x is { r: { ok: false; reason: string }; k: number } => !x.r.ok);
    if (failed.length === windows.length) {
      const reasons = [...new Set(failed.map((f) => f.r.reason))];
      throw new PermanentError(
        windows.length === 1
          ? `trip ${tripId}: ${reasons[0]}`
          : `trip ${tripId}: all ${windows.length} windows failed: ${summarise(reasons)}`,
      );
    }

    const stitched = stitch(windows, answered, points.length);
    const perRow: Row[] = item.d.map(() => ({}));
    for (const bad of invalid) perRow[bad.index] = unmatchedRow(null, `invalid input (${bad.reason})`);
    let matched = 0;
    for (const sp of stitched.points) {
      const p = points[sp.point];
      const row = unmatchedRow(sp.point + 1, sp.dropped ?? null);
      if (sp.location !== undefined) {
        matched++;
        const [lon, lat] = sp.location;
        row[R.matchedLongitude] = lon;
        row[R.matchedLatitude] = lat;
        row[R.matchDistance] = round(haversineM(p.lat, p.lon, lat, lon), 2);
        row[R.matchingIndex] = sp.matching ?? null;
      }
      perRow[p.index] = row;
    }

    const notes: string[] = [];
    if (invalid.length > 0) notes.push(`${invalid.length} invalid row(s) not sent`);
    if (windows.length > 1) notes.push(`matched in ${windows.length} windows`);
    for (const f of failed) {
      const w = windows[f.k];
      notes.push(`window ${f.k + 1} (fixes ${w.start + 1}-${w.end} in time order) failed: ${f.r.reason}`);
    }
    const fields: Row = {
      [T.tripId]: tripId,
      [T.points]: item.d.length,
      [T.pointsMatched]: matched,
      [T.distance]: round(stitched.distanceM, 1),
      [T.duration]: round(stitched.durationS, 1),
      [T.confidence]: stitched.meanConfidence === null ? null : round(stitched.meanConfidence, 3),
      [T.matchings]: stitched.matchings,
      [T.note]: notes.length > 0 ? notes.join('; ') : null,
    };
    return { fields, perRow };
  }

  // No close(): the HTTP client is owned, and closed, by whoever created it (tasks/index.ts).
  return { output: OSRM_OUTPUT, run };
}
