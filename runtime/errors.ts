/**
 * Error classes and the process exit codes of the job stages.
 *
 * Exit codes are distinct per cause so the Batch retry strategy can tell bad input (exit at once)
 * from infrastructure trouble (retry), and so a person reading a job's status knows which it was.
 */

export const ExitCode = {
  OK: 0,
  /** The input file cannot be used as it is (missing column, empty, wrong type...). Not retried. */
  BAD_INPUT: 10,
  /** The job's environment or the pipeline config is wrong. Not retried. */
  BAD_CONFIG: 11,
  /** The object store (S3) could not be read or written. Retried. */
  STORAGE: 20,
  /** The run table (DynamoDB) could not be read or written. Retried. */
  TABLE: 21,
  /** The mail service refused or could not be reached. Retried. */
  MAIL: 22,
  /** A bug or an unexpected error. Retried. */
  INTERNAL: 70,
  /** Stopped by SIGTERM (Spot reclaim, timeout) after saving progress. Retried; the retry resumes. */
  TERMINATED: 143,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** Exit codes after which a retry cannot help. */
export const NON_RETRYABLE_EXIT_CODES: readonly number[] = [ExitCode.BAD_INPUT, ExitCode.BAD_CONFIG];

/** Where in the input a problem is. Row numbers are as a spreadsheet shows them (header = row 1). */
export interface InputLocation {
  file?: string;
  sheet?: string;
  row?: number;
  column?: string;
}

/** The input cannot be used; the message says what, where, and what to do. */
export class InputError extends Error {
  override readonly name = 'InputError';
  constructor(
    message: string,
    readonly location: InputLocation = {},
  ) {
    super(message);
  }
}

/** The job's environment is missing or wrong. */
export class EnvironmentError extends Error {
  override readonly name = 'EnvironmentError';
}

/** Storage (object store or table) failed; `exitCode` says which. */
export class StorageError extends Error {
  override readonly name = 'StorageError';
  constructor(
    message: string,
    readonly exitCode: ExitCodeValue = ExitCode.STORAGE,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The stage was asked to stop (SIGTERM) and saved what it had done. */
export class TerminatedError extends Error {
  override readonly name = 'TerminatedError';
}

export class ObjectNotFoundError extends Error {
  override readonly name = 'ObjectNotFoundError';
  constructor(readonly key: string) {
    super(`object ${key} does not exist`);
  }
}

/**
 * What a transient failure says about the data source's load: `throttled` (429), `unavailable`
 * (503) and `timeout` are the signals adaptive concurrency backs off on; `other` (a reset, another
 * 5xx, an unreadable body) is not.
 */
export type TransientKind = 'throttled' | 'unavailable' | 'timeout' | 'other';

/** The TransientKind of an HTTP status that is retried. */
export function transientKindOf(status: number): TransientKind {
  return status === 429 ? 'throttled' : status === 503 ? 'unavailable' : 'other';
}

/**
 * A call that may succeed if tried again (timeout, reset, 408, 429, 5xx, unparseable body). An
 * expected outcome, thousands a minute against a flaky source, that says what happened in its
 * message: it carries no stack trace (capturing one costs more than the rest of the error).
 */
export class TransientError extends Error {
  override readonly name = 'TransientError';
  constructor(
    message: string,
    /** Server-requested delay (Retry-After), in milliseconds. */
    readonly retryAfterMs?: number,
    /** What the failure says about the source's load. @default 'other' */
    readonly kind: TransientKind = 'other',
  ) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
  }
}

/** A call that will fail again the same way (404, other 4xx, no match): the item fails. */
export class PermanentError extends Error {
  override readonly name = 'PermanentError';
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
