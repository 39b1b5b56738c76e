import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { S3ObjectStore } from '../../../runtime/adapters/s3-object-store';
import { SesMailer } from '../../../runtime/adapters/ses-mailer';
import { encodeS3EventKey, type S3EventRecordLike } from '../../../local/emulators';
import { startEmulatorFixture, type EmulatorFixture } from './fixtures';

const MiB = 1024 * 1024;

function portOf(url: string): number {
  return Number(new URL(url).port);
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('local emulators', () => {
  let fx: EmulatorFixture;
  let store: S3ObjectStore;
  const records: S3EventRecordLike[] = [];
  let waiter: { count: number; resolve: () => void } | undefined;

  /** Resolves once `count` records have arrived (notifications come after the upload returns). */
  function recordsArrived(count: number): Promise<void> {
    if (records.length >= count) return Promise.resolve();
    return new Promise((resolve) => {
      waiter = { count, resolve };
    });
  }

  before(async () => {
    fx = await startEmulatorFixture();
    store = new S3ObjectStore(fx.clients.s3, fx.emu.bucket, { partSize: 5 * MiB });
    fx.emu.onObjectCreated((r) => {
      records.push(r);
      if (waiter && records.length >= waiter.count) waiter.resolve();
    });
  });
  after(async () => fx.close());

  it('gives the SDK endpoints, region, credentials, bucket and table on loopback', () => {
    const env = fx.emu.env;
    for (const name of ['AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL_DYNAMODB', 'AWS_ENDPOINT_URL_SESV2']) {
      assert.match(env[name] ?? '', /^http:\/\/127\.0\.0\.1:\d+$/, name);
    }
    assert.equal(env.AWS_REGION, 'us-east-1');
    assert.ok(env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY);
    assert.equal(env.FANOUT_BUCKET, fx.emu.bucket);
    assert.equal(env.FANOUT_TABLE, fx.emu.table);
  });

  it('announces a put object with its key URL-encoded as S3 does, size, eTag and bucket', async () => {
    // given
    const key = 'intake/tax-due/Q1 customers+(final).csv';
    records.length = 0;

    // when
    await store.put(key, 'a,b\n1,2\n');
    await recordsArrived(1);

    // then
    assert.equal(records.length, 1);
    const r = records[0]!;
    assert.equal(r.eventSource, 'aws:s3');
    assert.equal(r.eventName, 'ObjectCreated:Put');
    assert.equal(r.s3.bucket.name, fx.emu.bucket);
    assert.equal(r.s3.bucket.arn, `arn:aws:s3:::${fx.emu.bucket}`);
    assert.equal(r.s3.object.key, 'intake/tax-due/Q1+customers%2B%28final%29.csv');
    assert.equal(decodeURIComponent(r.s3.object.key.replace(/\+/g, ' ')), key);
    assert.equal(r.s3.object.size, 8);
    assert.match(r.s3.object.eTag, /^[0-9a-f]{32}$/);
    assert.ok(!Number.isNaN(Date.parse(r.eventTime)));
  });

  it('announces a multipart upload once, when it completes, with its full size', async () => {
    // given
    records.length = 0;
    const data = randomBytes(6 * MiB);

    // when
    await store.put('intake/tax-due/big.csv', Readable.from([data.subarray(0, 3 * MiB), data.subarray(3 * MiB)]));
    await store.put('marker/after-big', 'x');
    await recordsArrived(2);

    // then (one notification for the upload, one for the marker put after it)
    assert.equal(records.length, 2);
    assert.equal(records[0]!.s3.object.key, 'intake/tax-due/big.csv');
    assert.equal(records[0]!.s3.object.size, data.length);
    assert.match(records[0]!.eventName, /^ObjectCreated:/);
  });

  it('gives each notification a distinct, increasing sequencer', async () => {
    // given
    records.length = 0;

    // when
    await Promise.all(['seq/a', 'seq/b', 'seq/c'].map((k) => store.put(k, k)));
    await recordsArrived(3);

    // then
    const sequencers = records.map((r) => r.s3.object.sequencer);
    assert.equal(new Set(sequencers).size, 3);
    assert.deepEqual([...sequencers].sort(), sequencers);
  });

  it('does not announce deletions', async () => {
    // given
    records.length = 0;
    await store.put('gone/x', 'x');
    await recordsArrived(1);
    records.length = 0;

    // when
    await store.deleteMany(['gone/x']);
    await store.put('marker/after-delete', 'x');
    await recordsArrived(1);

    // then the only notification is the marker's
    assert.deepEqual(
      records.map((r) => r.s3.object.key),
      ['marker/after-delete'],
    );
  });

  it('pages ListObjectsV2 with continuation tokens (which stock s3rver cannot make on OpenSSL 3)', async () => {
    // given five keys under a prefix
    const keys = ['pages/1', 'pages/2', 'pages/3', 'pages/4', 'pages/5'];
    for (const k of keys) await store.put(k, k);

    // when they are listed two at a time
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await fx.clients.s3.send(
        new ListObjectsV2Command({ Bucket: fx.emu.bucket, Prefix: 'pages/', MaxKeys: 2, ContinuationToken: token }),
      );
      pages += 1;
      seen.push(...(page.Contents ?? []).map((o) => o.Key!));
      assert.equal(page.KeyCount, page.Contents?.length ?? 0);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);

    // then
    assert.deepEqual(seen, keys);
    assert.equal(pages, 3);
  });

  it('answers ListObjectsV2 with a delimiter and StartAfter as S3 does', async () => {
    // given
    for (const k of ['tree/a/1', 'tree/a/2', 'tree/b/1', 'tree/c.txt', 'tree/d.txt']) await store.put(k, k);

    // when
    const byFolder = await fx.clients.s3.send(new ListObjectsV2Command({ Bucket: fx.emu.bucket, Prefix: 'tree/', Delimiter: '/' }));
    const after = await fx.clients.s3.send(new ListObjectsV2Command({ Bucket: fx.emu.bucket, Prefix: 'tree/', StartAfter: 'tree/b/1' }));

    // then
    assert.deepEqual(
      byFolder.CommonPrefixes?.map((p) => p.Prefix),
      ['tree/a/', 'tree/b/'],
    );
    assert.deepEqual(
      byFolder.Contents?.map((o) => o.Key),
      ['tree/c.txt', 'tree/d.txt'],
    );
    assert.deepEqual(
      after.Contents?.map((o) => o.Key),
      ['tree/c.txt', 'tree/d.txt'],
    );
  });

  it('accepts a raw message of sesMaxMessageBytes (the link fallback threshold for local runs)', async () => {
    // given an attachment sized so that the raw message is just under the emulator's limit
    const limit = fx.emu.sesMaxMessageBytes;
    const attachmentBytes = Math.floor((((limit - 64 * 1024) * 3) / 4) * (76 / 78));
    const mailer = new SesMailer(fx.clients.ses, { maxMessageBytes: limit });

    // when
    const { messageId } = await mailer.send({
      from: 'batch-fanout@example.com',
      to: ['tax-team@example.com'],
      subject: 'near the limit',
      text: 'big',
      attachments: [{ filename: 'big.bin', content: randomBytes(attachmentBytes), contentType: 'application/octet-stream' }],
    });

    // then it arrived whole
    const received = (await fx.emu.listMail()).find((m) => m.messageId === messageId);
    assert.equal(received?.attachments[0]?.content.length, attachmentBytes);
    const eml = await fx.emu.getEml(messageId);
    assert.ok(eml.length > limit - 1024 * 1024 && eml.length <= limit, `raw message is ${eml.length} bytes`);
  });

  it('keeps the mail of two emulator sets in one process apart', async () => {
    // given a second set of emulators
    const other = await startEmulatorFixture();
    try {
      // when each receives one message
      await new SesMailer(fx.clients.ses).send({ from: 'a@example.com', to: ['one@example.com'], subject: 'first set', text: 't' });
      await new SesMailer(other.clients.ses).send({ from: 'a@example.com', to: ['two@example.com'], subject: 'second set', text: 't' });

      // then each lists only its own
      const mine = (await fx.emu.listMail()).map((m) => m.subject);
      const theirs = (await other.emu.listMail()).map((m) => m.subject);
      assert.ok(mine.includes('first set'));
      assert.ok(!mine.includes('second set'));
      assert.deepEqual(theirs, ['second set']);
    } finally {
      await other.close();
    }
  });

  it('says which message is missing when asked for the .eml of an unknown id', async () => {
    await assert.rejects(fx.emu.getEml('ses-0'), /no message ses-0/);
  });

  it('closes every server on stop, even with clients still connected', async () => {
    // given a running set with keep-alive connections open to each server
    const { emu, clients, close } = await startEmulatorFixture();
    await new S3ObjectStore(clients.s3, emu.bucket).put('k', 'v');
    await new SesMailer(clients.ses).send({ from: 'a@example.com', to: ['b@example.com'], subject: 's', text: 't' });
    const ports = [emu.env.AWS_ENDPOINT_URL_S3!, emu.env.AWS_ENDPOINT_URL_DYNAMODB!, emu.env.AWS_ENDPOINT_URL_SESV2!].map(portOf);
    for (const port of ports) assert.equal(await canConnect(port), true);

    // when
    await emu.stop();

    // then nothing listens any more
    for (const port of ports) assert.equal(await canConnect(port), false, `port ${port} still open`);
    await close(); // a second stop is a no-op
  });
});

describe('encodeS3EventKey', () => {
  it('encodes as S3 notifications do: spaces as +, reserved characters as %XX, slashes kept', () => {
    assert.equal(encodeS3EventKey("intake/tax due/a+b (1)'s!~*.xlsx"), 'intake/tax+due/a%2Bb+%281%29%27s%21%7E*.xlsx');
    assert.equal(encodeS3EventKey('intake/x/Größe.csv'), 'intake/x/Gr%C3%B6%C3%9Fe.csv');
  });
});
