import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OsrmMatchResponse, OsrmTracepoint } from '../../../batch-jobs/tasks/osrm-match-api';
import { ownerOfPoints, planWindows, stitch, type WindowResult } from '../../../batch-jobs/tasks/osrm-match-windows';

describe('planWindows', () => {
  it('keeps a trip within maxPoints in one window', () => {
    assert.deepEqual(planWindows(100, 100, 10), [{ start: 0, end: 100 }]);
  });

  it('cuts 250 points into three balanced windows of at most 100 sharing at least 10', () => {
    const windows = planWindows(250, 100, 10);
    assert.deepEqual(windows, [
      { start: 0, end: 90 },
      { start: 80, end: 170 },
      { start: 160, end: 250 },
    ]);
  });

  it('covers every point, respects the limits and overlaps, for many sizes', () => {
    for (const [maxPoints, overlap] of [
      [100, 10],
      [100, 99],
      [3, 1],
      [25, 7],
    ]) {
      for (let n = 2; n <= 400; n++) {
        const windows = planWindows(n, maxPoints, overlap);
        assert.equal(windows[0].start, 0);
        assert.equal(windows.at(-1)!.end, n);
        for (const [k, w] of windows.entries()) {
          assert.ok(w.end - w.start <= maxPoints, `n=${n} window ${k} too long`);
          if (k > 0) assert.ok(windows[k - 1].end - w.start >= Math.min(overlap, n), `n=${n} overlap ${k}`);
        }
      }
    }
  });

  it('rejects an overlap that leaves no room to advance', () => {
    assert.throws(() => planWindows(10, 5, 5), RangeError);
  });
});

describe('ownerOfPoints', () => {
  it('cuts each overlap in the middle', () => {
    // given windows [0,90) [80,170) [160,250), then points 80..84 belong to the first, 85.. to the second
    const owner = ownerOfPoints(planWindows(250, 100, 10), 250);
    assert.equal(owner[84], 0);
    assert.equal(owner[85], 1);
    assert.equal(owner[164], 1);
    assert.equal(owner[165], 2);
  });
});

/** A window answer in which every point is matched at (index, 0), one matching, legs of 1 m. */
function allMatched(start: number, end: number, skip: number[] = []): WindowResult {
  const tracepoints: (OsrmTracepoint | null)[] = [];
  let w = 0;
  for (let i = start; i < end; i++) {
    tracepoints.push(skip.includes(i) ? null : { location: [i, 0], matchings_index: 0, waypoint_index: w++ });
  }
  const response: OsrmMatchResponse = {
    code: 'Ok',
    tracepoints,
    matchings: [
      {
        confidence: 0.9,
        distance: w - 1,
        duration: w - 1,
        legs: Array.from({ length: w - 1 }, () => ({ distance: 1, duration: 2 })),
      },
    ],
  };
  return { ok: true, response };
}

describe('stitch', () => {
  it('gives every point one match, one trip-level matching, and counts each leg once', () => {
    const windows = planWindows(250, 100, 10);
    const results = windows.map((w) => allMatched(w.start, w.end));
    const trip = stitch(windows, results, 250);
    assert.equal(trip.points.length, 250);
    assert.deepEqual(
      trip.points.map((p) => p.location![0]),
      Array.from({ length: 250 }, (_, i) => i),
    );
    assert.equal(trip.matchings, 1);
    assert.ok(trip.points.every((p) => p.matching === 0));
    assert.equal(trip.distanceM, 249);
    assert.equal(trip.durationS, 498);
  });

  it('takes a point from the neighbour window when its owner left it out', () => {
    const windows = planWindows(250, 100, 10);
    // point 86 is owned by window 1 (index 1), which has a null tracepoint for it
    const results = [allMatched(0, 90), allMatched(80, 170, [86]), allMatched(160, 250)];
    const trip = stitch(windows, results, 250);
    assert.equal(trip.points[86].window, 0);
    assert.deepEqual(trip.points[86].location, [86, 0]);
    assert.equal(trip.matchings, 1);
  });

  it('reports the failed window on the points only it could match', () => {
    const windows = planWindows(250, 100, 10);
    const results: WindowResult[] = [allMatched(0, 90), { ok: false, reason: 'OSRM NoMatch: ...' }, allMatched(160, 250)];
    const trip = stitch(windows, results, 250);
    // points 85..89 fall back to window 0; 90..159 have no other window; 160..164 fall back to window 2
    assert.equal(trip.points[89].window, 0);
    assert.match(trip.points[90].dropped!, /^window 2 of 3 \(fixes 81-170 in time order\) failed: OSRM NoMatch/);
    assert.equal(trip.points[160].window, 2);
    assert.equal(trip.points.filter((p) => p.dropped).length, 70);
    assert.equal(trip.matchings, 2);
  });
});
