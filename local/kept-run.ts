/**
 * A kept local run (`fanout run ... --keep DIR`): the emulators keep their data in DIR (S3 objects
 * under DIR/s3, the run table under DIR/dynamo), and while the run goes, DIR/endpoints.json says
 * where its emulators and its job runner's Batch endpoint listen. The operating commands
 * (`fanout status|limit|cancel|redrive|submit --local DIR`) use those endpoints while the run
 * process lives, and otherwise start emulators of their own on DIR.
 */
import { existsSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const ENDPOINTS_FILE = 'endpoints.json';

export interface KeptEndpoints {
  /** The process that serves them. */
  pid: number;
  /** AWS_ENDPOINT_URL_* and the other variables a client needs (emulators' env). */
  env: Record<string, string>;
  bucket: string;
  table: string;
}

export async function writeKeptEndpoints(dir: string, endpoints: KeptEndpoints): Promise<void> {
  await writeFile(join(dir, ENDPOINTS_FILE), `${JSON.stringify(endpoints, null, 2)}\n`);
}

export async function removeKeptEndpoints(dir: string): Promise<void> {
  await rm(join(dir, ENDPOINTS_FILE), { force: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The endpoints of the run process that keeps DIR, when one is running. */
export function readLiveEndpoints(dir: string): KeptEndpoints | undefined {
  const file = join(dir, ENDPOINTS_FILE);
  if (!existsSync(file)) return undefined;
  const e = JSON.parse(readFileSync(file, 'utf8')) as KeptEndpoints;
  return alive(e.pid) ? e : undefined;
}

/** Whether DIR holds a kept run (its emulators' data). */
export function isKeptDir(dir: string): boolean {
  return existsSync(join(dir, 's3')) && existsSync(join(dir, 'dynamo'));
}
