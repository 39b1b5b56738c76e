/**
 * A small stand-in for osrm-routed: answers OSRM's match service,
 * `GET /match/v1/{profile}/{coordinates}[.json]?...`, in OSRM's response format, on the road
 * network of road-network.ts (a grid of streets around Berlin-Mitte). For the map-match demo
 * and the task's tests; the task talks to it exactly as to a real OSRM server.
 *
 * Faithful to osrm-backend's docs/http.md and its match plugin in what a client sees:
 * - parameters: timestamps, radiuses, geometries, overview, annotations, steps, gaps, tidy,
 *   waypoints, bearings, hints, generate_hints, snapping, skip_waypoints; coordinates as
 *   `lon,lat;...`, `polyline(...)` or `polyline6(...)`;
 * - errors (HTTP 400, `{code, message}`): InvalidUrl (malformed path or coordinates),
 *   InvalidService, InvalidVersion, InvalidQuery (unknown option or malformed value),
 *   InvalidOptions (element counts that do not match the coordinates, fewer than 2
 *   coordinates), TooBig (more coordinates than --max-matching-size), InvalidValue
 *   (coordinates out of range, decreasing timestamps), NoSegment (no coordinate near a road),
 *   NoMatch (no sub-trace of at least two fixes);
 * - matching: each fix is snapped to the nearest street within 3 x its radius (OSRM's search
 *   area; default radius 5 m); fixes with no street in reach are outliers (null tracepoints).
 *   The trace is split into sub-traces (`matchings`) at timestamp gaps over 60 s (gaps=split)
 *   and at improbable transitions (a route much longer than the straight line, or faster than
 *   70 m/s); sub-traces of one fix are dropped. Each matching has legs (route distance and
 *   duration at 40 km/h between consecutive matched fixes), a confidence from how well the
 *   route length agrees with the trace and how far fixes are from their streets.
 *
 * It is not an HMM map matcher; it picks the nearest street, which is enough on a grid.
 *
 * Standalone: `npx tsx local/sources/osrm-test-server.ts [--port 5000] [--max-matching-size 100]`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { haversineM } from '../../batch-jobs/tasks/osrm-match-api';
import { flagValue, isMain } from '../../examples/cli';
import {
  lineCoord,
  phantomXY,
  route,
  snap,
  SPEED_MPS,
  streetName,
  toLonLat,
  toXY,
  type Phantom,
  type XY,
} from '../../examples/map-match/road-network';

/** Injected fault for request number `n` (1-based): an HTTP answer, a reset connection, or no answer. */
export type OsrmTestFault = { status: number; body?: string; headers?: Record<string, string> } | 'reset' | 'hang';

export interface OsrmTestServerOptions {
  /** @default 0 (a free port) */
  port?: number;
  /** osrm-routed --max-matching-size: more coordinates is TooBig. @default 100 */
  maxMatchingSize?: number;
  /** Fault injection for tests: called per request with its 1-based number and path. */
  fault?: (n: number, url: string) => OsrmTestFault | undefined;
}

export interface OsrmTestServer {
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  close(): Promise<void>;
  /** Requests received so far. */
  requests(): number;
}

/** OSRM's default GPS precision (standard deviation, metres) and search-radius multiplier. */
const DEFAULT_RADIUS_M = 5;
const RADIUS_MULTIPLIER = 3;
const MAX_GAP_S = 60;
const MAX_SPEED_MPS = 70;

class OsrmError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface MatchQuery {
  coordinates: [number, number][];
  timestamps?: number[];
  radiuses?: (number | null)[];
  geometries: 'polyline' | 'polyline6' | 'geojson';
  overview: 'simplified' | 'full' | 'false';
  steps: boolean;
  gaps: 'split' | 'ignore';
  tidy: boolean;
  waypoints?: number[];
  counts: Record<string, number>;
}

const UINT = /^\d+$/;
const DOUBLE = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

