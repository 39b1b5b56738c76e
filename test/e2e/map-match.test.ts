/**
 * End to end, the map-match pipeline: GPS fixes grouped by trip (rows interleaved and unsorted),
 * matched against the OSRM test server through the emulators, read back from the workbook.
 */
import assert from 'node:assert/strict';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Papa from 'papaparse';
import { startOsrmTestServer, type OsrmTestServer } from '../../local/sources/osrm-test-server';
import { loadConfigFile } from '../../runtime/config/schema';
import { PROJECT_ROOT, runLocal } from '../../local/local-run';
import { readSheets } from './fixtures';

let dir: string;
let server: OsrmTestServer;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-mm-'));
  server = await startOsrmTestServer({ port: 0 });
});
after(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

function haversineM(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const r = 6_371_008.8;
  const rad = Math.PI / 180;
  const a =
    Math.sin(((lat2 - lat1) * rad) / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(((lon2 - lon1) * rad) / 2) ** 2;
  return 2 * r * Math.asin(Math.sqrt(a));
}

describe('map-match end to end', () => {
  it('matches every trip and accounts for every GPS fix in the workbook', async () => {
    const csvPath = join(PROJECT_ROOT, 'examples', 'map-match', 'gps-points.csv');
    const input = Papa.parse<Record<string, string>>(await readFile(csvPath, 'utf8'), { header: true, skipEmptyLines: true }).data;
    const config = loadConfigFile(join(PROJECT_ROOT, 'examples', 'map-match', 'pipelines.json'));
    const result = await runLocal({
      file: csvPath,
      pipeline: 'map-match',
      config,
      outDir: join(dir, 'out'),
      env: { FANOUT_OSRM_BASE_URL: server.url },
    });
    assert.equal(result.status, 'SUCCEEDED', result.error);
    assert.equal(result.iam.denied, 0, 'no call the synthesized IAM policies would deny');
    const trips = new Set(input.map((r) => r.trip_id));
    assert.equal(result.items, trips.size, 'one work item per trip');
    assert.ok(server.requests() >= trips.size, 'every trip went to OSRM');

    const sheets = await readSheets(result.resultFile!);
    assert.deepEqual([...sheets.keys()], ['Results', 'Errors', 'Trips', 'Summary']);
    const results = sheets.get('Results')!;
    const h = results[0] as string[];
    const col = (name: string) => {
      const i = h.indexOf(name);
      assert.ok(i >= 0, `Results has a "${name}" column`);
      return i;
    };
    const [cTrip, cLat, cLon, cTs] = ['trip_id', 'latitude', 'longitude', 'timestamp'].map(col) as [number, number, number, number];
    const [cMLon, cMLat, cDist, cStatus] = ['Matched longitude', 'Matched latitude', 'Match distance (m)', 'Status'].map(col) as [
      number,
      number,
      number,
      number,
    ];
    const cDropped = col('Dropped because');
    const rows = results.slice(1);

    // Every fix appears exactly once, grouped by trip in order of first appearance.
    const key = (...cells: unknown[]) => cells.map((c) => (c === null || c === '' ? '<empty>' : String(c))).join('|');
    assert.deepEqual(
      rows.map((r) => key(r[cTrip], r[cTs], r[cLat], r[cLon])).sort(),
      input.map((r) => key(r.trip_id, r.timestamp, r.latitude, r.longitude)).sort(),
    );
    const firstSeen = [...new Map(input.map((r) => [r.trip_id, true])).keys()];
    assert.deepEqual([...new Map(rows.map((r) => [r[cTrip], true])).keys()], firstSeen);

    // A matched fix's distance is the distance between the fix and its match; an unmatched one says why.
    let matched = 0;
    for (const r of rows) {
      if (r[cMLon] !== null) {
        matched++;
        const d = haversineM(Number(r[cLat]), Number(r[cLon]), Number(r[cMLat]), Number(r[cMLon]));
        assert.ok(Math.abs(d - Number(r[cDist])) < 0.5, `distance ${r[cDist]} vs ${d.toFixed(2)} for ${r[cTrip]}`);
      } else {
        const why = r[cStatus] === 'failed' ? r[col('Error')] : r[cDropped];
        assert.ok(String(why ?? '').length > 0, `unmatched fix of ${r[cTrip]} says why`);
      }
    }
    assert.ok(matched > rows.length * 0.8, `most fixes matched (${matched}/${rows.length})`);

    // The Trips sheet agrees with the Results sheet, trip by trip.
    const tripRows = sheets.get('Trips')!;
    const th = tripRows[0] as string[];
    const t = (name: string) => th.indexOf(name);
    assert.equal(tripRows.length - 1, trips.size);
    for (const tr of tripRows.slice(1)) {
      const id = tr[t('Trip id')];
      assert.ok(trips.has(String(id)), `Trips row names its trip (${id})`);
      const mine = rows.filter((r) => r[cTrip] === id);
      assert.equal(tr[t('Status')], mine[0]![cStatus], `status of ${id}`);
      if (tr[t('Status')] === 'done') {
        assert.equal(tr[t('Points')], mine.length, `points of ${id}`);
        assert.equal(tr[t('Points matched')], mine.filter((r) => r[cMLon] !== null).length, `matched points of ${id}`);
        assert.ok(Number(tr[t('Matched distance (m)')]) > 0);
      }
    }

    // Failed trips are listed in the Errors sheet with OSRM's reason, and counted in the summary.
    const failedTrips = tripRows
      .slice(1)
      .filter((r) => r[t('Status')] === 'failed')
      .map((r) => r[t('Trip id')]);
    // (the example drives T013 off the road network and makes T017 jump between far corners)
    assert.deepEqual([...failedTrips].sort(), ['T013', 'T017']);
    const errors = sheets.get('Errors')!.slice(1);
    assert.deepEqual(
      errors.map((r) => r[1]),
      failedTrips,
    );
    assert.deepEqual(errors.map((e) => `${e[1]} ${/No(Segment|Match)/.exec(String(e[2]))?.[0]}`).sort(), [
      'T013 NoSegment',
      'T017 NoMatch',
    ]);
    assert.equal(result.failed, failedTrips.length);
    const summary = new Map(sheets.get('Summary')!.map((r) => [r[0], r[1]]));
    assert.equal(summary.get('Rows'), input.length);
    assert.equal(summary.get('Work items'), trips.size);
  });
});
