/**
 * list (the `files` shape's first job, run by the split job definition): turns the run's input
 * into work items, one per file, written as chunk files of at most `chunkSize` files:
 *
 * - a `.zip`: every entry, checked first as a whole. An entry whose name escapes its folder
 *   (`../`, an absolute path, a drive letter) or a zip whose entries inflate past the limit is
 *   refused before anything is extracted. Entries are extracted, streamed, to `work/<run>/files/`.
 *   Duplicate names are numbered (`a.xml`, `a (2).xml`) and the summary email says so.
 * - a `.txt` manifest: one object key per line (blank lines and `#` comments skipped), each under
 *   the pipeline's intake folder; an SFTP pull writes one per batch.
 *
 * Then records the chunks and announces "split done", as split does for items.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { pipeline as pump } from 'node:stream/promises';
import yauzl from 'yauzl';
import { MAX_ARRAY_SIZE, requireShape, type FilesPipelineConfig } from '../../runtime/config/schema';
import { InputError } from '../../runtime/errors';
import { moveRun, pendingChunk } from '../../runtime/lifecycle';
import { keys, type ChunkRecord, type RunRecord, type WorkItem } from '../../runtime/model';
import { forEachConcurrent } from '../../runtime/pool';
import { toJsonl } from '../records/jsonl';
import type { FileRef } from '../tasks/file-task';
import { nowOf, type StageContext } from './context';

export const filesKeys = {
  /** An extracted zip entry (numbered: entry names may hold anything). */
  extracted: (runId: string, n: number) => `work/${runId}/files/${n}`,
  /** What list found worth telling the reader (renamed duplicates), read by summary. */
  notes: (runId: string) => `work/${runId}/list-notes.json`,
  /** Outputs of a run: `results/<pipeline>/<runId>/<relative path>`. */
  outputPrefix: (pipeline: string, runId: string) => `results/${pipeline}/${runId}/`,
};

export interface ListNotes {
  /** `original name -> name used`, for duplicate names that were numbered. */
  renamed: Array<[string, string]>;
}

export interface ListResult {
  files: number;
  chunks: number;
  renamed: number;
}

/** Entries extracted at once. */
const EXTRACT_CONCURRENCY = 8;

/**
 * Why an entry name may not be used, or undefined when it may: it must stay inside its folder.
 */
export function escapeReason(name: string): string | undefined {
  if (name.includes('\0')) return 'holds a NUL character';
  if (name.includes('\\')) return 'uses "\\" (a Windows path): zip entry names use "/"';
  if (name.startsWith('/')) return 'is an absolute path';
  if (/^[A-Za-z]:/.test(name)) return 'starts with a drive letter';
  if (name.split('/').includes('..')) return 'climbs out of its folder with ".."';
  return undefined;
}

/** Numbers repeated names: the second `a/b.xml` becomes `a/b (2).xml`. */
export class NameNumbering {
  private readonly used = new Set<string>();
  readonly renamed: Array<[string, string]> = [];

  take(name: string): string {
    if (!this.used.has(name)) {
      this.used.add(name);
      return name;
    }
    const ext = posix.extname(name);
    const stem = name.slice(0, name.length - ext.length);
    let n = 2;
    while (this.used.has(`${stem} (${n})${ext}`)) n++;
    const numbered = `${stem} (${n})${ext}`;
    this.used.add(numbered);
    this.renamed.push([name, numbered]);
    return numbered;
  }
}

function openZip(path: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) =>
    yauzl.open(path, { lazyEntries: true, autoClose: false, validateEntrySizes: true, strictFileNames: false }, (err, zip) =>
      err ? reject(err) : resolve(zip),
    ),
  );
}

async function readEntries(zip: yauzl.ZipFile): Promise<yauzl.Entry[]> {
  return new Promise((resolve, reject) => {
    const entries: yauzl.Entry[] = [];
    zip.on('entry', (e: yauzl.Entry) => {
      entries.push(e);
      zip.readEntry();
    });
    zip.once('end', () => resolve(entries));
    zip.once('error', reject);
    zip.readEntry();
  });
}

