/**
 * Runs a per-file task inside the fan-out stage: a file work item (`d[0]` = its FileRef) is handed
 * to the FileTask with its own FileTaskIo (read this file, write under this run's result folder),
 * and the result comes back as the item's fields. So files get the fan-out stage's concurrency,
 * retries, result parts and resume without a second copy of that machinery.
 *
 * Storage trouble while reading or writing one file is retried (TransientError); a file missing
 * from the bucket or over the size limit fails that file only.
 */
import { Transform } from 'node:stream';
import { pipeline as pump } from 'node:stream/promises';
import type { FilesPipelineConfig } from '../../runtime/config/schema';
import { errorMessage, StorageError, TransientError } from '../../runtime/errors';
import type { Row, WorkItem } from '../../runtime/model';
import type { ObjectStore } from '../../runtime/ports';
import { FileFailure, type FileRef, type FileTask, type FileTaskIo } from './file-task';
import type { Task } from './task';
import { createXmlToJsonTask } from './xml-to-json';

/** Result fields of a file, as the summary reads them. */
export const FILE_FIELDS = { output: 'Output', bytesIn: 'Bytes in', bytesOut: 'Bytes out' } as const;

export function createFileTask(config: FilesPipelineConfig['task']): FileTask {
  switch (config.type) {
    case 'xml-to-json':
      return createXmlToJsonTask(config);
  }
}

export function fileRefOf(item: WorkItem): FileRef {
  const d = item.d[0] ?? {};
  return { key: String(d.key), path: String(d.path), size: typeof d.size === 'number' ? d.size : undefined };
}

const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

/** The object-store access of one file: its input, and outputs under `outputPrefix`. */
export function fileIo(store: Pick<ObjectStore, 'getStream' | 'put'>, file: FileRef, outputPrefix: string): FileTaskIo {
  const storage = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof FileFailure) throw err;
      if (err instanceof Error && err.name === 'ObjectNotFoundError')
        throw new FileFailure(`${file.key} is not in the bucket (deleted before it could be read)`);
      if (err instanceof StorageError) throw new TransientError(`${what}: ${err.message}`);
      throw err;
    }
  };
  return {
    read: (maxBytes) =>
      storage(`reading ${file.key}`, async () => {
        if (file.size !== undefined && file.size > maxBytes) {
          throw new FileFailure(`the file is ${mb(file.size)}, over the limit of ${mb(maxBytes)} (task.maxFileBytes)`);
        }
        const parts: Buffer[] = [];
        let total = 0;
        const limit = new Transform({
          transform(chunk: Buffer, _enc, done) {
            total += chunk.length;
            if (total > maxBytes) return done(new FileFailure(`the file is over the limit of ${mb(maxBytes)} (task.maxFileBytes)`));
            parts.push(chunk);
            done();
          },
        });
        await pump(await store.getStream(file.key), limit);
        return Buffer.concat(parts, total);
      }),
    write: (relativePath, body, contentType) =>
      storage(`writing the output of ${file.path}`, async () => {
        const key = `${outputPrefix}${relativePath}`;
        await store.put(key, typeof body === 'string' ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength), { contentType });
        return key;
      }),
  };
}

/** The FileTask as an item task for the fan-out stage. */
export function fileTaskAsItemTask(task: FileTask, deps: { store: ObjectStore; outputPrefix: string }): Task {
  return {
    output: { rowColumns: [] },
    async run(item, ctx) {
      const file = fileRefOf(item);
      const r = await task.run(file, { ...ctx, io: fileIo(deps.store, file, deps.outputPrefix) }).catch((err: unknown) => {
        if (err instanceof FileFailure || err instanceof TransientError) throw err;
        throw new FileFailure(`could not convert the file: ${errorMessage(err)}`);
      });
      const fields: Row = { [FILE_FIELDS.output]: r.outputKey, [FILE_FIELDS.bytesIn]: r.bytesIn, [FILE_FIELDS.bytesOut]: r.bytesOut };
      return { fields };
    },
    close: () => task.close?.() ?? Promise.resolve(),
  };
}
