/**
 * The data model shared by every stage: records kept in the object store (chunk files, result
 * parts) and control state kept in the run table (runs, chunks). See `../shared/design.md`.
 */
import type { PipelineConfig } from './config/schema';
import type { ChunkStatus, RunStatus, Step } from './lifecycle';
import type { DatasetRunInfo } from './dataset-run';

/** A normalised cell: text, number, boolean or empty. Dates are ISO 8601 text. */
export type Cell = string | number | boolean | null;
export type Row = Record<string, Cell>;

/**
 * One work item, one line of a chunk file `work/<runId>/chunks/<n>.jsonl`.
 * Items are numbered in input order (order of first appearance when grouped).
 */
export interface WorkItem {
  /** Global item index, 0-based, in input order. */
  i: number;
  /** Group key, when the pipeline groups rows. */
  k?: string;
  /** Source row numbers as a spreadsheet shows them (the header is row 1). */
  r: number[];
  /** The rows, keyed by column name (schema name for declared columns, header text for others). */
  d: Row[];
  /**
   * Problems found in the item's cells (an empty required cell, "abc" in a number column), each
   * naming row and column. An item with problems is not sent to the task: fan-out records it
   * as failed with these reasons, so no record is dropped silently.
   */
  x?: string[];
}

export type Outcome = 'done' | 'failed';

/** One line of a result part `work/<runId>/results/<n>/<part>.jsonl`. */
export interface ResultLine {
  /** Item index (global). */
  i: number;
  s: Outcome;
  /** Item-level result fields (e.g. a trip's distance). */
  f?: Row;
  /** Per-row result fields, aligned with the item's rows. */
  p?: Row[];
  /** Why the item failed. */
  e?: string;
  /** Calls made for the item. */
  a: number;
}

/**
 * Fleet-wide limits set on a running run by `fanout limit`; they win over the pipeline's
 * `rateLimitPerSecond` and `concurrency`. Running fan-out children read them every few seconds.
 */
export interface RunLimits {
  /** Calls per second, fleet-wide. */
  ratePerSecond?: number;
  /** Calls in flight, fleet-wide. */
  concurrency?: number;
  /** Epoch milliseconds of the last change. */
  updatedAt: number;
}

export interface RunCounts {
  rows: number;
  items: number;
  chunks: number;
  succeeded: number;
  failed: number;
  retries: number;
}

/** The run record, kept after cleanup as history (with a TTL). */
export interface RunRecord {
  runId: string;
  pipeline: string;
  /** Object key of the uploaded file, e.g. intake/tax-due/customers.xlsx */
  inputKey: string;
  /** File name of the upload, e.g. customers.xlsx */
  inputName: string;
  /** Where the run is in its lifecycle (runtime/lifecycle.ts moves it; nothing else writes it). */
  status: RunStatus;
  /**
   * Pipeline config the run was opened with (stages read it from here). Absent only for an
   * upload to a folder that names no pipeline (such a run is FAILED from the start).
   */
  config?: PipelineConfig;
  sender: string;
  counts?: Partial<RunCounts>;
  /** A dataset (merge) run: its batch folder, inputs, ignored files and merge counts. */
  dataset?: DatasetRunInfo;
  /** Column names of the input, in file order (declared columns by schema name). */
  inputColumns?: string[];
  /** What split noted about reading the input (header row below a title, another sheet, an encoding); shown in the Summary. */
  inputNotes?: string[];
  /** Epoch milliseconds. */
  createdAt: number;
  splitDoneAt?: number;
  finishedAt?: number;
  cleanedAt?: number;
  /** Why the run failed, written for a person. */
  error?: string;
  resultKey?: string;
  /** Extra result files (CSV written when a sheet passes Excel's row limit). */
  extraResultKeys?: string[];
  /** Steps claimed for the run (step -> job id or marker); guards against duplicate events (runtime/lifecycle.ts). */
  steps?: Partial<Record<Step, string>>;
  /** Epoch seconds after which DynamoDB may delete the record. */
  expiresAt?: number;
  /** Live limits set by `fanout limit` (see RunLimits). */
  limits?: RunLimits;
  /** The run this one redrives (`fanout redrive`): only its failed and not processed items. */
  redriveOf?: string;
  /** Object key of the run's kept outcomes (items with their outcome), for a later redrive. */
  outcomesKey?: string;
}

/** Progress of one chunk, one item per chunk spread over partition keys. */
export interface ChunkRecord {
  runId: string;
  chunk: number;
  items: number;
  status: ChunkStatus;
  done: number;
  failed: number;
  retries: number;
  attempt: number;
  /** Highest result part number written. */
  lastPart: number;
  updatedAt: number;
}

export const keys = {
  intakePrefix: (pipeline: string) => `intake/${pipeline}/`,
  chunk: (runId: string, n: number) => `work/${runId}/chunks/${n}.jsonl`,
  chunksPrefix: (runId: string) => `work/${runId}/chunks/`,
  resultPartsPrefix: (runId: string, n: number) => `work/${runId}/results/${n}/`,
  resultPart: (runId: string, n: number, part: number) => `work/${runId}/results/${n}/${String(part).padStart(6, '0')}.jsonl`,
  workPrefix: (runId: string) => `work/${runId}/`,
  result: (pipeline: string, inputName: string, runId: string, ext = 'xlsx') =>
    keys.resultFile(pipeline, `${inputName.replace(/\.[^.]+$/, '')}.${runId}.${ext}`),
  resultFile: (pipeline: string, fileName: string) => `results/${pipeline}/${fileName}`,
  /** Every item of a run with its outcome, gzipped JSON Lines, kept after cleanup for `fanout redrive`. */
  outcomes: (runId: string) => `history/${runId}/outcomes.jsonl.gz`,
};

/** Job stages; the stage is the container's command. */
export type Stage = 'split' | 'fanout' | 'consolidate' | 'cleanup';
export const STAGES: readonly Stage[] = ['split', 'fanout', 'consolidate', 'cleanup'];
/** The job of a dataset pipeline: its engine (then cleanup, one of STAGES). */
export type DatasetStage = 'merge';
/** Every job stage a submitter may be asked for. */
export type JobStage = Stage | DatasetStage;