function decodePolyline(text: string, precision: number): [number, number][] | undefined {
  const factor = 10 ** precision;
  const out: [number, number][] = [];
  let index = 0;
  let lat = 0;
  let lon = 0;
  const next = (): number | undefined => {
    let result = 0;
    let shift = 0;
    let b: number;
    do {
      if (index >= text.length) return undefined;
      b = text.charCodeAt(index++) - 63;
      if (b < 0 || b > 63) return undefined;
      result |= (b & 0x1f) << shift;
      shift += 5;
    } while (b >= 0x20);
    return result & 1 ? ~(result >> 1) : result >> 1;
  };
  while (index < text.length) {
    const dlat = next();
    const dlon = next();
    if (dlat === undefined || dlon === undefined) return undefined;
    lat += dlat;
    lon += dlon;
    out.push([lon / factor, lat / factor]);
  }
  return out;
}

function encodePolyline(coords: [number, number][], precision: number): string {
  const factor = 10 ** precision;
  let out = '';
  let plat = 0;
  let plon = 0;
  const put = (v: number) => {
    let n = v < 0 ? ~(v << 1) : v << 1;
    while (n >= 0x20) {
      out += String.fromCharCode((0x20 | (n & 0x1f)) + 63);
      n >>= 5;
    }
    out += String.fromCharCode(n + 63);
  };
  for (const [lon, lat] of coords) {
    const ilat = Math.round(lat * factor);
    const ilon = Math.round(lon * factor);
    put(ilat - plat);
    put(ilon - plon);
    plat = ilat;
    plon = ilon;
  }
  return out;
}

function parseCoordinates(text: string, offset: number): [number, number][] {
  const poly = /^polyline(6)?\((.+)\)$/.exec(text);
  if (poly) {
    const coords = decodePolyline(decodeURIComponent(poly[2]), poly[1] ? 6 : 5);
    if (coords === undefined || coords.length === 0) {
      throw new OsrmError('InvalidUrl', `URL string malformed close to position ${offset}`);
    }
    return coords;
  }
  const out: [number, number][] = [];
  let pos = offset;
  for (const pair of text.split(';')) {
    const parts = pair.split(',');
    if (parts.length !== 2 || !DOUBLE.test(parts[0]) || !DOUBLE.test(parts[1])) {
      throw new OsrmError('InvalidUrl', `URL string malformed close to position ${pos}`);
    }
    out.push([Number(parts[0]), Number(parts[1])]);
    pos += pair.length + 1;
  }
  return out;
}

