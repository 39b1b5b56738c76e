/**
 * Windowing and stitching for the `osrm-match` task.
 *
 * A trip longer than the server's limit (`maxPoints`, osrm-routed --max-matching-size) is cut
 * into windows of at most `maxPoints` consecutive fixes (in time order); consecutive windows
 * share at least `overlap` fixes. The windows are balanced: all have about the same length, so
 * no window is a short tail with little context for the matcher.
 *
 * Stitching rule (which window owns a shared fix): the overlap of windows A and B is cut in
 * the middle. Fixes before the cut take their match from A, fixes from the cut on from B, so
 * every fix is taken from the window in which it lies farthest from an edge, where the
 * matcher has the most context on both sides. When the owning window has no match for a fix
 * (a null tracepoint, or the window failed), the other window's match is used if it has one.
 * Each fix therefore gets at most one matched location.
 *
 * Matching indices are renumbered per trip, in time order. OSRM numbers the sub-traces
 * (`matchings`) of each request from 0; at a join, the sub-trace of B continues the one of A
 * (same trip-level matching index) when B itself matched the previous fix and the current
 * one in the same sub-trace, which is what continuity at a join means. Distance and duration
 * are summed from the route legs (`matchings[].legs[]`) between consecutive matched fixes,
 * each leg taken from the window the later fix's match comes from; a leg that would overlap
 * one already counted is skipped, so the shared fixes are not counted twice.
 */
import type { OsrmMatchResponse } from './osrm-match-api';

export interface Window {
  /** First fix (index into the time-ordered points). */
  start: number;
  /** One past the last fix. */
  end: number;
}

/**
 * Cuts `n` points into balanced windows of at most `maxPoints` with at least `overlap` shared
 * points between neighbours. One window when `n <= maxPoints`.
 */
export function planWindows(n: number, maxPoints: number, overlap: number): Window[] {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`point count must be a whole number >= 0, got ${n}`);
  if (!Number.isInteger(maxPoints) || maxPoints < 2) throw new RangeError(`maxPoints must be >= 2, got ${maxPoints}`);
  if (!Number.isInteger(overlap) || overlap < 1 || overlap >= maxPoints) {
    throw new RangeError(`overlap must be 1..maxPoints-1, got ${overlap} (maxPoints ${maxPoints})`);
  }
  if (n <= maxPoints) return [{ start: 0, end: n }];
  const count = Math.ceil((n - overlap) / (maxPoints - overlap));
  // Every window has `length` points; starts are spread evenly from 0 to n - length.
  // count * length >= n + (count - 1) * overlap keeps every overlap >= `overlap`, and
  // count >= (n - overlap) / (maxPoints - overlap) keeps length <= maxPoints.
  const length = Math.ceil((n + (count - 1) * overlap) / count);
  const windows: Window[] = [];
  for (let k = 0; k < count; k++) {
    const start = Math.floor((k * (n - length)) / (count - 1));
    windows.push({ start, end: start + length });
  }
  return windows;
}

/**
 * Ownership: for each point, the window whose match it takes first. The overlap of windows
 * k-1 and k, [start_k, end_{k-1}), is cut at start_k + floor(overlap / 2).
 */
export function ownerOfPoints(windows: readonly Window[], n: number): number[] {
  const owner = new Array<number>(n).fill(0);
  for (let k = 0; k < windows.length; k++) {
    const w = windows[k];
    const from = k === 0 ? w.start : cutBetween(windows[k - 1], w);
    const to = k === windows.length - 1 ? w.end : cutBetween(w, windows[k + 1]);
    for (let i = from; i < to; i++) owner[i] = k;
  }
  return owner;
}

/** First point owned by `b` when `a` precedes it. */
export function cutBetween(a: Window, b: Window): number {
  const shared = Math.max(0, a.end - b.start);
  return b.start + Math.floor(shared / 2);
}

/** A window's answer: the response, or why it failed for good. */
export type WindowResult = { ok: true; response: OsrmMatchResponse } | { ok: false; reason: string };

export interface StitchedPoint {
  /** Index into the time-ordered points. */
  point: number;
  /** Matched location, or absent with `dropped`. */
  location?: [number, number];
  /** Trip-level matching index (0-based, in time order). */
  matching?: number;
  /** Confidence of the OSRM matching the location came from. */
  confidence?: number;
  /** Window the match was taken from. */
  window?: number;
  dropped?: string;
}

export interface StitchedTrip {
  points: StitchedPoint[];
  /** Number of trip-level matchings. */
  matchings: number;
  distanceM: number;
  durationS: number;
  /** Point-weighted mean of the confidence of the matchings the matched points come from. */
  meanConfidence: number | null;
}

