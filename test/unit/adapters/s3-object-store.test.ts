import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { createS3Client } from '../../../runtime/adapters/clients';
import { S3ObjectStore } from '../../../runtime/adapters/s3-object-store';
import { ExitCode, ObjectNotFoundError, StorageError } from '../../../runtime/errors';
import type { Env } from '../../../runtime/env';
import { forEachConcurrent } from '../../../runtime/pool';
import { capturingClient, offlineClientConfig, startEmulatorFixture, type EmulatorFixture } from './fixtures';

const MiB = 1024 * 1024;

async function putMany(store: S3ObjectStore, keys: string[]): Promise<void> {
  await forEachConcurrent(keys, 32, (key) => store.put(key, key));
}

/** An S3 client on `env` that calls `note` with the name and input of each command it sends. */
function notingS3Client(env: Env, note: (commandName: string, input: unknown) => void): S3Client {
  const client = createS3Client(env);
  client.middlewareStack.add(
    (next, context) => async (args) => {
      note(context.commandName ?? '?', args.input);
      return next(args);
    },
    { step: 'initialize', name: 'noteCommands' },
  );
  return client;
}

async function listKeys(store: S3ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const obj of store.list(prefix)) keys.push(obj.key);
  return keys;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(Buffer.from(part as Uint8Array));
  return Buffer.concat(parts);
}

