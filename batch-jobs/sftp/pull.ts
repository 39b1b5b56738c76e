/**
 * One pull of an SFTP source: lists the remote folder, takes the files that match the glob and
 * are old enough (a younger file may still be being written: it is left for the next pull),
 * claims each file version in the ledger (a conditional write, so overlapping or repeated pulls
 * copy a file once, and a changed file again), streams it to a temporary key, checks its size,
 * then copies it into `intake/<pipeline>/<source>/<name>` with its remote path, size and time as
 * metadata. A dropped connection leaves nothing in intake/: the temporary object is deleted and
 * the claim released, so the next pull copies the file. After a copy the remote file is kept,
 * deleted or moved, as the source says.
 *
 * An `items` pipeline starts a run per copied file (the intake event, as for an upload). For a
 * `files` pipeline the pull writes a manifest of what it copied, `intake/<pipeline>/<source>-<pullId>.txt`,
 * which starts one run for the batch.
 */
import { randomBytes } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { pipeline as pump } from 'node:stream/promises';
import type { PipelineShape } from '../../runtime/config/schema';
import { globToRegExp, type SftpSourceConfig } from '../../runtime/config/sources-schema';
import { errorMessage } from '../../runtime/errors';
import type { Logger } from '../../runtime/log';
import { forEachConcurrent } from '../../runtime/pool';
import type { ObjectStore, SourceLedger } from '../../runtime/ports';
import type { RemoteFile } from './sftp-session';

/** What a pull needs of a connection (SftpSession, or anything that behaves like it). */
export interface RemoteFolder {
  list(folder: string): Promise<RemoteFile[]>;
  read(path: string): Readable;
  remove(path: string): Promise<void>;
  move(path: string, folder: string): Promise<string>;
}

export interface PullDeps {
  store: ObjectStore;
  ledger: SourceLedger;
  log: Logger;
  now?: () => number;
  signal?: AbortSignal;
  /** Test hook: called as bytes of a file arrive (a test drops the connection from here). */
  onBytes?: (file: RemoteFile, bytes: number) => void;
}

export interface PulledFile {
  path: string;
  key: string;
  size: number;
  mtime: number;
  /** What happened to the remote file afterwards. */
  after: 'kept' | 'deleted' | `moved to ${string}`;
}

export interface PullResult {
  source: string;
  pipeline: string;
  pullId: string;
  listed: number;
  copied: PulledFile[];
  /** Matching files copied by an earlier (or a concurrent) pull, unchanged since. */
  unchanged: string[];
  /** Matching files younger than `minAgeSeconds`, left for the next pull. */
  tooYoung: string[];
  /** Files whose copy failed, with the reason; the next pull tries them again. */
  failed: Array<{ path: string; error: string }>;
  /** The manifest that starts the run of a files pipeline's batch. */
  manifestKey?: string;
}

/** A claim older than this is a pull that died: another pull may take the file over. */
export const STALE_CLAIM_MS = 60 * 60 * 1000;

