/**
 * The osrm-match task against the OSRM test server (local/sources/osrm-test-server.ts) on
 * loopback, through the real HttpClient: no HTTP mocks.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createOsrmMatchTask, OSRM_ROW_COLUMNS as R, OSRM_TRIP_COLUMNS as T } from '../../../batch-jobs/tasks/osrm-match';
import type { TaskContext, TaskResult } from '../../../batch-jobs/tasks/task';
import { drive, type Fix } from '../../../examples/map-match/make-gps-points';
import { mulberry32 } from '../../../examples/seeded-random';
import { answer, startOsrmTestServer, type OsrmTestFault, type OsrmTestServer } from '../../../local/sources/osrm-test-server';
import { lineCoord, STREETS, toLonLat } from '../../../examples/map-match/road-network';
import { osrmMatchTaskSchema, ConfigError, type OsrmMatchTaskConfig } from '../../../runtime/config/schema';
import { EnvironmentError, PermanentError, TransientError } from '../../../runtime/errors';
import { HttpClient } from '../../../batch-jobs/http/client';
import type { Cell, Row, WorkItem } from '../../../runtime/model';

const START = Date.UTC(2024, 4, 1, 8, 0, 0) / 1000;

function configFor(baseUrl: string, extra: Partial<OsrmMatchTaskConfig> = {}): OsrmMatchTaskConfig {
  return {
    ...osrmMatchTaskSchema.parse({
      type: 'osrm-match',
      baseUrl,
      columns: { tripId: 'trip_id', timestamp: 'timestamp', latitude: 'latitude', longitude: 'longitude', accuracy: 'accuracy_m' },
    }),
    ...extra,
  };
}

function rowOf(f: Fix, time: Cell = f.time): Row {
  return { trip_id: 'T1', timestamp: time, latitude: f.lat.toFixed(6), longitude: f.lon.toFixed(6), accuracy_m: f.accuracyM };
}

/** A work item of the given rows, source rows numbered from 2 in the given order. */
function itemOf(rows: Row[], i = 0): WorkItem {
  return { i, k: 'T1', r: rows.map((_, k) => k + 2), d: rows };
}

function trip(n: number, seed = 7): Fix[] {
  // No outliers, so every fix is matched and joins can be checked point by point.
  return drive(mulberry32(seed), { fixes: n, startTime: START, intervalS: [2, 4], outlierRate: 0 });
}

const ctx = (): TaskContext => ({ attempt: 1, signal: new AbortController().signal });

function errorBody(path: string): OsrmTestFault {
  const [status, body] = answer(path, 100);
  return { status, body: JSON.stringify(body), headers: { 'content-type': 'application/json; charset=UTF-8' } };
}