describe('S3ObjectStore against s3rver', () => {
  let fx: EmulatorFixture;
  let store: S3ObjectStore;

  before(async () => {
    fx = await startEmulatorFixture();
    store = new S3ObjectStore(fx.clients.s3, fx.emu.bucket, { partSize: 5 * MiB });
  });
  after(async () => fx.close());

  it('uploads a stream over 10 MB in parts and reads it back byte for byte', async () => {
    // given 12 MiB of random bytes arriving as a stream of 64 KiB pieces
    const data = randomBytes(12 * MiB);
    const pieces = Array.from({ length: data.length / (64 * 1024) }, (_, i) => data.subarray(i * 64 * 1024, (i + 1) * 64 * 1024));

    // and a store whose client notes the commands it sends
    const commands: string[] = [];
    const client = notingS3Client(fx.emu.env, (name) => commands.push(name));
    const partStore = new S3ObjectStore(client, fx.emu.bucket, { partSize: 5 * MiB });

    // when it is put and read back as a stream and as bytes
    await partStore.put('big/random.bin', Readable.from(pieces), { contentType: 'application/octet-stream' });
    client.destroy();
    const streamed = await readAll(await store.getStream('big/random.bin'));
    const bytes = await store.getBytes('big/random.bin');

    // then it went up as a multipart upload of 3 parts (5 + 5 + 2 MiB)
    assert.deepEqual(
      commands.filter((c) => c !== 'UploadPartCommand'),
      ['CreateMultipartUploadCommand', 'CompleteMultipartUploadCommand'],
    );
    assert.equal(commands.filter((c) => c === 'UploadPartCommand').length, 3);
    // and both reads give the same bytes
    assert.equal(streamed.length, data.length);
    assert.equal(sha256(streamed), sha256(data));
    assert.equal(sha256(bytes), sha256(data));
    assert.deepEqual(await store.head('big/random.bin'), { key: 'big/random.bin', size: data.length });
  });

  it('writes strings and byte arrays as they are', async () => {
    // given / when
    await store.put('small/text.txt', 'héllo\n', { contentType: 'text/plain' });
    await store.put('small/bytes.bin', new Uint8Array([0, 1, 2, 255]));

    // then
    assert.equal((await store.getBytes('small/text.txt')).toString('utf8'), 'héllo\n');
    assert.deepEqual([...(await store.getBytes('small/bytes.bin'))], [0, 1, 2, 255]);
  });

  it('lists more than 1,000 keys under a prefix, in key order, across pages', async () => {
    // given 1,010 objects under the prefix and one beside it
    const keys = Array.from({ length: 1010 }, (_, i) => `list/${String(i).padStart(5, '0')}.jsonl`);
    await putMany(store, [...keys, 'listing/other.txt']);

    // when
    const listed: Array<{ key: string; size: number }> = [];
    for await (const obj of store.list('list/')) listed.push(obj);

    // then every key is there once, in order, with its size
    assert.deepEqual(
      listed.map((o) => o.key),
      keys,
    );
    assert.equal(listed[7]!.size, Buffer.byteLength(keys[7]!));
  });

  it('deletes more than 1,000 keys in batches', async () => {
    // given 1,010 objects, and one that must stay
    const keys = Array.from({ length: 1010 }, (_, i) => `delete/${String(i).padStart(5, '0')}`);
    await putMany(store, [...keys, 'delete-keep/x']);
    assert.equal((await listKeys(store, 'delete/')).length, 1010);

    // and a store whose client notes the size of each DeleteObjects request
    // (s3rver itself accepts more than S3's 1,000 keys per request)
    const batchSizes: number[] = [];
    const client = notingS3Client(fx.emu.env, (name, input) => {
      if (name === 'DeleteObjectsCommand') batchSizes.push((input as { Delete?: { Objects?: unknown[] } }).Delete?.Objects?.length ?? 0);
    });

    // when
    await new S3ObjectStore(client, fx.emu.bucket).deleteMany(keys);
    client.destroy();

    // then it took two requests of at most 1,000 keys, and the objects are gone
    assert.deepEqual(
      [...batchSizes].sort((a, b) => b - a),
      [1000, 10],
    );
    assert.deepEqual(await listKeys(store, 'delete/'), []);
    assert.deepEqual(await listKeys(store, 'delete-keep/'), ['delete-keep/x']);
  });

  it('sends nothing for an empty key list', async () => {
    // given a store whose client captures requests
    const capture = capturingClient(S3Client, { body: '' });

    // when
    await new S3ObjectStore(capture.client, 'bucket-z').deleteMany([]);

    // then (DeleteObjects with no keys is a MalformedXML error on S3)
    assert.equal(capture.requests.length, 0);
  });

  it('throws ObjectNotFoundError for a missing object, and head answers undefined', async () => {
    // given / when / then
    await assert.rejects(store.getStream('missing/a'), (err: unknown) => err instanceof ObjectNotFoundError && err.key === 'missing/a');
    await assert.rejects(store.getBytes('missing/b'), ObjectNotFoundError);
    assert.equal(await store.head('missing/c'), undefined);
  });

  it('presigns a GET link that can be fetched on loopback', async () => {
    // given
    await store.put('results/tax-due/out.xlsx', 'workbook bytes');

    // when
    const before = Date.now();
    const { url, expiresAt } = await store.presignGet('results/tax-due/out.xlsx', 600);
    const res = await fetch(url);

    // then
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\//);
    assert.match(url, /X-Amz-Expires=600/);
    assert.ok(expiresAt.getTime() >= before + 600_000 && expiresAt.getTime() <= Date.now() + 600_000, 'long-term keys: the requested time');
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'workbook bytes');
  });

  it('turns a missing bucket into a StorageError naming the operation, bucket and key', async () => {
    // given a store on a bucket that does not exist
    const nowhere = new S3ObjectStore(fx.clients.s3, 'no-such-bucket');

    // when / then (a missing bucket is a storage failure, not a missing object)
    await assert.rejects(nowhere.getBytes('a/b.txt'), (err: unknown) => {
      assert.ok(err instanceof StorageError, String(err));
      assert.equal(err.exitCode, ExitCode.STORAGE);
      assert.match(err.message, /GetObject of s3:\/\/no-such-bucket\/a\/b\.txt/);
      return true;
    });
    await assert.rejects(nowhere.put('a/b.txt', 'x'), (err: unknown) => {
      assert.ok(err instanceof StorageError);
      assert.match(err.message, /PutObject of s3:\/\/no-such-bucket\/a\/b\.txt/);
      return true;
    });
  });

  it('turns a connection lost while an object streams into a StorageError naming bucket and key', async () => {
    // given an S3 answer whose body breaks off after the first bytes
    const handler = {
      async handle() {
        const body = new Readable({ read() {} });
        body.push(Buffer.from('first bytes\n'));
        setImmediate(() => body.destroy(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })));
        return { response: { statusCode: 200, headers: { 'content-length': '1000000' }, body } };
      },
      updateHttpClientConfig() {},
      httpHandlerConfigs() {
        return {};
      },
    };
    const client = new S3Client({ ...offlineClientConfig, requestHandler: handler as S3ClientConfig['requestHandler'] });
    const broken = new S3ObjectStore(client, 'bucket-y');

    // when the stream is read / then
    const stream = await broken.getStream('work/r1/chunks/0.jsonl');
    await assert.rejects(readAll(stream), (err: unknown) => {
      assert.ok(err instanceof StorageError, String(err));
      assert.equal(err.exitCode, ExitCode.STORAGE);
      assert.match(err.message, /s3:\/\/bucket-y\/work\/r1\/chunks\/0\.jsonl/);
      assert.match(err.message, /socket hang up/);
      return true;
    });
  });

  it('reports the keys a DeleteObjects response lists as not deleted', async () => {
    // given an S3 answer (documented DeleteResult shape) with two per-key errors
    const capture = capturingClient(S3Client, {
      headers: { 'content-type': 'application/xml' },
      body:
        '<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
        '<Error><Key>k/1</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>' +
        '<Error><Key>k/2</Key><Code>InternalError</Code><Message>try again</Message></Error>' +
        '</DeleteResult>',
    });
    const failing = new S3ObjectStore(capture.client, 'bucket-x');

    // when / then
    await assert.rejects(failing.deleteMany(['k/1', 'k/2', 'k/3']), (err: unknown) => {
      assert.ok(err instanceof StorageError);
      assert.equal(err.exitCode, ExitCode.STORAGE);
      assert.match(err.message, /bucket-x/);
      assert.match(err.message, /2 of 3 keys/);
      assert.match(err.message, /k\/1: AccessDenied/);
      assert.match(err.message, /k\/2: InternalError/);
      return true;
    });
    // and the request was one quiet DeleteObjects with the three keys
    assert.equal(capture.requests.length, 1);
    assert.equal(capture.requests[0]!.method, 'POST');
    assert.match(capture.requests[0]!.body, /<Quiet>true<\/Quiet>/);
    assert.equal(capture.requests[0]!.body.match(/<Key>/g)?.length, 3);
  });
});