function parseQuery(search: string, coordinates: [number, number][], offset: number): MatchQuery {
  const q: MatchQuery = {
    coordinates,
    geometries: 'polyline',
    overview: 'simplified',
    steps: false,
    gaps: 'split',
    tidy: false,
    counts: {},
  };
  if (search === '') return q;
  let pos = offset;
  const bad = (): never => {
    throw new OsrmError('InvalidQuery', `Query string malformed close to position ${pos}`);
  };
  const list = (v: string, element: (e: string) => boolean): string[] => {
    const items = v.split(';');
    if (!items.every(element)) bad();
    return items;
  };
  const bool = (v: string) => (v === 'true' || v === 'false' ? v === 'true' : bad());
  for (const part of search.split('&')) {
    const eq = part.indexOf('=');
    if (eq <= 0) bad();
    const key = part.slice(0, eq);
    const value = decodeURIComponent(part.slice(eq + 1));
    switch (key) {
      case 'timestamps':
        q.timestamps = list(value, (e) => UINT.test(e)).map(Number);
        q.counts.timestamps = q.timestamps.length;
        break;
      case 'radiuses':
        q.radiuses = list(value, (e) => e === '' || e === 'unlimited' || (DOUBLE.test(e) && Number(e) >= 0)).map((e) =>
          e === '' ? null : e === 'unlimited' ? Infinity : Number(e),
        );
        q.counts.radiuses = q.radiuses.length;
        break;
      case 'bearings':
        q.counts.bearings = list(value, (e) => e === '' || /^\d{1,3},\d{1,3}$/.test(e)).length;
        break;
      case 'hints':
        q.counts.hints = list(value, (e) => /^[A-Za-z0-9+/=_-]*$/.test(e)).length;
        break;
      case 'approaches':
        q.counts.approaches = list(value, (e) => e === '' || e === 'curb' || e === 'unrestricted').length;
        break;
      case 'waypoints':
        q.waypoints = list(value, (e) => UINT.test(e)).map(Number);
        break;
      case 'geometries':
        if (value !== 'polyline' && value !== 'polyline6' && value !== 'geojson') bad();
        q.geometries = value as MatchQuery['geometries'];
        break;
      case 'overview':
        if (value !== 'simplified' && value !== 'full' && value !== 'false') bad();
        q.overview = value as MatchQuery['overview'];
        break;
      case 'annotations':
        if (
          !/^(true|false|(nodes|distance|duration|datasources|weight|speed)(,(nodes|distance|duration|datasources|weight|speed))*)$/.test(
            value,
          )
        )
          bad();
        break;
      case 'steps':
        q.steps = bool(value);
        break;
      case 'gaps':
        if (value !== 'split' && value !== 'ignore') bad();
        q.gaps = value as MatchQuery['gaps'];
        break;
      case 'tidy':
        q.tidy = bool(value);
        break;
      case 'generate_hints':
      case 'skip_waypoints':
        bool(value);
        break;
      case 'snapping':
        if (value !== 'default' && value !== 'any') bad();
        break;
      case 'exclude':
        break;
      default:
        bad();
    }
    pos += part.length + 1;
  }
  return q;
}

function validateOptions(q: MatchQuery): void {
  const n = q.coordinates.length;
  for (const [name, count] of Object.entries(q.counts)) {
    if (count !== n) {
      throw new OsrmError('InvalidOptions', `Number of elements in ${name} size ${count} does not match coordinate size ${n}`);
    }
  }
  if (n < 2) throw new OsrmError('InvalidOptions', 'Number of coordinates needs to be at least two.');
  if (q.waypoints?.some((w) => w >= n)) {
    throw new OsrmError('InvalidOptions', 'Waypoints indices must be less than the number of coordinates.');
  }
}

function round6(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}

function hint(p: Phantom): string {
  return Buffer.from(`${p.kind}:${p.line}:${p.along.toFixed(1)}`).toString('base64');
}

