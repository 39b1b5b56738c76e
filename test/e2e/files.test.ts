/**
 * The files shape end to end, locally: a zip of XML files (and an SFTP pull from a real sshd)
 * through on-intake, list, the fan-out of xml-to-json, summary and cleanup, with the same stage
 * code and SDK calls as on AWS. The summary workbook is read back with exceljs.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import ExcelJS from 'exceljs';
import yazl from 'yazl';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { runLocal } from '../../local/local-run';
import { pullLocal } from '../../local/local-pull';
import { startSftpTestServer, type SftpTestServer } from '../../local/sources/sftp-test-server';
import { loadConfigFile, parseAppConfig } from '../../runtime/config/schema';

const CONFIG = loadConfigFile('examples/xml/pipelines.json');
let dir: string;

async function zipOf(name: string, entries: Array<[string, string]>, patch?: [string, string]): Promise<string> {
  const zip = new yazl.ZipFile();
  for (const [path, body] of entries) zip.addBuffer(Buffer.from(body), path);
  zip.end();
  const file = join(dir, name);
  await pipeline(zip.outputStream, createWriteStream(file));
  if (patch) {
    // yazl will not write an escaping name: write a same-length one and swap the bytes in both headers.
    const bytes = await readFile(file);
    await writeFile(file, Buffer.from(bytes.toString('latin1').replaceAll(patch[0], patch[1]), 'latin1'));
  }
  return file;
}

async function sheetRows(file: string, sheet: string): Promise<unknown[][]> {
  const wb = new ExcelJS.Workbook();
  await wb.xlsx.readFile(file);
  const rows: unknown[][] = [];
  wb.getWorksheet(sheet)!.eachRow((row) => rows.push((row.values as unknown[]).slice(1)));
  return rows;
}

describe('files pipeline end to end (xml-to-json)', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fanout-files-e2e-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('converts each file of a zip to JSON at its relative path, with a summary workbook and email; bad files fail alone', async () => {
    const zip = await zipOf('batch.zip', [
      ['orders/a.xml', '<order id="007"><line>1</line><line>2</line></order>'],
      ['orders/b.xml', '<order>\n  <id>1</idx>\n</order>'],
      ['empty.xml', ''],
      ['orders/a.xml', '<order id="008"/>'],
    ]);
    const out = join(dir, 'out');
    const r = await runLocal({ file: zip, pipeline: 'xml-json', config: CONFIG, outDir: out });
    assert.equal(r.status, 'SUCCEEDED', r.error);
    assert.equal(r.iam.denied, 0, 'no call the synthesized IAM policies would deny');
    assert.ok(r.iam.calls > 0, 'the calls were checked');
    assert.deepEqual([r.items, r.succeeded, r.failed], [4, 2, 2]);
    assert.deepEqual(JSON.parse(await readFile(join(out, 'orders/a.json'), 'utf8')), { order: { '@id': '007', line: ['1', '2'] } });
    assert.deepEqual(JSON.parse(await readFile(join(out, 'orders/a (2).json'), 'utf8')), { order: { '@id': '008' } });
    const results = await sheetRows(r.resultFile!, 'Results');
    assert.deepEqual(results[0], ['File', 'Status', 'Bytes in', 'Bytes out', 'Output', 'Error', 'Line', 'Column', 'Attempts']);
    const bad = results.find((row) => row[0] === 'orders/b.xml')!;
    assert.equal(bad[1], 'failed');
    assert.match(String(bad[5]), /malformed XML/);
    assert.deepEqual([bad[6], bad[7]], [2, 8]);
    assert.match(String(results.find((row) => row[0] === 'empty.xml')![5]), /the file is empty/);
    const good = results.find((row) => row[0] === 'orders/a.xml')!;
    assert.deepEqual([good[1], good[2]], ['done', 52]);
    const errors = await sheetRows(r.resultFile!, 'Errors');
    assert.equal(errors.length, 3);
    // Quoted-printable soft line breaks joined again.
    const mail = (await readFile(r.emailFile!, 'utf8')).replace(/=\r\n/g, '');
    assert.match(mail, /xml-json: batch\.zip - 2 converted, 2 failed/);
    assert.match(mail, /orders\/a\.xml -> orders\/a \(2\)\.xml/);
    assert.match(mail, /Content-Disposition: attachment;\s+filename=batch\.\S+\.xlsx/);
  });

  it('refuses a zip whose entry escapes its folder, with a clear message, converting nothing', async () => {
    const zip = await zipOf(
      'escape.zip',
      [
        ['ok.xml', '<a/>'],
        ['xx/xx/etc/cron.d/evil.xml', '<a/>'],
      ],
      ['xx/xx/etc', '../../etc'],
    );
    const r = await runLocal({ file: zip, pipeline: 'xml-json', config: CONFIG, outDir: join(dir, 'escape') });
    assert.equal(r.status, 'FAILED');
    assert.equal(r.iam.denied, 0, r.error);
    assert.match(r.error!, /escape\.zip is refused: .*escapes its folder|climbs out of its folder/);
    const mail = await readFile(r.emailFile!, 'utf8');
    assert.match(mail, /escape\.zip/);
  });

  it('refuses a zip whose files inflate past the limit', async () => {
    const zip = await zipOf('bomb.zip', [['big.xml', `<a>${'A'.repeat(200_000)}</a>`]]);
    const config = parseAppConfig({ pipelines: [{ ...CONFIG.pipelines[0], zip: { maxInflatedBytes: 100_000 } }] });
    const r = await runLocal({ file: zip, pipeline: 'xml-json', config, outDir: join(dir, 'bomb') });
    assert.equal(r.status, 'FAILED');
    assert.equal(r.iam.denied, 0, r.error);
    assert.match(r.error!, /bomb\.zip is refused: its files inflate to 200,007 bytes, more than the limit of 100,000/);
  });
});

describe('fanout pull, locally (real sshd)', () => {
  let server: SftpTestServer;
  before(async () => {
    server = await startSftpTestServer();
    dir = await mkdtemp(join(tmpdir(), 'fanout-pull-e2e-'));
  });
  after(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('pulls a batch into one run of the files pipeline, and a second pull with --state copies nothing', async () => {
    const inbox = join(server.root, 'outbox');
    await mkdir(inbox);
    const old = new Date(Date.now() - 3600_000);
    for (const [name, body] of [
      ['o1.xml', '<o>1</o>'],
      ['o2.xml', '<o>2</o>'],
    ]) {
      await writeFile(join(inbox, name!), body!);
      await utimes(join(inbox, name!), old, old);
    }
    const config = parseAppConfig({
      pipelines: CONFIG.pipelines,
      sources: [
        {
          name: 'partner',
          host: server.host,
          port: server.port,
          user: server.user,
          privateKey: { env: 'PARTNER_KEY' },
          hostKeySha256: server.hostKeySha256,
          folder: inbox,
          glob: '*.xml',
          pipeline: 'xml-json',
          schedule: 'rate(15 minutes)',
        },
      ],
    });
    const state = join(dir, 'state');
    const env = { PARTNER_KEY: server.privateKey };
    const first = await pullLocal({ source: 'partner', config, outDir: join(dir, 'pull1'), stateDir: state, env });
    assert.equal(first.pull.copied.length, 2);
    assert.equal(first.run?.status, 'SUCCEEDED', first.run?.error);
    assert.equal(first.run?.iam.denied, 0, 'no call the synthesized IAM policies would deny');
    assert.equal(first.run?.items, 2);
    assert.deepEqual((await readdir(join(dir, 'pull1'))).filter((f) => f.endsWith('.json')).sort(), ['o1.json', 'o2.json']);
    const second = await pullLocal({ source: 'partner', config, outDir: join(dir, 'pull2'), stateDir: state, env });
    assert.equal(second.pull.copied.length, 0);
    assert.equal(second.pull.unchanged.length, 2);
    assert.equal(second.run, undefined);
  });
});
