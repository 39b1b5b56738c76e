/**
 * Writes examples/map-match/gps-points.csv: GPS fixes of 20 trips driven on the example road
 * network (road-network.ts), one row per fix, deterministic (seeded).
 *
 * What the data set shows:
 * - trips of 30-300 fixes, sampled every 1-6 s, with GPS noise and a few outliers; T007 has
 *   250 fixes (three windows at maxPoints 100), others pass 100 too;
 * - rows of all trips interleaved and shuffled (the task sorts each trip by time);
 * - timestamps as ISO 8601 (UTC and +02:00) or UNIX seconds, per trip;
 * - T004 parks for 3 minutes (gaps=split gives two matchings);
 * - T013 is driven 6 km east of the network (OSRM: NoSegment, the trip fails);
 * - T017 jumps between three far corners every second (OSRM: NoMatch, the trip fails);
 * - six invalid rows (bad latitude, out-of-range latitude, bad timestamps, empty longitude,
 *   0,0), reported on their rows.
 *
 * Usage: npx tsx examples/map-match/make-gps-points.ts [--out FILE]
 */
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { flagValue, isMain } from '../cli';
import { lineCoord, SPACING_M, STREETS, toLonLat, type XY } from './road-network';
import { mulberry32 } from '../seeded-random';

export const GPS_COLUMNS = ['trip_id', 'timestamp', 'latitude', 'longitude', 'accuracy_m'] as const;

