/**
 * The `fanout` command as a person runs it: the demo with --json, exit codes for a failed run
 * and for usage errors, and a config given as JSON.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pipelinesConfig } from '../../config/pipelines';
import { PROJECT_ROOT } from '../../local/local-run';
import { customers, writeCustomersCsv } from './fixtures';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-cli-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function fanout(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(PROJECT_ROOT, 'bin', 'fanout.mjs'), ...args], {
      cwd: dir,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

const JSON_KEYS = ['runId', 'pipeline', 'status', 'items', 'succeeded', 'failed', 'chunks', 'resultFile', 'emailFile', 'durationMs', 'iam'];

describe('fanout CLI', () => {
  it('runs the demo and prints one JSON line', async () => {
    const out = join(dir, 'demo-out');
    const r = await fanout(['demo', '--json', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 1, 'exactly one line on stdout');
    const summary = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.deepEqual(Object.keys(summary), JSON_KEYS);
    assert.equal(summary.status, 'SUCCEEDED');
    assert.equal(summary.pipeline, 'tax-due');
    const iam = summary.iam as { calls: number; denied: number };
    assert.ok(iam.calls > 50, `${iam.calls} AWS calls checked`);
    assert.equal(iam.denied, 0);
    assert.ok(Number(summary.items) >= 2000);
    assert.equal(Number(summary.succeeded) + Number(summary.failed), summary.items);
    assert.ok(Number(summary.failed) > 0, 'the demo shows a few permanent misses');
    assert.ok(existsSync(String(summary.resultFile)) && String(summary.resultFile).startsWith(out));
    assert.ok(existsSync(String(summary.emailFile)));
  });

  it('exits 1 for a failed run and still saves the failure email', async () => {
    const file = join(dir, 'bad.csv');
    await writeCustomersCsv(file, customers(3), ['Customer ID', 'Name', 'Postcode']);
    const config = join(dir, 'config.json');
    await writeFile(config, JSON.stringify(pipelinesConfig));
    const r = await fanout(['run', file, '--pipeline', 'tax-due', '--config', config, '--json', '--out', join(dir, 'bad-out')]);
    assert.equal(r.code, 1, r.stderr);
    const summary = JSON.parse(r.stdout.trim()) as Record<string, unknown>;
    assert.equal(summary.status, 'FAILED');
    assert.equal(summary.resultFile, null);
    assert.ok(existsSync(String(summary.emailFile)), 'the failure email is saved');
  });

  it('exits 2 for a usage error and says what was wrong', async () => {
    const r = await fanout(['run', 'missing.csv', '--pipeline', 'tax-due']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no such file: missing\.csv/);
    const unknown = await fanout(['run', join(PROJECT_ROOT, 'examples', 'tax-due', 'customers.csv'), '--pipeline', 'nope']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /no pipeline "nope".*known: tax-due/);
  });

  it('exits 2 for an invalid config file and names the field', async () => {
    const config = join(dir, 'invalid.json');
    await writeFile(config, JSON.stringify({ pipelines: [{ ...pipelinesConfig.pipelines[0], chunkSize: 0 }] }));
    const r = await fanout(['check-config', '--config', config]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /pipelines\[0\]\.chunkSize/);
  });
});
