/**
 * What a run keeps after cleanup so that `fanout redrive` can run its failed items again: every
 * item (its rows, as split made it) with its outcome, in input order, as gzipped JSON Lines under
 * `history/<runId>/outcomes.jsonl.gz` (the bucket expires `history/` with the results). Written
 * by consolidate while it streams the workbook; about the size of the result workbook.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import type { ResultLine, WorkItem } from '../../runtime/model';
import type { ObjectStore } from '../../runtime/ports';
import { readJsonl } from '../records/jsonl';

/** One line of the archive: the work item and its outcome (`o`). */
export interface ArchivedItem extends WorkItem {
  o: ResultLine;
}

export interface OutcomesArchiveWriter {
  add(item: WorkItem, outcome: ResultLine): Promise<void>;
  /** Closes the file and uploads it; answers the object key. */
  finish(store: ObjectStore, key: string): Promise<string>;
  abort(): void;
}

export function createOutcomesArchive(dir: string): OutcomesArchiveWriter {
  const path = join(dir, 'outcomes.jsonl.gz');
  const gzip = createGzip({ level: 6 });
  const file = createWriteStream(path);
  gzip.pipe(file);
  return {
    async add(item, outcome) {
      const line: ArchivedItem = { ...item, o: outcome };
      if (!gzip.write(`${JSON.stringify(line)}\n`)) await new Promise((r) => gzip.once('drain', r));
    },
    async finish(store, key) {
      gzip.end();
      await finished(file);
      await store.put(key, createReadStream(path), { contentType: 'application/gzip' });
      return key;
    },
    abort() {
      gzip.destroy();
      file.destroy();
    },
  };
}

/** The archived items of a run, in input order. */
export async function* readOutcomesArchive(store: ObjectStore, key: string): AsyncIterable<ArchivedItem> {
  const stream = (await store.getStream(key)).pipe(createGunzip());
  yield* readJsonl<ArchivedItem>(stream, key);
}
