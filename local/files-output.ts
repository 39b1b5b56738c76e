/**
 * A local run of a `files` pipeline: brings the converted files down from the emulated bucket
 * into the output folder, each at its relative path (`results/<pipeline>/<runId>/a/b.json` ->
 * `<outDir>/a/b.json`), streamed.
 */
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, relative, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { filesKeys } from '../batch-jobs/stages/list';
import type { RunRecord } from '../runtime/model';
import type { ObjectStore } from '../runtime/ports';

export async function downloadFileOutputs(store: ObjectStore, run: RunRecord, outDir: string): Promise<number> {
  const prefix = filesKeys.outputPrefix(run.pipeline, run.runId);
  let n = 0;
  for await (const obj of store.list(prefix)) {
    const target = resolve(outDir, obj.key.slice(prefix.length));
    // Names were checked by list; this keeps a bad one from leaving the folder all the same.
    if (relative(outDir, target).startsWith('..')) continue;
    await mkdir(dirname(target), { recursive: true });
    await pipeline(await store.getStream(obj.key), createWriteStream(target));
    n++;
  }
  return n;
}
