import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createPointReader, parseTimestamp } from '../../../batch-jobs/tasks/osrm-match-points';
import type { Row } from '../../../runtime/model';

const columns = { tripId: 'Trip', timestamp: 'Time', latitude: 'Lat', longitude: 'Lon', accuracy: 'Accuracy' };
const read = createPointReader({ columns, defaultRadiusM: 10 });

function row(time: Row[string], lat: Row[string], lon: Row[string], accuracy: Row[string] = null): Row {
  return { Trip: 'T1', Time: time, Lat: lat, Lon: lon, Accuracy: accuracy };
}

describe('parseTimestamp', () => {
  it('reads ISO 8601 in UTC', () => {
    assert.deepEqual(parseTimestamp('2024-05-01T08:30:00Z'), { ok: true, seconds: Date.UTC(2024, 4, 1, 8, 30) / 1000 });
  });

  it('applies a UTC offset', () => {
    // given 10:30 at +02:00, when parsed, then it is 08:30 UTC
    assert.deepEqual(parseTimestamp('2024-05-01T10:30:00+02:00'), parseTimestamp('2024-05-01T08:30:00Z'));
    assert.deepEqual(parseTimestamp('2024-05-01T10:30:00+0200'), parseTimestamp('2024-05-01T08:30:00Z'));
  });

  it('takes a time without offset as UTC and keeps fractions of seconds', () => {
    assert.deepEqual(parseTimestamp('2024-05-01 08:30:00.250'), { ok: true, seconds: Date.UTC(2024, 4, 1, 8, 30) / 1000 + 0.25 });
  });

  it('reads UNIX seconds as a number or as text', () => {
    assert.deepEqual(parseTimestamp(1714552200), { ok: true, seconds: 1714552200 });
    assert.deepEqual(parseTimestamp(' 1714552200 '), { ok: true, seconds: 1714552200 });
  });

  it('rejects milliseconds, impossible dates and words, saying why', () => {
    const ms = parseTimestamp(1714552200000);
    assert.ok(!ms.ok && /milliseconds/.test(ms.reason));
    const feb30 = parseTimestamp('2024-02-30T10:00:00Z');
    assert.ok(!feb30.ok && /not a valid date/.test(feb30.reason));
    const word = parseTimestamp('yesterday');
    assert.ok(!word.ok && /neither ISO 8601/.test(word.reason));
    const empty = parseTimestamp(null);
    assert.ok(!empty.ok && /empty/.test(empty.reason));
  });
});

describe('createPointReader', () => {
  it('reports each invalid row with its row number and keeps the others', () => {
    // given rows with a bad latitude, an out-of-range longitude, a bad timestamp and 0,0
    const rows = [
      row('2024-05-01T08:00:00Z', 52.52, 13.4),
      row('2024-05-01T08:00:05Z', 'abc', 13.4),
      row('2024-05-01T08:00:10Z', 52.52, 181),
      row('soon', 52.52, 13.4),
      row(1714550415, 0, 0),
      row(1714550420, '52.5201', '13.4001'),
    ];
    // when read with source row numbers
    const { points, invalid } = read(rows, [2, 7, 9, 11, 12, 15]);
    // then the invalid ones name their rows and the reason
    assert.deepEqual(
      invalid.map((p) => [p.index, p.row]),
      [
        [1, 7],
        [2, 9],
        [3, 11],
        [4, 12],
      ],
    );
    assert.match(invalid[0].reason, /^row 7: latitude "abc" is not a number$/);
    assert.match(invalid[1].reason, /^row 9: longitude 181 is outside -180..180$/);
    assert.match(invalid[2].reason, /^row 11: timestamp "soon"/);
    assert.match(invalid[3].reason, /^row 12: 0,0 is not a real fix/);
    assert.deepEqual(
      points.map((p) => p.row),
      [2, 15],
    );
  });

  it('sorts fixes by time, keeping input order for equal times', () => {
    const rows = [row(30, 52.52, 13.4), row(10, 52.52, 13.41), row(20, 52.52, 13.42), row(10, 52.52, 13.43)];
    const { points } = read(rows, [2, 3, 4, 5]);
    assert.deepEqual(
      points.map((p) => p.index),
      [1, 3, 2, 0],
    );
  });

  it('uses the accuracy as radius, the default when empty or 0, and rejects a negative one', () => {
    const rows = [row(1, 52.52, 13.4, 7.5), row(2, 52.52, 13.4, ''), row(3, 52.52, 13.4, 0), row(4, 52.52, 13.4, -3)];
    const { points, invalid } = read(rows, [2, 3, 4, 5]);
    assert.deepEqual(
      points.map((p) => p.radiusM),
      [7.5, 10, 10],
    );
    assert.match(invalid[0].reason, /^row 5: accuracy -3 is not a distance in metres$/);
  });

  it('finds columns case- and space-insensitively', () => {
    const { points } = read([{ ' time ': 5, LAT: 52.5, lon: 13.4 }], [2]);
    assert.equal(points.length, 1);
    assert.equal(points[0].time, 5);
  });
});