/** The zip's files as work items, checked as a whole before any is extracted. */
async function listZip(
  ctx: StageContext,
  run: RunRecord,
  pipeline: FilesPipelineConfig,
  tmp: string,
  numbering: NameNumbering,
): Promise<FileRef[]> {
  const local = join(tmp, 'input.zip');
  await pump(await ctx.store.getStream(run.inputKey), createWriteStream(local));
  let zip: yauzl.ZipFile;
  let entries: yauzl.Entry[];
  try {
    zip = await openZip(local);
    entries = await readEntries(zip);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    if (/absolute path|invalid relative path/.test(why)) {
      throw new InputError(
        `${run.inputName} is refused: an entry escapes its folder (${why}). Zip the files again from inside their folder.`,
        { file: run.inputName },
      );
    }
    throw new InputError(`${run.inputName} is not a readable zip file (${why}). Check that the upload finished and that it is a .zip.`, {
      file: run.inputName,
    });
  }
  try {
    const files = entries.filter((e) => !e.fileName.endsWith('/'));
    for (const e of files) {
      const why = escapeReason(e.fileName);
      if (why) {
        throw new InputError(
          `${run.inputName} is refused: the entry "${e.fileName}" ${why}. Zip the files again from inside their folder.`,
          { file: run.inputName },
        );
      }
    }
    if (files.length > pipeline.zip.maxEntries) {
      throw new InputError(
        `${run.inputName} holds ${files.length.toLocaleString('en-US')} files, more than the limit of ${pipeline.zip.maxEntries.toLocaleString('en-US')}. Split it into smaller zips.`,
        { file: run.inputName },
      );
    }
    const inflated = files.reduce((sum, e) => sum + e.uncompressedSize, 0);
    if (inflated > pipeline.zip.maxInflatedBytes) {
      throw new InputError(
        `${run.inputName} is refused: its files inflate to ${inflated.toLocaleString('en-US')} bytes, more than the limit of ${pipeline.zip.maxInflatedBytes.toLocaleString('en-US')} (zip.maxInflatedBytes). Split it into smaller zips.`,
        { file: run.inputName },
      );
    }
    const refs: FileRef[] = files.map((e, n) => ({
      key: filesKeys.extracted(ctx.runId, n),
      path: numbering.take(e.fileName),
      size: e.uncompressedSize,
    }));
    let done = 0;
    await forEachConcurrent(
      files.map((e, n) => [e, n] as const),
      EXTRACT_CONCURRENCY,
      async ([e, n]) => {
        const stream = await new Promise<NodeJS.ReadableStream>((resolve, reject) =>
          zip.openReadStream(e, (err, s) => (err ? reject(err) : resolve(s))),
        ).catch((err: unknown) => {
          throw new InputError(
            `${run.inputName}: the entry "${e.fileName}" cannot be read (${err instanceof Error ? err.message : String(err)})`,
            { file: run.inputName },
          );
        });
        await ctx.store.put(refs[n]!.key, stream as import('node:stream').Readable, { contentType: 'application/octet-stream' });
        ctx.progress?.({ stage: 'list', done: ++done, total: files.length });
      },
    );
    return refs;
  } finally {
    zip.close();
  }
}

/** The manifest's keys as work items; each key must lie under the pipeline's intake folder. */
async function listManifest(
  ctx: StageContext,
  run: RunRecord,
  pipeline: FilesPipelineConfig,
  numbering: NameNumbering,
): Promise<FileRef[]> {
  const text = (await ctx.store.getBytes(run.inputKey)).toString('utf8');
  const base = posix.dirname(run.inputKey);
  // A pull's manifest `intake/<p>/<source>-<pullId>.txt` lists `intake/<p>/<source>/<name>`: paths are relative to that folder.
  const pulled = /^(.+)-\d{8}T\d{6}Z-[0-9a-f]{6}\.txt$/.exec(posix.basename(run.inputKey));
  const relativeTo = pulled ? `${base}/${pulled[1]}/` : `${base}/`;
  const intake = keys.intakePrefix(pipeline.name);
  const refs: FileRef[] = [];
  const lines = text.split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    const key = raw.trim();
    if (key === '' || key.startsWith('#')) continue;
    const why = escapeReason(key);
    if (why || !key.startsWith(intake)) {
      throw new InputError(
        `${run.inputName}, line ${i + 1}: the key "${key}" ${why ?? `is not under ${intake}`}. A manifest lists objects of the pipeline's own intake folder, one key per line.`,
        { file: run.inputName, row: i + 1 },
      );
    }
    const path = key.startsWith(relativeTo) ? key.slice(relativeTo.length) : key.slice(intake.length);
    refs.push({ key, path: numbering.take(path) });
  }
  return refs;
}

