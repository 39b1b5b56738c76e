/**
 * What a job stage runs with: the ports, the run it works on, and its place in an array job.
 * Built once by batch-jobs/main.ts from the environment; tests build it directly.
 */
import type { JobEnv } from '../../runtime/env';
import type { Logger } from '../../runtime/log';
import type { Mailer, ObjectStore, RunTable, SplitDoneNotifier } from '../../runtime/ports';

export interface ProgressReport {
  stage: string;
  /** Array index of a fan-out child. */
  index?: number;
  done: number;
  total: number;
}

export interface StageContext {
  runId: string;
  store: ObjectStore;
  table: RunTable;
  mailer: Mailer;
  notifier: SplitDoneNotifier;
  log: Logger;
  /**
   * The job's environment, parsed (batch-jobs/main.ts, schema in runtime/env.ts); stages read
   * their settings from it (FANOUT_MAX_CHILDREN, FANOUT_PARTIAL). Tests give what the stage reads.
   */
  env: Partial<JobEnv>;
  /** AWS_BATCH_JOB_ARRAY_INDEX; 0 for a plain job. */
  arrayIndex: number;
  /** AWS_BATCH_JOB_ATTEMPT; 1 for the first attempt. */
  attempt: number;
  /** Scratch directory for spill and output files (the stage removes what it makes). */
  tmpDir: string;
  /** Aborted on SIGTERM (Spot reclaim, job timeout): stop starting work, save what is done. */
  signal: AbortSignal;
  /** Progress for a terminal (local runs); optional. */
  progress?: (report: ProgressReport) => void;
  now?: () => number;
  /** Days a presigned result link stays valid. */
  resultLinkDays: number;
}

export const nowOf = (ctx: { now?: () => number }) => (ctx.now ?? Date.now)();
