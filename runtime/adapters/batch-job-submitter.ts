/**
 * JobSubmitter on AWS Batch (SDK v3 SubmitJob). The job queue and the job definition of each
 * stage are looked up by pipeline (JobTargets: an SSM parameter per pipeline on AWS); the run id
 * reaches the container as FANOUT_RUN_ID.
 */
import { SubmitJobCommand, type BatchClient, type SubmitJobCommandInput } from '@aws-sdk/client-batch';
import { MAX_ARRAY_SIZE } from '../config/schema';
import { EnvironmentError } from '../errors';
import type { JobRequest, JobSubmitter } from '../ports';
import { failedCallMessage } from './sdk-errors';
import type { JobTargets } from './ssm-job-targets';

const JOB_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

export interface BatchJobSubmitterOptions {
  /** Job queue and job definition ARNs of each pipeline. */
  targets: JobTargets;
}

/** Tag keys put on every job (and propagated to its ECS tasks). */
export const JOB_TAGS = { run: 'batch-fanout:run', pipeline: 'batch-fanout:pipeline' } as const;

export class BatchJobSubmitter implements JobSubmitter {
  constructor(
    private readonly client: BatchClient,
    private readonly opts: BatchJobSubmitterOptions,
  ) {}

  /** The SubmitJob input for a job request (validated). */
  async buildInput(job: JobRequest): Promise<SubmitJobCommandInput> {
    const targets = await this.opts.targets.forPipeline(job.pipeline);
    const jobQueue = targets.queue;
    const jobDefinition = targets.definitions[job.stage];
    if (!jobDefinition) {
      throw new EnvironmentError(
        `no job definition for stage "${job.stage}" of pipeline "${job.pipeline}" (it has: ${Object.keys(targets.definitions).join(', ') || 'none'})`,
      );
    }
    if (!JOB_NAME.test(job.name)) {
      throw new Error(
        `job name "${job.name}" is not valid for AWS Batch: up to 128 letters, digits, hyphens and underscores, starting with a letter or digit`,
      );
    }
    const size = job.arraySize;
    if (size !== undefined && (!Number.isInteger(size) || size < 1 || size > MAX_ARRAY_SIZE)) {
      throw new Error(
        `array size ${size} of job ${job.name} is out of range: AWS Batch runs 2..${MAX_ARRAY_SIZE} children (1 is a plain job)`,
      );
    }
    const environment = [
      { name: 'FANOUT_RUN_ID', value: job.runId },
      ...Object.entries(job.environment ?? {})
        .filter(([name]) => name !== 'FANOUT_RUN_ID')
        .map(([name, value]) => ({ name, value })),
    ];
    return {
      jobName: job.name,
      jobQueue,
      jobDefinition,
      ...(size !== undefined && size >= 2 ? { arrayProperties: { size } } : {}),
      // No `type`: a dependency on an array job waits for all of its children.
      ...(job.dependsOn && job.dependsOn.length > 0 ? { dependsOn: job.dependsOn.map((jobId) => ({ jobId })) } : {}),
      containerOverrides: { environment },
      parameters: { runId: job.runId, stage: job.stage, pipeline: job.pipeline },
      tags: { [JOB_TAGS.run]: job.runId, [JOB_TAGS.pipeline]: job.pipeline },
      propagateTags: true,
    };
  }

  async submit(job: JobRequest): Promise<{ jobId: string }> {
    const input = await this.buildInput(job);
    try {
      const res = await this.client.send(new SubmitJobCommand(input));
      if (!res.jobId) throw new Error('the response has no jobId');
      return { jobId: res.jobId };
    } catch (err) {
      throw new Error(
        failedCallMessage(`AWS Batch SubmitJob of ${job.stage} job ${job.name} (run ${job.runId}, queue ${input.jobQueue})`, err),
        { cause: err },
      );
    }
  }
}
