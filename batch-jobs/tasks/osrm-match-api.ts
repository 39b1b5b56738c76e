/**
 * OSRM's match service as documented in osrm-backend `docs/http.md` ("Match service", "General
 * options", "Responses"): the request URL the task sends, the response it reads, and how an
 * answer becomes a result, a TransientError (retry) or a PermanentError (the item or window fails).
 *
 *   GET {base}/match/v1/{profile}/{lon},{lat};{lon},{lat}...
 *       ?timestamps=t;t...&radiuses=r;r...&geometries=geojson&overview=false&annotations=false
 *        &gaps=split|ignore&tidy=false
 *
 * Every answer carries `code`: `Ok` with HTTP 200, otherwise an error code with HTTP 400.
 */
import { PermanentError, TransientError, transientKindOf } from '../../runtime/errors';
import { isTransientStatus, parseRetryAfter, type HttpResponse } from '../http/client';

/** A `Waypoint` of the match service's `tracepoints` (null for an outlier). */
export interface OsrmTracepoint {
  /** Snapped location, [longitude, latitude]. */
  location: [number, number];
  /** Metres between the input coordinate and the snapped location. */
  distance?: number;
  name?: string;
  hint?: string;
  /** Index of the `Route` in `matchings` this point belongs to. */
  matchings_index: number;
  /** Index of the waypoint inside that route. */
  waypoint_index: number;
  alternatives_count?: number;
}

export interface OsrmRouteLeg {
  distance: number;
  duration: number;
  weight?: number;
  summary?: string;
}

/** A `Route` of `matchings`. */
export interface OsrmMatching {
  confidence: number;
  distance: number;
  duration: number;
  weight?: number;
  weight_name?: string;
  legs?: OsrmRouteLeg[];
}

export interface OsrmMatchResponse {
  code: 'Ok';
  tracepoints: (OsrmTracepoint | null)[];
  matchings: OsrmMatching[];
}

/** One point of a request. */
export interface MatchPoint {
  lon: number;
  lat: number;
  /** Seconds since the UNIX epoch (sent as whole seconds). */
  time: number;
  radiusM: number;
}

export interface MatchRequestOptions {
  baseUrl: string;
  profile: string;
  /** `gaps=split` when true, `gaps=ignore` otherwise. */
  splitGaps: boolean;
}

/** Error codes of OSRM's HTTP API (general ones and the match service's own). */
export const OSRM_ERROR_CODES: Record<string, string> = {
  NoMatch: 'no matchings found: the trace could not be matched to the road network',
  NoSegment: 'no coordinate of the trace could be snapped to a street segment',
  TooBig: "the request exceeds the server's size limits (osrm-routed --max-matching-size / --max-matching-radius)",
  InvalidUrl: 'the URL is malformed',
  InvalidService: 'the service name is invalid (is the base URL an OSRM server?)',
  InvalidVersion: 'the protocol version is not supported',
  InvalidOptions: 'the options are invalid',
  InvalidQuery: 'the query string is malformed',
  InvalidValue: 'a query parameter has an invalid value',
  NotImplemented: 'map matching is not implemented for the algorithm the server runs',
};

/** Formats a coordinate with 6 decimals (about 0.1 m), without trailing zeros or exponents. */
function coord(n: number): string {
  const s = n.toFixed(6);
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

function radius(m: number): string {
  const s = m.toFixed(1);
  return s.endsWith('.0') ? s.slice(0, -2) : s;
}

/** Base URL without trailing slashes; must be http(s). */
export function normaliseBaseUrl(base: string): string {
  const trimmed = base.trim().replace(/\/+$/, '');
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    throw new PermanentError(`OSRM base URL "${base}" is not a URL (expected e.g. http://osrm.internal:5000)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new PermanentError(`OSRM base URL "${base}" must start with http:// or https://`);
  }
  if (url.search !== '' || url.hash !== '') {
    throw new PermanentError(`OSRM base URL "${base}" must not have a query or fragment`);
  }
  return trimmed;
}

/** The match request URL for points in time order. */
export function buildMatchUrl(points: readonly MatchPoint[], opts: MatchRequestOptions): string {
  const coordinates = points.map((p) => `${coord(p.lon)},${coord(p.lat)}`).join(';');
  const timestamps = points.map((p) => String(Math.floor(p.time))).join(';');
  const radiuses = points.map((p) => radius(p.radiusM)).join(';');
  const query = [
    `timestamps=${timestamps}`,
    `radiuses=${radiuses}`,
    'geometries=geojson',
    'overview=false',
    'annotations=false',
    `gaps=${opts.splitGaps ? 'split' : 'ignore'}`,
    'tidy=false',
  ].join('&');
  return `${opts.baseUrl}/match/v1/${encodeURIComponent(opts.profile)}/${coordinates}?${query}`;
}

function excerpt(text: string): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > 160 ? `${one.slice(0, 157)}...` : one;
}

