/**
 * What the event handlers need, as ports: the same handler code runs in Lambda (SDK adapters)
 * and in a local run (the same adapters against emulators, the local job runner).
 */
import type { AppConfig } from '../config/schema';
import type { Logger } from '../log';
import type { JobSubmitter, Mailer, ObjectStore, RunTable } from '../ports';

export interface HandlerDeps {
  config: AppConfig;
  store: ObjectStore;
  table: RunTable;
  jobs: JobSubmitter;
  mailer: Mailer;
  log: Logger;
  /** Clock, epoch milliseconds. */
  now?: () => number;
}

export const nowOf = (deps: { now?: () => number }) => (deps.now ?? Date.now)();

/** A Batch job name: `[A-Za-z0-9_-]`, at most 128 characters. */
export function jobName(pipeline: string, stage: string, runId: string): string {
  return `fanout-${pipeline}-${stage}-${runId}`.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 128);
}