/** The match service on the example network: the JSON body of an `Ok` answer. */
export function matchTrace(q: MatchQuery, maxMatchingSize: number): Record<string, unknown> {
  validateOptions(q);
  const n = q.coordinates.length;
  if (maxMatchingSize > 0 && n > maxMatchingSize) throw new OsrmError('TooBig', 'Too many trace coordinates');
  if (q.coordinates.some(([lon, lat]) => !(lon >= -180 && lon <= 180 && lat >= -90 && lat <= 90))) {
    throw new OsrmError('InvalidValue', 'Invalid coordinate value.');
  }
  const ts = q.timestamps;
  if (ts?.some((t, k) => k > 0 && t < ts[k - 1])) {
    throw new OsrmError('InvalidValue', 'Timestamps need to be monotonically increasing.');
  }
  // Candidates: the nearest street within 3 x radius.
  const fixes = q.coordinates.map(([lon, lat]) => toXY(lat, lon));
  const snapped: (Phantom | undefined)[] = fixes.map((xy, k) => {
    const r = q.radiuses?.[k] ?? DEFAULT_RADIUS_M;
    const s = snap(xy);
    return s.distanceM <= r * RADIUS_MULTIPLIER ? s.phantom : undefined;
  });
  if (snapped.every((s) => s === undefined)) {
    throw new OsrmError('NoSegment', 'Could not find a matching segment for any coordinate.');
  }

  // Sub-traces: split at large time gaps and improbable transitions. A fix whose transitions
  // are improbable while its neighbours connect well is an outlier: left out (null), no split.
  const gapBetween = (a: number, b: number) => q.gaps === 'split' && ts !== undefined && ts[b] - ts[a] > MAX_GAP_S;
  const probable = (a: number, b: number) => {
    const routeM = route(snapped[a]!, snapped[b]!).distanceM;
    const straightM = Math.hypot(fixes[b].x - fixes[a].x, fixes[b].y - fixes[a].y);
    const dt = ts ? ts[b] - ts[a] : undefined;
    return routeM <= 3 * straightM + 250 && !(dt !== undefined && dt > 0 && routeM / dt > MAX_SPEED_MPS);
  };
  const traces: number[][] = [];
  let current: number[] = [];
  let last: number | undefined;
  for (let k = 0; k < n; k++) {
    if (snapped[k] === undefined) continue;
    if (last !== undefined) {
      if (gapBetween(last, k)) {
        traces.push(current);
        current = [];
      } else if (!probable(last, k)) {
        const before = current.length >= 2 ? current[current.length - 2] : undefined;
        if (before !== undefined && !gapBetween(before, k) && probable(before, k)) {
          snapped[last] = undefined; // the previous fix was the outlier
          current.pop();
          current.push(k);
          last = k;
          continue;
        }
        let next = k + 1;
        while (next < n && snapped[next] === undefined) next++;
        if (next < n && !gapBetween(last, next) && probable(last, next)) {
          snapped[k] = undefined; // an outlier
          continue;
        }
        traces.push(current);
        current = [];
      }
    }
    current.push(k);
    last = k;
  }
  traces.push(current);
  const kept = traces.filter((t) => t.length >= 2);
  if (kept.length === 0) throw new OsrmError('NoMatch', 'Could not match the trace.');

  const tracepoints: (Record<string, unknown> | null)[] = new Array(n).fill(null);
  const matchings = kept.map((trace, m) => {
    const legs: Record<string, unknown>[] = [];
    const path: XY[] = [phantomXY(snapped[trace[0]]!)];
    let routeTotal = 0;
    let straightTotal = 0;
    let offSum = 0;
    let radiusSum = 0;
    trace.forEach((k, w) => {
      const ph = snapped[k]!;
      const loc = toLonLat(phantomXY(ph));
      const location: [number, number] = [round6(loc[0]), round6(loc[1])];
      const off = haversineM(q.coordinates[k][1], q.coordinates[k][0], location[1], location[0]);
      offSum += off;
      radiusSum += q.radiuses?.[k] ?? DEFAULT_RADIUS_M;
      tracepoints[k] = {
        alternatives_count: 0,
        waypoint_index: w,
        matchings_index: m,
        hint: hint(ph),
        distance: round6(off),
        name: streetName(ph),
        location,
      };
      if (w > 0) {
        const prev = trace[w - 1];
        const r = route(snapped[prev]!, ph);
        routeTotal += r.distanceM;
        straightTotal += Math.hypot(fixes[k].x - fixes[prev].x, fixes[k].y - fixes[prev].y);
        path.push(...r.path.slice(1));
        const duration = r.distanceM / SPEED_MPS;
        legs.push({
          steps: [],
          summary: '',
          weight: round6(duration),
          duration: round6(duration),
          distance: round6(r.distanceM),
        });
      }
    });
    const agreement =
      routeTotal === 0 && straightTotal === 0 ? 1 : Math.min(routeTotal, straightTotal) / Math.max(routeTotal, straightTotal);
    const closeness = Math.exp(-offSum / trace.length / Math.max(1, (radiusSum / trace.length) * 2));
    const confidence = round6(Math.max(0, Math.min(1, agreement * (0.5 + 0.5 * closeness))));
    const duration = routeTotal / SPEED_MPS;
    const matching: Record<string, unknown> = {
      confidence,
      legs,
      weight_name: 'routability',
      weight: round6(duration),
      duration: round6(duration),
      distance: round6(routeTotal),
    };
    if (q.overview !== 'false') {
      const coords = path.map((p) => toLonLat(p)).map(([lon, lat]) => [round6(lon), round6(lat)] as [number, number]);
      matching.geometry =
        q.geometries === 'geojson'
          ? { type: 'LineString', coordinates: coords }
          : encodePolyline(coords, q.geometries === 'polyline6' ? 6 : 5);
    }
    return matching;
  });
  return { code: 'Ok', matchings, tracepoints };
}

