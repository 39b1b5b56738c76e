/**
 * The small road network of the map-match example: a square grid of two-way streets around
 * Berlin-Mitte, 16 streets east-west ("Street 1".."Street 16", south to north) and 16
 * north-south ("Avenue A".."Avenue P", west to east), 200 m apart: a 3 km x 3 km town.
 *
 * Used by the OSRM test server (snapping and routing) and by the GPS data generator (driving).
 * Positions are handled in metres on a local equirectangular projection around the centre,
 * which is exact to well under a metre over 3 km; distances reported to users are haversine.
 */

export const CENTER = { lat: 52.52, lon: 13.405 } as const;
/** Streets in each direction. */
export const STREETS = 16;
/** Distance between neighbouring parallel streets, metres. */
export const SPACING_M = 200;
/** Speed used for route durations, m/s (40 km/h). */
export const SPEED_MPS = 40 / 3.6;

const EARTH_RADIUS_M = 6_371_008.8;
const M_PER_DEG_LAT = (EARTH_RADIUS_M * Math.PI) / 180;
const M_PER_DEG_LON = M_PER_DEG_LAT * Math.cos((CENTER.lat * Math.PI) / 180);

export interface XY {
  x: number;
  y: number;
}

export function toXY(lat: number, lon: number): XY {
  return { x: (lon - CENTER.lon) * M_PER_DEG_LON, y: (lat - CENTER.lat) * M_PER_DEG_LAT };
}

export function toLonLat(p: XY): [number, number] {
  return [CENTER.lon + p.x / M_PER_DEG_LON, CENTER.lat + p.y / M_PER_DEG_LAT];
}

/** Coordinate (x of an avenue, y of a street) of the k-th street line, metres. */
export function lineCoord(k: number): number {
  return (k - (STREETS - 1) / 2) * SPACING_M;
}

const MIN = lineCoord(0);
const MAX = lineCoord(STREETS - 1);

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

/** A location on the network: on street `line` ('h': east-west, 'v': north-south) at `along` metres. */
export interface Phantom {
  kind: 'h' | 'v';
  /** Street index 0..STREETS-1. */
  line: number;
  /** x for an east-west street, y for a north-south one. */
  along: number;
}

export function phantomXY(p: Phantom): XY {
  return p.kind === 'h' ? { x: p.along, y: lineCoord(p.line) } : { x: lineCoord(p.line), y: p.along };
}

export function streetName(p: Phantom): string {
  return p.kind === 'h' ? `Street ${p.line + 1}` : `Avenue ${String.fromCharCode(65 + p.line)}`;
}

/** The nearest location on the network and its distance, metres (projection distance). */
export function snap(q: XY): { phantom: Phantom; distanceM: number } {
  const row = clamp(Math.round((q.y - MIN) / SPACING_M), 0, STREETS - 1);
  const hx = clamp(q.x, MIN, MAX);
  const dh = Math.hypot(q.x - hx, q.y - lineCoord(row));
  const col = clamp(Math.round((q.x - MIN) / SPACING_M), 0, STREETS - 1);
  const vy = clamp(q.y, MIN, MAX);
  const dv = Math.hypot(q.x - lineCoord(col), q.y - vy);
  return dh <= dv
    ? { phantom: { kind: 'h', line: row, along: hx }, distanceM: dh }
    : { phantom: { kind: 'v', line: col, along: vy }, distanceM: dv };
}

/** Grid node (street row i, avenue column j). */
interface GridNode {
  i: number;
  j: number;
}

/** The two intersections at the ends of the block a phantom lies on, with the distance to each. */
function blockEnds(p: Phantom): { node: GridNode; d: number }[] {
  const k = clamp(Math.floor((p.along - MIN) / SPACING_M), 0, STREETS - 2);
  const a = lineCoord(k);
  const b = lineCoord(k + 1);
  const ends = [
    { k, d: Math.abs(p.along - a) },
    { k: k + 1, d: Math.abs(b - p.along) },
  ];
  return ends.map((e) => ({ node: p.kind === 'h' ? { i: p.line, j: e.k } : { i: e.k, j: p.line }, d: e.d }));
}

function nodeXY(n: GridNode): XY {
  return { x: lineCoord(n.j), y: lineCoord(n.i) };
}

function sameBlock(a: Phantom, b: Phantom): boolean {
  if (a.kind !== b.kind || a.line !== b.line) return false;
  const ka = clamp(Math.floor((a.along - MIN) / SPACING_M), 0, STREETS - 2);
  const kb = clamp(Math.floor((b.along - MIN) / SPACING_M), 0, STREETS - 2);
  return ka === kb;
}

/**
 * Shortest route between two network locations, metres, with its geometry (x/y). Every street
 * is two-way and the grid is complete, so between intersections the shortest route is the
 * Manhattan distance; the route goes along the first street, then along the second.
 */
export function route(a: Phantom, b: Phantom): { distanceM: number; path: XY[] } {
  if (sameBlock(a, b)) {
    return { distanceM: Math.abs(a.along - b.along), path: [phantomXY(a), phantomXY(b)] };
  }
  let best: { distanceM: number; path: XY[] } | undefined;
  for (const ea of blockEnds(a)) {
    for (const eb of blockEnds(b)) {
      const between = (Math.abs(ea.node.i - eb.node.i) + Math.abs(ea.node.j - eb.node.j)) * SPACING_M;
      const d = ea.d + between + eb.d;
      if (best === undefined || d < best.distanceM) {
        const corner = nodeXY({ i: ea.node.i, j: eb.node.j });
        best = { distanceM: d, path: [phantomXY(a), nodeXY(ea.node), corner, nodeXY(eb.node), phantomXY(b)] };
      }
    }
  }
  const path = best!.path.filter((p, k, all) => k === 0 || p.x !== all[k - 1].x || p.y !== all[k - 1].y);
  return { distanceM: best!.distanceM, path };
}
