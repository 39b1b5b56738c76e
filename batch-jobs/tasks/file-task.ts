/**
 * What a per-file task is (the `files` shape): called once per file, per attempt, with access to
 * that file's bytes and a place to write its output, and nothing else of the object store. The
 * fan-out stage owns concurrency, retries and result parts, as for item tasks (task.ts); a file
 * task makes one attempt and returns what it wrote, or throws FileFailure (the file fails with
 * that reason, not retried) or TransientError (retried).
 */
import { PermanentError } from '../../runtime/errors';

/** One file of a batch: where its bytes are and its path relative to the batch. */
export interface FileRef {
  /** Object key of the input bytes. */
  key: string;
  /** Path relative to the batch (a zip entry's name, a pulled file's name, a manifest key). */
  path: string;
  /** Size in bytes, when known from the listing. */
  size?: number;
}

/** A file's own place in the object store: its input, and its outputs under the run's result folder. */
export interface FileTaskIo {
  /** The input's bytes; throws FileFailure when it passes `maxBytes` (reading stops there). */
  read(maxBytes: number): Promise<Buffer>;
  /** Writes an output at `results/<pipeline>/<runId>/<relativePath>`; returns the object key. */
  write(relativePath: string, body: string | Uint8Array, contentType: string): Promise<string>;
}

export interface FileTaskContext {
  /** 1 for the first call of this file. */
  attempt: number;
  signal: AbortSignal;
  io: FileTaskIo;
}

export interface FileTaskResult {
  /** Key of the output written. */
  outputKey: string;
  bytesIn: number;
  bytesOut: number;
}

export interface FileTask {
  run(file: FileRef, ctx: FileTaskContext): Promise<FileTaskResult>;
  close?(): Promise<void>;
}

/** Where in a file a problem is (1-based, as editors show it). */
export interface FilePosition {
  line?: number;
  column?: number;
}

/** The file cannot be converted; the message says what and where. Final: never retried. */
export class FileFailure extends PermanentError {
  constructor(
    message: string,
    readonly position: FilePosition = {},
  ) {
    super(
      position.line !== undefined
        ? `${message} (line ${position.line}${position.column !== undefined ? `, column ${position.column}` : ''})`
        : message,
    );
  }
}

/** Reads `line N, column M` back out of a failure message (result lines keep only the text). */
export function positionOf(message: string): FilePosition {
  const m = /\(line (\d+)(?:, column (\d+))?\)$/.exec(message);
  if (!m) return {};
  return { line: Number(m[1]), column: m[2] === undefined ? undefined : Number(m[2]) };
}

/** `a/b/order.xml` -> `a/b/order.json`; a name without `.xml` keeps its name and gains `.json`. */
export function outputPathFor(path: string, ext: string): string {
  return /\.xml$/i.test(path) ? path.replace(/\.xml$/i, ext) : `${path}${ext}`;
}
