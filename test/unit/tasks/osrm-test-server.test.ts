/**
 * The OSRM test server answers in OSRM's documented format (osrm-backend docs/http.md), so the
 * task tests against it say something about a real server; and the example data set is what
 * its generator makes.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { generateGpsRows, toCsv } from '../../../examples/map-match/make-gps-points';
import { startOsrmTestServer, type OsrmTestServer } from '../../../local/sources/osrm-test-server';
import { lineCoord, toLonLat } from '../../../examples/map-match/road-network';

/** Fixes along Street 8 (y = lineCoord(7)), eastwards from 15 m east of Avenue C, `offsetM` north of it. */
function along(n: number, stepM = 30, offsetM = 3): string {
  return Array.from({ length: n }, (_, k) => toLonLat({ x: lineCoord(2) + 15 + k * stepM, y: lineCoord(7) + offsetM }))
    .map(([lon, lat]) => `${lon.toFixed(6)},${lat.toFixed(6)}`)
    .join(';');
}

describe('OSRM test server', () => {
  let server: OsrmTestServer;
  before(async () => {
    server = await startOsrmTestServer({ maxMatchingSize: 20 });
  });
  after(() => server.close());

  const get = async (path: string) => {
    const res = await fetch(server.url + path);
    return { status: res.status, type: res.headers.get('content-type'), body: (await res.json()) as Record<string, any> };
  };

  it('answers a match with tracepoints and matchings in OSRM format', async () => {
    const { status, type, body } = await get(`/match/v1/driving/${along(5)}?timestamps=0;3;6;9;12&radiuses=5;5;5;5;5&overview=false`);
    assert.equal(status, 200);
    assert.match(type!, /^application\/json/);
    assert.equal(body.code, 'Ok');
    assert.equal(body.tracepoints.length, 5);
    const tp = body.tracepoints[2];
    assert.deepEqual(Object.keys(tp).sort(), [
      'alternatives_count',
      'distance',
      'hint',
      'location',
      'matchings_index',
      'name',
      'waypoint_index',
    ]);
    assert.equal(tp.name, 'Street 8');
    assert.equal(tp.waypoint_index, 2);
    assert.ok(Math.abs(tp.distance - 3) < 0.1);
    const m = body.matchings[0];
    assert.equal(m.legs.length, 4);
    assert.ok(m.confidence > 0 && m.confidence <= 1);
    assert.ok(Math.abs(m.distance - 120) < 0.5, `${m.distance}`);
    assert.equal(m.weight_name, 'routability');
    assert.equal(m.geometry, undefined);
  });

  it('adds a GeoJSON geometry when an overview is asked for', async () => {
    const { body } = await get(`/match/v1/driving/${along(3)}?geometries=geojson&overview=full`);
    assert.equal(body.matchings[0].geometry.type, 'LineString');
  });

  it('splits the trace at a gap of more than 60 s, and not with gaps=ignore', async () => {
    const split = await get(`/match/v1/driving/${along(4)}?timestamps=0;5;100;105`);
    assert.equal(split.body.matchings.length, 2);
    assert.deepEqual(
      split.body.tracepoints.map((t: { matchings_index: number; waypoint_index: number }) => [t.matchings_index, t.waypoint_index]),
      [
        [0, 0],
        [0, 1],
        [1, 0],
        [1, 1],
      ],
    );
    const ignore = await get(`/match/v1/driving/${along(4)}?timestamps=0;5;100;105&gaps=ignore`);
    assert.equal(ignore.body.matchings.length, 1);
  });

  it('leaves a fix out of reach of every road as a null tracepoint', async () => {
    const coords = along(4).split(';');
    const [lon, lat] = toLonLat({ x: lineCoord(2) + 45, y: lineCoord(7) + 95 });
    coords[1] = `${lon.toFixed(6)},${lat.toFixed(6)}`;
    const { body } = await get(`/match/v1/driving/${coords.join(';')}?radiuses=5;5;5;5`);
    assert.equal(body.tracepoints[1], null);
    assert.equal(body.matchings[0].legs.length, 2);
  });

  for (const [code, path] of [
    ['TooBig', `/match/v1/driving/${along(21)}`],
    ['NoSegment', '/match/v1/driving/13.6,52.6;13.61,52.6'],
    ['InvalidValue', `/match/v1/driving/${along(3)}?timestamps=5;4;6`],
    ['InvalidOptions', `/match/v1/driving/${along(3)}?radiuses=5;5`],
    ['InvalidQuery', `/match/v1/driving/${along(3)}?speed=fast`],
    ['InvalidUrl', '/match/v1/driving/13.4;52.5'],
  ] as const) {
    it(`answers ${code} with HTTP 400 and a message`, async () => {
      const { status, body } = await get(path);
      assert.equal(status, 400);
      assert.equal(body.code, code);
      assert.equal(typeof body.message, 'string');
    });
  }

  it('counts the requests it answered', () => {
    assert.ok(server.requests() >= 10);
  });
});

describe('example GPS data set', () => {
  it('is what make-gps-points.ts generates', () => {
    const onDisk = readFileSync(new URL('../../../examples/map-match/gps-points.csv', import.meta.url), 'utf8');
    assert.equal(onDisk, toCsv(generateGpsRows()));
  });
});