export async function runList(ctx: StageContext): Promise<ListResult> {
  const run = await ctx.table.getRun(ctx.runId);
  if (!run?.config) throw new Error(`run ${ctx.runId} does not exist in the run table, or has no pipeline`);
  const pipeline = requireShape(run.config, 'files');
  if (run.status === 'FAILED' || run.status === 'SUCCEEDED') {
    ctx.log.info('run has ended; nothing to list', { status: run.status });
    return { files: run.counts?.items ?? 0, chunks: run.counts?.chunks ?? 0, renamed: 0 };
  }
  await moveRun(ctx.table, ctx.runId, 'LISTING', { from: ['STARTED', 'LISTING'] });
  const numbering = new NameNumbering();
  const tmp = await mkdtemp(join(ctx.tmpDir, 'list-'));
  let refs: FileRef[];
  try {
    const ext = posix.extname(run.inputName).toLowerCase();
    refs = ext === '.zip' ? await listZip(ctx, run, pipeline, tmp, numbering) : await listManifest(ctx, run, pipeline, numbering);
  } catch (err) {
    if (err instanceof Error && err.name === 'ObjectNotFoundError') {
      throw new InputError(
        `${run.inputName} is no longer in the bucket (it was deleted or replaced before it could be read). Upload it again.`,
        { file: run.inputName },
      );
    }
    throw err;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  if (refs.length === 0) {
    throw new InputError(`${run.inputName} holds no files. Upload a zip of the files to convert, or a manifest listing their keys.`, {
      file: run.inputName,
    });
  }
  const chunkCount = Math.ceil(refs.length / pipeline.chunkSize);
  if (chunkCount > MAX_ARRAY_SIZE) {
    throw new InputError(
      `${run.inputName} holds ${refs.length} files: more than ${MAX_ARRAY_SIZE} chunks of ${pipeline.chunkSize}. Raise chunkSize or split the batch.`,
      { file: run.inputName },
    );
  }
  const now = nowOf(ctx);
  const chunks: ChunkRecord[] = [];
  for (let n = 0; n < chunkCount; n++) {
    const slice = refs.slice(n * pipeline.chunkSize, (n + 1) * pipeline.chunkSize);
    const items: WorkItem[] = slice.map((ref, j) => {
      const i = n * pipeline.chunkSize + j;
      return { i, k: ref.path, r: [i + 1], d: [{ key: ref.key, path: ref.path, size: ref.size ?? null }] };
    });
    await ctx.store.put(keys.chunk(ctx.runId, n), toJsonl(items), { contentType: 'application/x-ndjson' });
    chunks.push(pendingChunk(ctx.runId, n, slice.length, now));
  }
  const notes: ListNotes = { renamed: numbering.renamed };
  await ctx.store.put(filesKeys.notes(ctx.runId), JSON.stringify(notes), { contentType: 'application/json' });
  await ctx.table.putChunks(chunks);
  await ctx.table.updateRun(ctx.runId, {
    counts: { rows: refs.length, items: refs.length, chunks: chunkCount, succeeded: 0, failed: 0, retries: 0 },
    splitDoneAt: now,
  });
  await ctx.notifier.publishSplitDone({ runId: ctx.runId, pipeline: pipeline.name, chunks: chunkCount, items: refs.length });
  const result = { files: refs.length, chunks: chunkCount, renamed: numbering.renamed.length };
  ctx.log.info('list done', result);
  return result;
}