/** The error an OSRM error code becomes: the code, its meaning and the server's message. */
export function osrmCodeError(code: string, message: string | undefined): PermanentError {
  const meaning = OSRM_ERROR_CODES[code] ?? 'error code not documented by OSRM';
  const detail = message !== undefined && message !== '' ? ` (server: ${message})` : '';
  const hint = code === 'TooBig' ? "; set the task's maxPoints to at most the server's --max-matching-size" : '';
  return new PermanentError(`OSRM ${code}: ${meaning}${detail}${hint}`);
}

function isTracepoint(t: unknown): t is OsrmTracepoint {
  if (t === null || typeof t !== 'object') return false;
  const o = t as Record<string, unknown>;
  return (
    Array.isArray(o.location) &&
    o.location.length === 2 &&
    typeof o.location[0] === 'number' &&
    typeof o.location[1] === 'number' &&
    typeof o.matchings_index === 'number' &&
    typeof o.waypoint_index === 'number'
  );
}

/**
 * Reads an OSRM answer to a match request of `expectedPoints` points.
 * - 200 with `code: Ok` and well-formed tracepoints/matchings: the response.
 * - a JSON body with another `code` (OSRM answers 400): PermanentError naming the code.
 * - 408, 425, 429, 5xx: TransientError (with Retry-After); other statuses: PermanentError.
 * - an unreadable body on 200: TransientError (a truncated answer may come whole next time).
 */
export function readMatchResponse(res: HttpResponse, expectedPoints: number): OsrmMatchResponse {
  const text = res.body;
  if (isTransientStatus(res.status)) {
    throw new TransientError(
      `OSRM answered HTTP ${res.status}${text ? `: ${excerpt(text)}` : ''}`,
      parseRetryAfter(res.headers['retry-after']),
      transientKindOf(res.status),
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const obj = json !== null && typeof json === 'object' ? (json as Record<string, unknown>) : undefined;
  const code = typeof obj?.code === 'string' ? obj.code : undefined;
  if (code !== undefined && code !== 'Ok') {
    throw osrmCodeError(code, typeof obj?.message === 'string' ? obj.message : undefined);
  }
  if (res.status !== 200) {
    throw new PermanentError(
      `OSRM answered HTTP ${res.status} without an OSRM error code${text ? `: ${excerpt(text)}` : ''} (is the base URL an OSRM server?)`,
    );
  }
  if (obj === undefined || code !== 'Ok') {
    throw new TransientError(`OSRM answered HTTP 200 with a body that is not an OSRM response: ${excerpt(text) || '(empty)'}`);
  }
  const tracepoints = obj.tracepoints;
  const matchings = obj.matchings;
  if (!Array.isArray(tracepoints) || !Array.isArray(matchings)) {
    throw new TransientError('OSRM answered Ok without tracepoints and matchings');
  }
  if (tracepoints.length !== expectedPoints) {
    throw new PermanentError(`OSRM answered ${tracepoints.length} tracepoints for ${expectedPoints} coordinates (tidy must be false)`);
  }
  for (const t of tracepoints) {
    if (t !== null && (!isTracepoint(t) || t.matchings_index < 0 || t.matchings_index >= matchings.length)) {
      throw new TransientError(`OSRM answered a malformed tracepoint: ${excerpt(JSON.stringify(t))}`);
    }
  }
  for (const m of matchings) {
    if (m === null || typeof m !== 'object' || typeof (m as OsrmMatching).distance !== 'number') {
      throw new TransientError(`OSRM answered a malformed matching: ${excerpt(JSON.stringify(m))}`);
    }
  }
  return { code: 'Ok', tracepoints: tracepoints as (OsrmTracepoint | null)[], matchings: matchings as OsrmMatching[] };
}

const EARTH_RADIUS_M = 6_371_008.8;

/** Great-circle distance in metres (haversine, mean Earth radius). */
export function haversineM(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(a)));
}