/** `20261201T023000Z-3fa9c1`: sortable, unique per pull. */
export function newPullId(now: number): string {
  return `${new Date(now)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
}

export const pulledKey = (pipeline: string, source: string, name: string) => `intake/${pipeline}/${source}/${name}`;
export const manifestKey = (pipeline: string, source: string, pullId: string) => `intake/${pipeline}/${source}-${pullId}.txt`;
const tempKey = (source: string, pullId: string, n: number) => `work/pulls/${source}/${pullId}/${n}.part`;

/** S3 metadata is ASCII: non-ASCII characters of a remote path are percent-encoded. */
const ascii = (s: string) => s.replace(/[^\x20-\x7e]/g, (c) => encodeURIComponent(c));

export async function runPull(source: SftpSourceConfig, shape: PipelineShape, remote: RemoteFolder, deps: PullDeps): Promise<PullResult> {
  const now = deps.now ?? Date.now;
  const pullId = newPullId(now());
  const log = deps.log.child({ source: source.name, pipeline: source.pipeline, pullId });
  const glob = globToRegExp(source.glob);
  const listing = await remote.list(source.folder);
  const result: PullResult = {
    source: source.name,
    pipeline: source.pipeline,
    pullId,
    listed: listing.length,
    copied: [],
    unchanged: [],
    tooYoung: [],
    failed: [],
  };
  const matching = listing.filter((f) => glob.test(f.name)).sort((a, b) => a.name.localeCompare(b.name));
  const oldEnough = matching.filter((f) => {
    const young = now() - f.mtime * 1000 < source.minAgeSeconds * 1000;
    if (young) result.tooYoung.push(f.path);
    return !young;
  });
  let n = 0;
  await forEachConcurrent(oldEnough, source.concurrency, async (file) => {
    if (deps.signal?.aborted) return;
    const version = `${file.size}:${file.mtime}`;
    if (!(await deps.ledger.claim(source.name, file.path, version, pullId, now(), STALE_CLAIM_MS))) {
      result.unchanged.push(file.path);
      return;
    }
    const temp = tempKey(source.name, pullId, n++);
    const key = pulledKey(source.pipeline, source.name, file.name);
    try {
      let bytes = 0;
      const counter = new Transform({
        transform(chunk: Buffer, _enc, done) {
          bytes += chunk.length;
          deps.onBytes?.(file, bytes);
          done(null, chunk);
        },
      });
      const body = remote.read(file.path);
      const copying = deps.store.put(temp, counter, { contentType: 'application/octet-stream' });
      // Both settle before anything else happens: an aborted upload must be over before its temp object is deleted.
      const [read, written] = await Promise.allSettled([pump(body, counter), copying]);
      if (read.status === 'rejected') throw read.reason;
      if (written.status === 'rejected') throw written.reason;
      if (bytes !== file.size) {
        throw new Error(`read ${bytes} of its ${file.size} bytes (the connection closed early, or the file changed during the copy)`);
      }
      if (!deps.store.copy) throw new Error('this object store cannot copy objects');
      await deps.store.copy(temp, key, {
        metadata: {
          'remote-path': ascii(file.path),
          'remote-size': String(file.size),
          'remote-mtime': new Date(file.mtime * 1000).toISOString(),
          source: source.name,
          'pull-id': pullId,
        },
      });
    } catch (err) {
      await deps.ledger.release(source.name, file.path, pullId).catch(() => undefined);
      result.failed.push({ path: file.path, error: errorMessage(err) });
      log.warn('copy failed; the next pull tries again', { path: file.path, error: errorMessage(err) });
      return;
    } finally {
      await deps.store.deleteMany([temp]).catch(() => undefined);
    }
    await deps.ledger.markCopied(source.name, file.path, pullId, key, now());
    let after: PulledFile['after'] = 'kept';
    try {
      if (source.afterCopy === 'delete') {
        await remote.remove(file.path);
        after = 'deleted';
      } else if (source.afterCopy !== 'keep') {
        after = `moved to ${await remote.move(file.path, source.afterCopy.moveTo)}`;
      }
    } catch (err) {
      // The copy stands (the ledger keeps it from being copied again); the partner's folder keeps the file.
      log.warn('copied, but could not clean up the remote file', { path: file.path, error: errorMessage(err) });
      result.failed.push({ path: file.path, error: `copied to ${key}, but ${errorMessage(err)}` });
    }
    result.copied.push({ path: file.path, key, size: file.size, mtime: file.mtime, after });
  });
  result.copied.sort((a, b) => a.path.localeCompare(b.path));
  if (shape === 'files' && result.copied.length > 0) {
    result.manifestKey = manifestKey(source.pipeline, source.name, pullId);
    await deps.store.put(result.manifestKey, `${result.copied.map((c) => c.key).join('\n')}\n`, {
      contentType: 'text/plain; charset=utf-8',
    });
  }
  log.info('pull done', {
    listed: result.listed,
    copied: result.copied.length,
    unchanged: result.unchanged.length,
    tooYoung: result.tooYoung.length,
    failed: result.failed.length,
    manifestKey: result.manifestKey,
  });
  return result;
}
