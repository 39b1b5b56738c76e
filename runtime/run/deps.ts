/**
 * What the event handlers need, as ports: the same handler code runs in Lambda (SDK adapters)
 * and in a local run (the same adapters against emulators, the local job runner).
 */
import type { AppConfig, PipelineConfig } from '../config/schema';
import type { Logger } from '../log';
import type { SubmissionEnvironment } from '../env';
import type { Step } from '../lifecycle';
import type { JobStage, RunRecord } from '../model';
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

/** One job of a chain: the step it is recorded under in the run record, and what it runs. */
export interface ChainLink {
  step: Step;
  stage: JobStage;
  /** Word in the job name. @default - the stage */
  label?: string;
  arraySize?: number;
  /** What the job's environment gets beside its job definition's (runtime/env.ts). @default - nothing */
  environment?: SubmissionEnvironment;
}

/**
 * Submits jobs of a run one after another, each depending on the one before (the first on
 * `after`, when given), and records each job id under its step. Returns the job ids.
 */
export async function submitChain(
  deps: Pick<HandlerDeps, 'jobs' | 'table'>,
  run: Pick<RunRecord, 'runId' | 'pipeline'> & { config: Pick<PipelineConfig, 'compute'> },
  links: ChainLink[],
  after?: string,
): Promise<string[]> {
  const ids: string[] = [];
  let previous = after;
  for (const link of links) {
    const { jobId } = await deps.jobs.submit({
      name: jobName(run.pipeline, link.label ?? link.stage, run.runId),
      stage: link.stage,
      runId: run.runId,
      pipeline: run.pipeline,
      compute: run.config.compute,
      arraySize: link.arraySize,
      environment: link.environment,
      dependsOn: previous === undefined ? undefined : [previous],
    });
    await deps.table.setStep(run.runId, link.step, jobId);
    ids.push(jobId);
    previous = jobId;
  }
  return ids;
}