function gaussian(rand: () => number): number {
  const u = Math.max(rand(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

export interface Fix {
  /** UNIX seconds. */
  time: number;
  lat: number;
  lon: number;
  /** Reported accuracy, metres. */
  accuracyM: number;
  /** The true position on the network, before noise. */
  truth: XY;
}

export interface DriveOptions {
  fixes: number;
  startTime: number;
  /** Seconds between fixes: uniform in [min, max]. @default [1, 6] */
  intervalS?: [number, number];
  /** Speed, m/s. @default 8..14 by trip */
  speedMps?: number;
  /** Reported accuracy range, metres. @default [4, 12] */
  accuracyM?: [number, number];
  /** Share of fixes thrown 60-90 m off the road. @default 0.015 */
  outlierRate?: number;
  /** Insert a stop of this many seconds half way. */
  pauseS?: number;
  /** Shift every fix by this much (to drive off the network). */
  offset?: XY;
}

const DIRS: XY[] = [
  { x: 1, y: 0 },
  { x: -1, y: 0 },
  { x: 0, y: 1 },
  { x: 0, y: -1 },
];

/** Drives a random route along the grid (no U-turns, staying inside) and samples noisy fixes. */
export function drive(rand: () => number, opts: DriveOptions): Fix[] {
  const [iMin, iMax] = opts.intervalS ?? [1, 6];
  const [aMin, aMax] = opts.accuracyM ?? [4, 12];
  const speed = opts.speedMps ?? 8 + rand() * 6;
  const outlierRate = opts.outlierRate ?? 0.015;
  // Start at an inner intersection.
  let node = { i: 2 + Math.floor(rand() * (STREETS - 4)), j: 2 + Math.floor(rand() * (STREETS - 4)) };
  let dir = DIRS[Math.floor(rand() * 4)];
  let along = 0; // metres from `node` towards the next one
  const pos = (): XY => ({ x: lineCoord(node.j) + dir.x * along, y: lineCoord(node.i) + dir.y * along });
  const fixes: Fix[] = [];
  let time = opts.startTime;
  for (let k = 0; k < opts.fixes; k++) {
    if (k > 0) {
      const dt = iMin + Math.round(rand() * (iMax - iMin));
      time += dt;
      if (opts.pauseS !== undefined && k === Math.floor(opts.fixes / 2)) time += opts.pauseS;
      let remaining = speed * dt;
      while (remaining > 0) {
        const step = Math.min(remaining, SPACING_M - along);
        along += step;
        remaining -= step;
        if (along >= SPACING_M - 1e-9) {
          node = { i: node.i + dir.y, j: node.j + dir.x };
          along = 0;
          const options = DIRS.filter((d) => {
            if (d.x === -dir.x && d.y === -dir.y) return false;
            const ni = node.i + d.y;
            const nj = node.j + d.x;
            return ni >= 0 && ni < STREETS && nj >= 0 && nj < STREETS;
          });
          // Mostly straight on, sometimes a turn.
          const straight = options.find((d) => d.x === dir.x && d.y === dir.y);
          dir = straight !== undefined && rand() < 0.6 ? straight : options[Math.floor(rand() * options.length)];
        }
      }
    }
    const truth = pos();
    const accuracyM = Math.round(aMin + rand() * (aMax - aMin));
    const sigma = accuracyM / 2;
    let nx = Math.max(-2.5 * accuracyM, Math.min(2.5 * accuracyM, gaussian(rand) * sigma));
    let ny = Math.max(-2.5 * accuracyM, Math.min(2.5 * accuracyM, gaussian(rand) * sigma));
    if (rand() < outlierRate) {
      // Thrown off sideways, away from the street it is on.
      const off = (60 + rand() * 30) * (rand() < 0.5 ? -1 : 1);
      nx = dir.y !== 0 ? off : nx;
      ny = dir.x !== 0 ? off : ny;
    }
    const [lon, lat] = toLonLat({
      x: truth.x + nx + (opts.offset?.x ?? 0),
      y: truth.y + ny + (opts.offset?.y ?? 0),
    });
    fixes.push({ time, lat, lon, accuracyM, truth });
  }
  return fixes;
}

type CsvRow = [string, string, string, string, string];

function isoUtc(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
}

function isoBerlin(seconds: number): string {
  return `${new Date((seconds + 7200) * 1000).toISOString().slice(0, 19)}+02:00`;
}

/** All rows of the example data set, shuffled, without the header. */
export function generateGpsRows(seed = 20240501): CsvRow[] {
  const rand = mulberry32(seed);
  const rows: CsvRow[] = [];
  const base = Date.UTC(2024, 4, 1, 6, 0, 0) / 1000;
  const sizes = [48, 120, 75, 160, 95, 210, 250, 36, 140, 60, 180, 90, 40, 300, 110, 55, 30, 130, 70, 105];
  const invalid: Record<string, (r: CsvRow) => void> = {
    T002: (r) => (r[2] = 'abc'),
    T005: (r) => (r[2] = '95.300000'),
    T009: (r) => (r[1] = 'yesterday'),
    T011: (r) => (r[3] = ''),
    T015: (r) => (r[1] = '2024-02-30T10:00:00Z'),
    T019: (r) => {
      r[2] = '0';
      r[3] = '0';
    },
  };
  sizes.forEach((n, t) => {
    const id = `T${String(t + 1).padStart(3, '0')}`;
    const startTime = base + t * 420 + Math.floor(rand() * 120);
    let fixes: Fix[];
    if (id === 'T017') {
      // Jumps between three far corners every second: no two consecutive fixes connect.
      const corners = [
        { x: lineCoord(1), y: lineCoord(1) },
        { x: lineCoord(STREETS - 2), y: lineCoord(STREETS - 2) },
        { x: lineCoord(1), y: lineCoord(STREETS - 2) },
      ];
      fixes = Array.from({ length: n }, (_, k) => {
        const corner = corners[k % 3];
        const [lon, lat] = toLonLat({ x: corner.x + (rand() - 0.5) * 4, y: corner.y + (rand() - 0.5) * 4 });
        return { time: startTime + k, lat, lon, accuracyM: 5, truth: corner };
      });
    } else {
      fixes = drive(rand, {
        fixes: n,
        startTime,
        pauseS: id === 'T004' ? 180 : undefined,
        offset: id === 'T013' ? { x: 6000, y: 0 } : undefined,
      });
    }
    const format = t % 3 === 0 ? isoUtc : t % 3 === 1 ? (s: number) => String(s) : isoBerlin;
    fixes.forEach((f, k) => {
      const row: CsvRow = [id, format(f.time), f.lat.toFixed(6), f.lon.toFixed(6), rand() < 0.05 ? '' : String(f.accuracyM)];
      if (k === Math.floor(n / 3) && invalid[id]) invalid[id](row);
      rows.push(row);
    });
  });
  // Interleave trips and lose the time order: a Fisher-Yates shuffle.
  for (let k = rows.length - 1; k > 0; k--) {
    const j = Math.floor(rand() * (k + 1));
    [rows[k], rows[j]] = [rows[j], rows[k]];
  }
  return rows;
}

export function toCsv(rows: readonly CsvRow[]): string {
  const quote = (v: string) => (/[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  return `${[GPS_COLUMNS.join(','), ...rows.map((r) => r.map(quote).join(','))].join('\n')}\n`;
}

if (isMain(import.meta.url)) {
  const out = flagValue(process.argv.slice(2), '--out', join(dirname(fileURLToPath(import.meta.url)), 'gps-points.csv'));
  const rows = generateGpsRows();
  writeFileSync(out, toCsv(rows));
  console.log(`wrote ${rows.length} rows of ${new Set(rows.map((r) => r[0])).size} trips to ${out}`);
}