/**
 * Stitches window answers into one match per point (see the module comment for the rule).
 * `results[k]` answers `windows[k]`; tracepoint j of window k is point windows[k].start + j.
 */
export function stitch(windows: readonly Window[], results: readonly WindowResult[], n: number): StitchedTrip {
  const owner = ownerOfPoints(windows, n);
  const windowsOf = (i: number): number[] => {
    const ks: number[] = [];
    for (let k = Math.max(0, owner[i] - 1); k <= Math.min(windows.length - 1, owner[i] + 1); k++) {
      if (i >= windows[k].start && i < windows[k].end) ks.push(k);
    }
    return ks;
  };
  const tracepoint = (k: number, i: number) => {
    const r = results[k];
    if (!r.ok || i < windows[k].start || i >= windows[k].end) return undefined;
    return r.response.tracepoints[i - windows[k].start] ?? undefined;
  };

  // Point index of each (matching, waypoint) of each window: where a route leg starts.
  const waypointPoint = windows.map((w, k) => {
    const map = new Map<string, number>();
    const r = results[k];
    if (r.ok) {
      r.response.tracepoints.forEach((tp, j) => {
        if (tp) map.set(`${tp.matchings_index}:${tp.waypoint_index}`, w.start + j);
      });
    }
    return map;
  });

  // Trip-level ids of each window's OSRM matchings, assigned in time order as they are met.
  const globalIds = windows.map(() => new Map<number, number>());
  let nextId = 0;
  let prev: { point: number; id: number } | undefined;
  // Legs are intervals of points; only legs starting at or after the end of the last counted
  // one are counted, so an overlap is never counted twice.
  let lastLegEnd = -1;
  let distanceM = 0;
  let durationS = 0;
  let confidenceSum = 0;
  let matched = 0;
  const out: StitchedPoint[] = [];

  for (let i = 0; i < n; i++) {
    const own = owner[i];
    // The owner first, then the other windows holding the point.
    const candidates = [own, ...windowsOf(i).filter((k) => k !== own)];
    const source = candidates.find((k) => tracepoint(k, i) !== undefined);
    if (source === undefined) {
      out.push({ point: i, dropped: droppedReason(windows, results, own) });
      continue;
    }
    const tp = tracepoint(source, i)!;
    const response = (results[source] as { ok: true; response: OsrmMatchResponse }).response;
    const matching = response.matchings[tp.matchings_index];
    // Does this window see the previous matched point as the waypoint before, in the same sub-trace?
    const prevTp = prev === undefined ? undefined : tracepoint(source, prev.point);
    const continues =
      prevTp !== undefined && prevTp.matchings_index === tp.matchings_index && prevTp.waypoint_index === tp.waypoint_index - 1;
    let id = globalIds[source].get(tp.matchings_index);
    if (id === undefined) {
      id = continues ? prev!.id : nextId++;
      globalIds[source].set(tp.matchings_index, id);
    }
    if (tp.waypoint_index > 0) {
      const legStart = waypointPoint[source].get(`${tp.matchings_index}:${tp.waypoint_index - 1}`);
      const leg = matching.legs?.[tp.waypoint_index - 1];
      if (legStart !== undefined && legStart >= lastLegEnd && leg !== undefined) {
        distanceM += leg.distance;
        durationS += leg.duration;
        lastLegEnd = i;
      }
    }
    confidenceSum += matching.confidence;
    matched++;
    out.push({ point: i, location: tp.location, matching: id, confidence: matching.confidence, window: source });
    prev = { point: i, id };
  }

  // A single window without legs (an OSRM that leaves them out): use its matchings' totals.
  if (windows.length === 1 && results[0].ok && results[0].response.matchings.some((m) => m.legs === undefined)) {
    distanceM = results[0].response.matchings.reduce((s, m) => s + m.distance, 0);
    durationS = results[0].response.matchings.reduce((s, m) => s + m.duration, 0);
  }
  return {
    points: out,
    matchings: nextId,
    distanceM,
    durationS,
    meanConfidence: matched === 0 ? null : confidenceSum / matched,
  };
}

function droppedReason(windows: readonly Window[], results: readonly WindowResult[], own: number): string {
  const r = results[own];
  if (!r.ok) {
    const w = windows[own];
    return windows.length === 1
      ? r.reason
      : `window ${own + 1} of ${windows.length} (fixes ${w.start + 1}-${w.end} in time order) failed: ${r.reason}`;
  }
  return 'OSRM left this fix out of every matching (null tracepoint: an outlier, or too far from a road)';
}