describe('osrm-match task against the OSRM test server', () => {
  let server: OsrmTestServer;
  let client: HttpClient;
  let fault: ((n: number, url: string) => OsrmTestFault | undefined) | undefined;
  const urls: string[] = [];

  before(async () => {
    server = await startOsrmTestServer({
      maxMatchingSize: 100,
      // `n` passed on is the request's number within the current test
      fault: (_n, url) => {
        urls.push(url);
        return fault?.(urls.length, url);
      },
    });
    client = new HttpClient({ connections: 4 });
  });
  after(async () => {
    await client.close();
    await server.close();
  });
  beforeEach(() => {
    fault = undefined;
    urls.length = 0;
  });

  const run = (item: WorkItem, extra: Partial<OsrmMatchTaskConfig> = {}, env: Record<string, string> = {}) =>
    createOsrmMatchTask(configFor(server.url, extra), { client, env }).run(item, ctx());

  describe('windowing and stitching', () => {
    it('matches a 250-fix trip in three windows: 250 outcomes, one match each, continuous at the joins', async () => {
      // given a clean 250-fix trip and a server limit of 100 coordinates
      const fixes = trip(250);
      // when matched with maxPoints 100, overlap 10
      const res = await run(itemOf(fixes.map((f) => rowOf(f))), { maxPoints: 100, overlap: 10 });
      // then three requests of at most 100 coordinates were made
      assert.equal(urls.length, 3);
      for (const url of urls) assert.ok(url.split('?')[0].split(';').length <= 100);
      // and every fix has exactly one outcome, in time order 1..250, none dropped
      const rows = res.perRow!;
      assert.equal(rows.length, 250);
      assert.deepEqual(
        rows.map((r) => r[R.timeOrder]),
        Array.from({ length: 250 }, (_, k) => k + 1),
      );
      assert.ok(rows.every((r) => typeof r[R.matchedLongitude] === 'number' && r[R.dropped] === null));
      assert.equal(res.fields![T.pointsMatched], 250);
      // and the joins (the middle of each overlap: fixes 85|86 and 165|166) keep one matching and
      // consecutive matches no farther apart than the car can drive
      assert.ok(rows.every((r) => r[R.matchingIndex] === 0));
      for (const cut of [85, 165]) {
        const a = fixes[cut - 1];
        const b = fixes[cut];
        const gapM = Math.hypot(
          ((rows[cut - 1][R.matchedLongitude] as number) - (rows[cut][R.matchedLongitude] as number)) * 67_800,
          ((rows[cut - 1][R.matchedLatitude] as number) - (rows[cut][R.matchedLatitude] as number)) * 111_195,
        );
        assert.ok(gapM <= 14 * (b.time - a.time) + 1, `join at ${cut}: ${gapM.toFixed(1)} m`);
      }
    });

    it('gives the same matches and distance as one request of the whole trip', async () => {
      const rows = trip(250, 11).map((f) => rowOf(f));
      const windowed = await run(itemOf(rows), { maxPoints: 100, overlap: 10 });
      // (a second server, with a limit of 1000, answers the whole trip in one request)
      const big = await startOsrmTestServer({ maxMatchingSize: 1000 });
      try {
        const single = await createOsrmMatchTask(configFor(big.url, { maxPoints: 1000 }), { client, env: {} }).run(itemOf(rows), ctx());
        const same = windowed.perRow!.filter(
          (r, k) =>
            r[R.matchedLongitude] === single.perRow![k][R.matchedLongitude] &&
            r[R.matchedLatitude] === single.perRow![k][R.matchedLatitude],
        ).length;
        assert.ok(same >= 248, `${same} of 250 matches agree`);
        const dw = windowed.fields![T.distance] as number;
        const ds = single.fields![T.distance] as number;
        assert.ok(Math.abs(dw - ds) <= ds * 0.01, `windowed ${dw} m vs single ${ds} m`);
      } finally {
        await big.close();
      }
    });

    it('keeps the trip done when one window fails, with the reason on the fixes only that window had', async () => {
      // given the server answers the second window with NoMatch
      fault = (n) =>
        n === 2 ? { status: 400, body: JSON.stringify({ code: 'NoMatch', message: 'Could not match the trace.' }) } : undefined;
      const res = await run(itemOf(trip(250).map((f) => rowOf(f))), { maxPoints: 100, overlap: 10 });
      // then fixes 86..160 (owned by window 2, not in windows 1 or 3) say why, the others are matched
      const dropped = res.perRow!.filter((r) => r[R.dropped] !== null);
      assert.equal(dropped.length, 70);
      assert.match(String(dropped[0][R.dropped]), /^window 2 of 3 \(fixes 81-170 in time order\) failed: OSRM NoMatch/);
      assert.equal(res.fields![T.pointsMatched], 180);
      assert.match(String(res.fields![T.note]), /window 2 \(fixes 81-170 in time order\) failed: OSRM NoMatch/);
    });

    it('fails the trip when every window fails', async () => {
      fault = () => ({ status: 400, body: JSON.stringify({ code: 'NoMatch', message: 'Could not match the trace.' }) });
      await assert.rejects(run(itemOf(trip(250).map((f) => rowOf(f))), { maxPoints: 100 }), (err: unknown) => {
        assert.ok(err instanceof PermanentError);
        assert.match(err.message, /^trip T1: all 3 windows failed: OSRM NoMatch/);
        return true;
      });
    });

    it('asks again only for the windows a transient failure left unanswered', async () => {
      // given window 3 fails once with 503
      fault = (n) => (n === 3 ? { status: 503, body: 'busy' } : undefined);
      const task = createOsrmMatchTask(configFor(server.url), { client, env: {} });
      const item = itemOf(trip(250).map((f) => rowOf(f)));
      await assert.rejects(task.run(item, ctx()), TransientError);
      // when the item is retried
      const res = await task.run(item, { ...ctx(), attempt: 2 });
      // then only window 3 is requested again
      assert.equal(urls.length, 4);
      assert.equal(res.fields![T.pointsMatched], 250);
    });
  });

  describe('input order and formats', () => {
    it('sorts shuffled rows by time and returns results aligned with the input rows', async () => {
      // given a trip whose rows are shuffled
      const fixes = trip(60, 3);
      const rand = mulberry32(99);
      const order = fixes.map((_, k) => k).sort(() => rand() - 0.5);
      const rows = order.map((k) => rowOf(fixes[k]));
      // when matched
      const res = await run(itemOf(rows));
      // then the request was in time order
      const sent = urls[0].split('timestamps=')[1].split('&')[0].split(';').map(Number);
      assert.deepEqual(
        sent,
        [...sent].sort((a, b) => a - b),
      );
      // and each result row belongs to its own input row: its time rank, and a match near its fix
      res.perRow!.forEach((r, j) => {
        assert.equal(r[R.timeOrder], order[j] + 1);
        assert.ok((r[R.matchDistance] as number) < 40, `row ${j}: ${String(r[R.matchDistance])} m`);
      });
    });

    it('reads ISO 8601 and UNIX timestamps alike', async () => {
      const fixes = trip(40, 5);
      const unix = await run(itemOf(fixes.map((f) => rowOf(f, f.time))));
      const isoZ = await run(itemOf(fixes.map((f) => rowOf(f, new Date(f.time * 1000).toISOString()))));
      const isoOffset = await run(
        itemOf(fixes.map((f) => rowOf(f, `${new Date((f.time + 7200) * 1000).toISOString().slice(0, 19)}+02:00`))),
      );
      assert.deepEqual(isoZ, unix);
      assert.deepEqual(isoOffset, unix);
      assert.equal(urls[0].split('timestamps=')[1].split(';')[0], String(fixes[0].time));
    });

    it('reports invalid coordinates and timestamps on their rows and does not send them', async () => {
      const fixes = trip(30, 8);
      const rows = fixes.map((f) => rowOf(f));
      rows[3] = { ...rows[3], latitude: '95.5' };
      rows[7] = { ...rows[7], longitude: 'east' };
      rows[12] = { ...rows[12], timestamp: '2024-13-01T00:00:00Z' };
      const res = await run(itemOf(rows));
      assert.equal(urls[0].split('?')[0].split(';').length, 27);
      assert.equal(res.perRow![3][R.dropped], 'invalid input (row 5: latitude 95.5 is outside -90..90)');
      assert.equal(res.perRow![7][R.dropped], 'invalid input (row 9: longitude "east" is not a number)');
      assert.match(String(res.perRow![12][R.dropped]), /^invalid input \(row 14: timestamp "2024-13-01T00:00:00Z" is not a valid date/);
      assert.equal(res.fields![T.points], 30);
      assert.equal(res.fields![T.pointsMatched], 27);
      assert.match(String(res.fields![T.note]), /3 invalid row\(s\) not sent/);
    });

    it('fails a trip with fewer than two usable fixes, naming the bad rows', async () => {
      const rows = trip(2).map((f) => rowOf(f));
      rows[1] = { ...rows[1], latitude: null };
      await assert.rejects(
        run(itemOf(rows)),
        /trip T1 has 1 usable fix\(es\) of 2; map matching needs at least 2: row 3: latitude is empty/,
      );
      assert.equal(urls.length, 0);
    });
  });

  describe('OSRM error codes', () => {
    it('NoSegment: a trip far from every road', async () => {
      const far = drive(mulberry32(1), { fixes: 20, startTime: START, offset: { x: 6000, y: 0 } });
      await assert.rejects(run(itemOf(far.map((f) => rowOf(f)))), (err: unknown) => {
        assert.ok(err instanceof PermanentError);
        assert.match(err.message, /^trip T1: OSRM NoSegment: .*\(server: Could not find a matching segment for any coordinate\.\)$/);
        return true;
      });
    });

    it('NoMatch: fixes that cannot follow one another', async () => {
      const corners = [
        [lineCoord(1), lineCoord(1)],
        [lineCoord(STREETS - 2), lineCoord(STREETS - 2)],
        [lineCoord(1), lineCoord(STREETS - 2)],
      ];
      const rows = Array.from({ length: 9 }, (_, k) => {
        const [lon, lat] = toLonLat({ x: corners[k % 3][0], y: corners[k % 3][1] });
        return { trip_id: 'T1', timestamp: START + k, latitude: lat, longitude: lon, accuracy_m: 5 } as Row;
      });
      await assert.rejects(run(itemOf(rows)), /^PermanentError: trip T1: OSRM NoMatch: .*Could not match the trace/);
    });

    it('TooBig: maxPoints above the server limit, with the fix to make', async () => {
      const rows = trip(150).map((f) => rowOf(f));
      await assert.rejects(run(itemOf(rows), { maxPoints: 150 }), (err: unknown) => {
        assert.ok(err instanceof PermanentError);
        assert.match(
          err.message,
          /OSRM TooBig: .*Too many trace coordinates.*set the task's maxPoints to at most the server's --max-matching-size/,
        );
        return true;
      });
    });

    for (const [code, path] of [
      ['InvalidUrl', '/match/v1/driving/abc,1;2,3'],
      ['InvalidQuery', '/match/v1/driving/13.4,52.5;13.41,52.5?radiuses=x;y'],
      ['InvalidOptions', '/match/v1/driving/13.4,52.5;13.41,52.5?timestamps=1'],
      ['InvalidValue', '/match/v1/driving/13.4,152.5;13.41,52.5'],
      ['InvalidService', '/matsch/v1/driving/13.4,52.5;13.41,52.5'],
      ['InvalidVersion', '/match/v2/driving/13.4,52.5;13.41,52.5'],
      ['NotImplemented', '/route/v1/driving/13.4,52.5;13.41,52.5'],
    ] as const) {
      it(`${code}: the server's answer to a malformed request fails the trip with the code and message`, async () => {
        // given the server answers as it does to `path` (the task itself never sends such requests)
        const fault400 = errorBody(path);
        fault = () => fault400;
        const expected = JSON.parse((fault400 as { body: string }).body) as { code: string; message: string };
        assert.equal(expected.code, code);
        await assert.rejects(run(itemOf(trip(10).map((f) => rowOf(f)))), (err: unknown) => {
          assert.ok(err instanceof PermanentError);
          assert.ok(err.message.startsWith(`trip T1: OSRM ${code}: `), err.message);
          assert.ok(err.message.includes(`(server: ${expected.message})`), err.message);
          return true;
        });
      });
    }

    it('an HTTP error without an OSRM code (not an OSRM server) is permanent', async () => {
      fault = () => ({ status: 404, body: 'Not Found' });
      await assert.rejects(
        run(itemOf(trip(10).map((f) => rowOf(f)))),
        /HTTP 404 without an OSRM error code: Not Found \(is the base URL an OSRM server\?\)/,
      );
    });
  });

  describe('transient failures', () => {
    it('a reset connection is a TransientError', async () => {
      fault = () => 'reset';
      await assert.rejects(run(itemOf(trip(10).map((f) => rowOf(f)))), TransientError);
    });

    it('no answer within timeoutMs is a TransientError', async () => {
      fault = () => 'hang';
      await assert.rejects(run(itemOf(trip(10).map((f) => rowOf(f))), { timeoutMs: 200 }), (err: unknown) => {
        assert.ok(err instanceof TransientError);
        assert.match(err.message, /timed out after 200 ms/);
        return true;
      });
    });

    it('429 and 5xx are TransientErrors carrying Retry-After', async () => {
      for (const status of [429, 502, 503, 504]) {
        fault = () => ({ status, body: 'slow down', headers: { 'retry-after': '7' } });
        await assert.rejects(run(itemOf(trip(10).map((f) => rowOf(f)))), (err: unknown) => {
          assert.ok(err instanceof TransientError, `${status}`);
          assert.equal(err.retryAfterMs, 7000);
          assert.match(err.message, new RegExp(`^OSRM answered HTTP ${status}`));
          return true;
        });
      }
    });

    it('a 200 with a body that is not JSON is a TransientError', async () => {
      fault = () => ({ status: 200, body: '{"code":"Ok","tracep' });
      await assert.rejects(run(itemOf(trip(10).map((f) => rowOf(f)))), TransientError);
    });

    it('a refused connection is a TransientError', async () => {
      const gone = await startOsrmTestServer();
      await gone.close();
      await assert.rejects(
        createOsrmMatchTask(configFor(gone.url), { client, env: {} }).run(itemOf(trip(10).map((f) => rowOf(f))), ctx()),
        TransientError,
      );
    });
  });

  describe('base URL', () => {
    it('FANOUT_OSRM_BASE_URL overrides the config', async () => {
      // given a config pointing at nothing and the environment pointing at the server
      const gone = await startOsrmTestServer();
      await gone.close();
      const task = createOsrmMatchTask(configFor(gone.url), { client, env: { FANOUT_OSRM_BASE_URL: `${server.url}/` } });
      const res: TaskResult = await task.run(itemOf(trip(10).map((f) => rowOf(f))), ctx());
      assert.equal(res.fields![T.pointsMatched], 10);
      assert.match(
        urls[0],
        /^\/match\/v1\/driving\/[-0-9.,;]+\?timestamps=[0-9;]+&radiuses=[0-9.;]+&geometries=geojson&overview=false&annotations=false&gaps=split&tidy=false$/,
      );
    });

    it('rejects a bad base URL at start, naming where it came from', () => {
      assert.throws(
        () => createOsrmMatchTask(configFor(server.url), { client, env: { FANOUT_OSRM_BASE_URL: 'osrm:5000' } }),
        EnvironmentError,
      );
      assert.throws(() => createOsrmMatchTask(configFor('ftp://osrm'), { client, env: {} }), ConfigError);
    });

    it('sends gaps=ignore when splitGaps is off and the configured profile', async () => {
      await run(itemOf(trip(10).map((f) => rowOf(f))), { splitGaps: false, profile: 'car' });
      assert.match(urls[0], /^\/match\/v1\/car\/.*&gaps=ignore&/);
    });
  });
});
