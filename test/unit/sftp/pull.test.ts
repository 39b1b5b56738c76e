/**
 * The SFTP pull against a real OpenSSH server (sshd on a random loopback port, generated keys,
 * internal-sftp serving a temporary folder) and the real S3 and DynamoDB emulators.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { manifestKey, runPull, type PullDeps } from '../../../batch-jobs/sftp/pull';
import { runSftpPullJob } from '../../../batch-jobs/sftp/pull-job';
import { SftpConfigError, SftpSession } from '../../../batch-jobs/sftp/sftp-session';
import { startSftpTestServer, type SftpTestServer } from '../../../local/sources/sftp-test-server';
import { DynamoSourceLedger } from '../../../runtime/adapters/dynamo-source-ledger';
import { S3ObjectStore } from '../../../runtime/adapters/s3-object-store';
import { sftpSourceSchema, type SftpSourceConfig } from '../../../runtime/config/sources-schema';
import { silentLogger } from '../../../runtime/log';
import { startEmulatorFixture, type EmulatorFixture } from '../adapters/fixtures';

let server: SftpTestServer;
let fx: EmulatorFixture;
let store: S3ObjectStore;
let ledger: DynamoSourceLedger;
let n = 0;
let inbox: string;

const HOUR_AGO = () => new Date(Date.now() - 3600_000);

function sourceFor(over: Partial<Record<string, unknown>> = {}): SftpSourceConfig {
  return sftpSourceSchema.parse({
    name: `partner-${n}`,
    host: server.host,
    port: server.port,
    user: server.user,
    privateKey: { env: 'PARTNER_KEY' },
    hostKeySha256: server.hostKeySha256,
    folder: inbox,
    glob: '*.xml',
    pipeline: 'xml-json',
    schedule: 'rate(15 minutes)',
    minAgeSeconds: 60,
    timeoutMs: 10_000,
    ...over,
  });
}

async function remoteFile(name: string, body: string | Buffer, mtime = HOUR_AGO()): Promise<void> {
  await writeFile(join(inbox, name), body);
  await utimes(join(inbox, name), mtime, mtime);
}

async function pull(source: SftpSourceConfig, shape: 'items' | 'files' = 'items', extra: Partial<PullDeps> = {}) {
  const session = await SftpSession.connect({ ...source, privateKey: server.privateKey, label: source.name });
  try {
    return await runPull(source, shape, session, { store, ledger, log: silentLogger, ...extra });
  } finally {
    session.close();
  }
}

async function intakeKeys(): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list('intake/')) out.push(o.key);
  return out;
}

describe('SFTP pull (real sshd)', () => {
  before(async () => {
    [server, fx] = await Promise.all([startSftpTestServer(), startEmulatorFixture()]);
    store = new S3ObjectStore(fx.clients.s3, fx.emu.bucket);
    ledger = new DynamoSourceLedger(fx.clients.dynamo, fx.emu.table);
  });
  after(async () => {
    await Promise.all([server?.close(), fx?.close()]);
  });
  beforeEach(async () => {
    n++;
    inbox = join(server.root, `inbox-${n}`);
    await mkdir(inbox);
    const keys = await intakeKeys();
    await store.deleteMany(keys);
  });

  it('copies new matching files with their remote path, size and time as metadata, and records them', async () => {
    const source = sourceFor();
    await remoteFile('a.xml', '<a>1</a>');
    await remoteFile('b.xml', '<b>2</b>');
    await remoteFile('notes.txt', 'not matched');
    const r = await pull(source);
    assert.deepEqual(
      r.copied.map((c) => c.key),
      [`intake/xml-json/${source.name}/a.xml`, `intake/xml-json/${source.name}/b.xml`],
    );
    assert.equal((await store.getBytes(`intake/xml-json/${source.name}/a.xml`)).toString(), '<a>1</a>');
    const head = await fx.clients.s3.send(new HeadObjectCommand({ Bucket: fx.emu.bucket, Key: `intake/xml-json/${source.name}/b.xml` }));
    assert.equal(head.Metadata?.['remote-path'], `${inbox}/b.xml`);
    assert.equal(head.Metadata?.['remote-size'], '8');
    assert.equal(head.Metadata?.['remote-mtime'], new Date(r.copied[1]!.mtime * 1000).toISOString());
    assert.ok(Math.abs(r.copied[1]!.mtime * 1000 - HOUR_AGO().getTime()) < 600_000);
    const records = await ledger.list(source.name);
    assert.deepEqual(records.map((x) => [x.path, x.state]).sort(), [
      [`${inbox}/a.xml`, 'copied'],
      [`${inbox}/b.xml`, 'copied'],
    ]);
    assert.deepEqual(
      await intakeKeys(),
      r.copied.map((c) => c.key),
      'no temporary or partial object in intake/',
    );
  });

  it('copies nothing on a repeated pull of an unchanged folder, and a changed file again', async () => {
    const source = sourceFor();
    await remoteFile('a.xml', '<a>1</a>');
    await remoteFile('b.xml', '<b>2</b>');
    assert.equal((await pull(source)).copied.length, 2);
    const again = await pull(source);
    assert.equal(again.copied.length, 0);
    assert.deepEqual(again.unchanged.sort(), [`${inbox}/a.xml`, `${inbox}/b.xml`]);
    await remoteFile('b.xml', '<b>changed</b>');
    const third = await pull(source);
    assert.deepEqual(
      third.copied.map((c) => c.path),
      [`${inbox}/b.xml`],
    );
    assert.equal((await store.getBytes(third.copied[0]!.key)).toString(), '<b>changed</b>');
  });

  it('copies each file once when two pulls overlap', async () => {
    const source = sourceFor({ concurrency: 2 });
    for (let i = 0; i < 8; i++) await remoteFile(`f${i}.xml`, `<f>${i}</f>`);
    const [a, b] = await Promise.all([pull(source), pull(source)]);
    assert.equal(a.copied.length + b.copied.length, 8);
    const all = [...a.copied, ...b.copied].map((c) => c.path).sort();
    assert.equal(new Set(all).size, 8);
  });

  it('leaves a file younger than minAgeSeconds for the next pull', async () => {
    const source = sourceFor({ minAgeSeconds: 600 });
    await remoteFile('old.xml', '<a/>');
    await remoteFile('writing.xml', '<a>still be', new Date());
    const r = await pull(source);
    assert.deepEqual(
      r.copied.map((c) => c.path),
      [`${inbox}/old.xml`],
    );
    assert.deepEqual(r.tooYoung, [`${inbox}/writing.xml`]);
  });

  it('deletes the remote file after the copy when told to', async () => {
    await remoteFile('a.xml', '<a/>');
    const r = await pull(sourceFor({ afterCopy: 'delete' }));
    assert.equal(r.copied[0]!.after, 'deleted');
    assert.deepEqual(await readdir(inbox), []);
  });

  it('moves the remote file into the done folder after the copy when told to', async () => {
    const done = join(server.root, `done-${n}`);
    await mkdir(done);
    await remoteFile('a.xml', '<a/>');
    const r = await pull(sourceFor({ afterCopy: { moveTo: done } }));
    assert.equal(r.copied[0]!.after, `moved to ${done}/a.xml`);
    assert.deepEqual(await readdir(inbox), []);
    assert.deepEqual(await readdir(done), ['a.xml']);
  });

  it('writes one manifest of the batch for a files pipeline', async () => {
    const source = sourceFor();
    await remoteFile('a.xml', '<a/>');
    await remoteFile('b.xml', '<b/>');
    const r = await pull(source, 'files');
    assert.equal(r.manifestKey, manifestKey('xml-json', source.name, r.pullId));
    assert.deepEqual(
      (await store.getBytes(r.manifestKey!)).toString().trim().split('\n'),
      r.copied.map((c) => c.key),
    );
    assert.equal((await pull(source, 'files')).manifestKey, undefined, 'a pull that copied nothing starts no run');
  });

  it('refuses a server whose host key is not the pinned one, naming both fingerprints', async () => {
    const pinned = `SHA256:${'B'.repeat(43)}`;
    await assert.rejects(
      SftpSession.connect({ ...sourceFor(), hostKeySha256: pinned, privateKey: server.privateKey, label: 'partner' }),
      (err: Error) =>
        err instanceof SftpConfigError &&
        err.message.includes(server.hostKeySha256) &&
        err.message.includes(pinned) &&
        /host key mismatch/.test(err.message),
    );
  });

  it('says the server refused the key when the user key is not authorized', async () => {
    await assert.rejects(
      SftpSession.connect({ ...sourceFor(), privateKey: server.unauthorizedKey, label: 'partner' }),
      (err: Error) => err instanceof SftpConfigError && /refused the private key for user/.test(err.message),
    );
  });

  it('leaves no object in intake/ when the connection drops mid-file, and the next pull copies the file whole', async () => {
    const source = sourceFor();
    const big = randomBytes(3 * 1024 * 1024);
    await remoteFile('big.xml', big);
    let dropped = false;
    const r = await pull(source, 'items', {
      onBytes: (_file, bytes) => {
        if (!dropped && bytes >= 512 * 1024) {
          dropped = true;
          server.dropConnections();
        }
      },
    });
    assert.ok(dropped);
    assert.equal(r.copied.length, 0);
    assert.equal(r.failed.length, 1);
    assert.deepEqual(await intakeKeys(), []);
    const leftovers: string[] = [];
    for await (const o of store.list('work/pulls/')) leftovers.push(o.key);
    assert.deepEqual(leftovers, [], 'the temporary object is deleted');
    assert.deepEqual(await ledger.list(source.name), [], 'the claim is released');
    const next = await pull(source);
    assert.equal(next.copied.length, 1);
    assert.ok((await store.getBytes(next.copied[0]!.key)).equals(big));
  });

  it('runs as the sftp-pull job from its environment: exit 0 after a pull, 11 (not retried) on a wrong host key', async () => {
    const source = sourceFor();
    await remoteFile('a.xml', '<a/>');
    const env = {
      ...fx.emu.env,
      FANOUT_BUCKET: fx.emu.bucket,
      FANOUT_TABLE: fx.emu.table,
      FANOUT_PIPELINE_SHAPE: 'files',
      PARTNER_KEY: server.privateKey,
    };
    assert.equal(await runSftpPullJob({ ...env, FANOUT_SOURCE: JSON.stringify(source) }), 0);
    const copied = await intakeKeys();
    assert.ok(copied.includes(`intake/xml-json/${source.name}/a.xml`), copied.join(', '));
    assert.equal(copied.filter((k) => k.endsWith('.txt')).length, 1, 'one manifest for the batch');
    const wrong = { ...source, hostKeySha256: `SHA256:${'C'.repeat(43)}` };
    assert.equal(await runSftpPullJob({ ...env, FANOUT_SOURCE: JSON.stringify(wrong) }), 11);
    assert.equal(await runSftpPullJob({ ...env, FANOUT_SOURCE: '{"name":"x"}' }), 11);
  });
});
