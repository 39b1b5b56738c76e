/**
 * What a run of a `dataset` pipeline (the keyed merge) records beside the common run fields: its
 * batch folder, which object is which input, the files it ignored, what it still waits for, and
 * the merge's counts. Written by the intake handler and the merge stage, read by the emails, the
 * local CLI and cleanup.
 */
import type { MergeRole } from './config/merge-schema';

/** Counts a merge reports (email, summary sheet, run record). */
export interface MergeCounts {
  leftRows: number;
  rightRows: number;
  outputRows: number;
  /** Left rows whose key matched no right row (empty keys included). */
  leftUnmatched: number;
  /** Right rows whose key matched no left row (empty keys included). */
  rightUnmatched: number;
  /** Distinct keys found more than once on both sides (each such key gives every pair). */
  keysDuplicatedBothSides: number;
  /** Rows with an empty key column, per side: they never match. */
  leftEmptyKeys: number;
  rightEmptyKeys: number;
}

export interface DatasetRunInfo {
  /** Batch folder name: `intake/<pipeline>/<batch>/`. */
  batch: string;
  /** The batch folder's prefix. */
  prefix: string;
  /** Object key of each input that has arrived. */
  inputs: Partial<Record<MergeRole, string>>;
  /** Objects in the batch folder that are no input (ignored; named in the email). */
  ignored: string[];
  /** Inputs not arrived yet, for a person: `right input y_list.txt`. */
  waitingFor?: string[];
  /** When a batch still waiting for inputs ends FAILED (epoch ms): its first file's time plus the pipeline's `inputDeadlineHours`. */
  deadlineAt?: number;
  /** The merge's counts, once it ran. */
  counts?: MergeCounts;
  /** Output objects: the CSV/TSV file (DuckDB) or the part files' manifest (Spark), then the workbook if any. */
  outputKeys?: string[];
  /** The engine's own job id (an EMR Serverless job run). */
  engineRunId?: string;
}

/** Where a merge's files go. */
export const datasetKeys = {
  /** `results/<pipeline>/<batch>/<name>.<ext>` (DuckDB), or a folder of parts `.../<name>/` (Spark). */
  output: (pipeline: string, batch: string, name: string, ext: string) => `results/${pipeline}/${batch}/${name}.${ext}`,
  outputParts: (pipeline: string, batch: string, name: string) => `results/${pipeline}/${batch}/${name}/`,
  manifest: (pipeline: string, batch: string, name: string) => `results/${pipeline}/${batch}/${name}.manifest.json`,
  workbook: (pipeline: string, batch: string, name: string) => `results/${pipeline}/${batch}/${name}.xlsx`,
  sparkScript: (runId: string) => `work/${runId}/spark/merge.sql`,
  sparkRunner: (runId: string) => `work/${runId}/spark/run_sql.py`,
  sparkStats: (runId: string) => `work/${runId}/spark/stats/`,
  sparkLogs: (runId: string) => `work/${runId}/spark/logs/`,
};