/** Answers one request path+query (without the origin): [HTTP status, JSON body]. */
export function answer(pathAndQuery: string, maxMatchingSize: number): [number, Record<string, unknown>] {
  try {
    const qm = pathAndQuery.indexOf('?');
    const path = qm < 0 ? pathAndQuery : pathAndQuery.slice(0, qm);
    const search = qm < 0 ? '' : pathAndQuery.slice(qm + 1);
    const m = /^\/([^/]+)\/([^/]+)\/([^/]+)\/([^/]+?)(\.json)?$/.exec(path);
    if (!m) throw new OsrmError('InvalidUrl', `URL string malformed close to position ${Math.min(path.length, 1)}`);
    const [, service, version, , coordText] = m;
    if (!['route', 'nearest', 'table', 'match', 'trip', 'tile'].includes(service)) {
      throw new OsrmError('InvalidService', `Service ${service} not found!`);
    }
    if (version !== 'v1') throw new OsrmError('InvalidVersion', `Service ${service} not found!`);
    if (service !== 'match') {
      throw new OsrmError('NotImplemented', `The test server implements only the match service, not ${service}.`);
    }
    const coordOffset = path.length - coordText.length - (m[5]?.length ?? 0);
    const coordinates = parseCoordinates(decodeURIComponent(coordText), coordOffset);
    const query = parseQuery(search, coordinates, path.length + 1);
    return [200, matchTrace(query, maxMatchingSize)];
  } catch (err) {
    if (err instanceof OsrmError) return [400, { code: err.code, message: err.message }];
    if (err instanceof URIError) return [400, { code: 'InvalidUrl', message: 'URL string malformed close to position 0' }];
    throw err;
  }
}

export async function startOsrmTestServer(opts: OsrmTestServerOptions = {}): Promise<OsrmTestServer> {
  const maxMatchingSize = opts.maxMatchingSize ?? 100;
  let count = 0;
  const sockets = new Set<Socket>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    count++;
    const url = req.url ?? '/';
    const fault = opts.fault?.(count, url);
    if (fault === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault === 'hang') return;
    if (fault !== undefined) {
      res.writeHead(fault.status, { 'content-type': 'text/plain', ...fault.headers });
      res.end(fault.body ?? '');
      return;
    }
    if (req.method !== 'GET') {
      res.writeHead(400, { 'content-type': 'application/json; charset=UTF-8' });
      res.end(JSON.stringify({ code: 'InvalidUrl', message: `${String(req.method)} is not supported` }));
      return;
    }
    const [status, body] = answer(url, maxMatchingSize);
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
    res.end(JSON.stringify(body));
  });
  server.keepAliveTimeout = 5_000;
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => count,
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const s of sockets) s.destroy();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

if (isMain(import.meta.url)) {
  const args = process.argv.slice(2);
  const port = Number(flagValue(args, '--port', '5000'));
  const maxMatchingSize = Number(flagValue(args, '--max-matching-size', '100'));
  const srv = await startOsrmTestServer({ port, maxMatchingSize });
  console.log(`OSRM test server on ${srv.url} (match service, --max-matching-size ${maxMatchingSize}); Ctrl-C to stop`);
  const sample = [0, 1, 2]
    .map((k) => toLonLat({ x: lineCoord(5) + k * 150, y: lineCoord(7) + 3 }))
    .map(([lon, lat]) => `${lon.toFixed(6)},${lat.toFixed(6)}`)
    .join(';');
  console.log(`try: curl '${srv.url}/match/v1/driving/${sample}?timestamps=0;15;30&overview=false'`);
  const stop = () => {
    void srv.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
