/**
 * Helpers of the operating-command tests: `fanout` called in-process with captured output, or as a
 * separate process (as a person runs it next to a kept run).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { main } from '../../bin/fanout-cli';
import { PROJECT_ROOT } from '../../local/local-run';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

export async function fanoutInProcess(args: string[]): Promise<CliResult> {
  const out = new Capture();
  const err = new Capture();
  const code = await main(args, { out: out as unknown as NodeJS.WriteStream, err: err as unknown as NodeJS.WriteStream });
  return { code, stdout: out.text, stderr: err.text };
}

export function fanoutProcess(args: string[], cwd: string, env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(PROJECT_ROOT, 'bin', 'fanout.mjs'), ...args], {
      cwd,
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

/** The JSON line a `--json` command printed (fails with its output otherwise). */
export function jsonOf<T>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as T;
  } catch {
    throw new Error(`not a JSON answer (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}
