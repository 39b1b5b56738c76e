/**
 * The EMR Serverless engine's adapter (SDK v3): starts a Spark job run of the PySpark runner on
 * the pipeline's merge script and waits for its final state. The client token is derived from the
 * run id, so a retried merge job (Spot reclaim) gets the same job run instead of a second one.
 * Only job stages use it (the merge stage on Batch), so it lives beside the engines.
 */
import {
  GetJobRunCommand,
  StartJobRunCommand,
  type EMRServerlessClient,
  type JobRunState,
  type StartJobRunCommandInput,
} from '@aws-sdk/client-emr-serverless';
import { failedCallMessage } from '../../runtime/adapters/sdk-errors';
import { TerminatedError } from '../../runtime/errors';

/** The PySpark entry point: runs each statement of a script written by `sparkMergeScript`. */
export const SPARK_RUNNER_PY = `# batch-fanout: runs the statements of a Spark SQL script (argv[1], an s3:// URI), one by one.
import sys
from pyspark.sql import SparkSession

SEPARATOR = "\\n-- fanout:statement\\n"

spark = SparkSession.builder.appName("batch-fanout merge").getOrCreate()
script = "".join(spark.sparkContext.wholeTextFiles(sys.argv[1]).values().collect())
for statement in script.split(SEPARATOR):
    if statement.strip():
        spark.sql(statement)
spark.stop()
`;

export interface EmrServerlessOptions {
  /** The EMR Serverless application (FANOUT_EMR_APPLICATION_ID). */
  applicationId: string;
  /** The job runtime role (FANOUT_EMR_JOB_ROLE_ARN): reads the inputs, writes the results. */
  executionRoleArn: string;
  /** Where Spark's driver and executor logs go (s3://...). @default - not kept */
  logUri?: string;
  /** Job run time limit. @default 720 (12 hours) */
  executionTimeoutMinutes?: number;
  /** Between two GetJobRun calls. @default 15000 */
  pollMs?: number;
  /** For tests: how to wait. @default setTimeout */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface SparkJob {
  /** Job run name (shown in the console). */
  name: string;
  /** Idempotency: the same token gets the same job run. */
  clientToken: string;
  /** s3:// URI of the PySpark runner. */
  entryPoint: string;
  entryPointArguments: string[];
  tags: Record<string, string>;
}

export type SparkOutcome = { state: 'SUCCESS'; jobRunId: string } | { state: 'FAILED' | 'CANCELLED'; jobRunId: string; details: string };

const FINAL: readonly JobRunState[] = ['SUCCESS', 'FAILED', 'CANCELLED'];

/** Spark's settings for a merge: adaptive execution (skewed keys, partition coalescing), Kryo. */
export const SPARK_SUBMIT_PARAMETERS = [
  '--conf spark.sql.adaptive.enabled=true',
  '--conf spark.sql.adaptive.skewJoin.enabled=true',
  '--conf spark.sql.adaptive.coalescePartitions.enabled=true',
  '--conf spark.serializer=org.apache.spark.serializer.KryoSerializer',
].join(' ');

const defaultSleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        reject(new TerminatedError('stopped while waiting for the Spark job'));
      },
      { once: true },
    );
  });

export class EmrServerlessSpark {
  constructor(
    private readonly client: EMRServerlessClient,
    private readonly opts: EmrServerlessOptions,
  ) {}

  /** The StartJobRun input of a job. */
  buildInput(job: SparkJob): StartJobRunCommandInput {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(job.clientToken)) throw new Error(`client token "${job.clientToken}" must be 1-64 of A-Za-z0-9._-`);
    return {
      applicationId: this.opts.applicationId,
      clientToken: job.clientToken,
      executionRoleArn: this.opts.executionRoleArn,
      name: job.name.slice(0, 256),
      jobDriver: {
        sparkSubmit: {
          entryPoint: job.entryPoint,
          entryPointArguments: job.entryPointArguments,
          sparkSubmitParameters: SPARK_SUBMIT_PARAMETERS,
        },
      },
      ...(this.opts.logUri
        ? { configurationOverrides: { monitoringConfiguration: { s3MonitoringConfiguration: { logUri: this.opts.logUri } } } }
        : {}),
      executionTimeoutMinutes: this.opts.executionTimeoutMinutes ?? 720,
      tags: job.tags,
    };
  }

  async start(job: SparkJob): Promise<string> {
    try {
      const res = await this.client.send(new StartJobRunCommand(this.buildInput(job)));
      if (!res.jobRunId) throw new Error('the response has no jobRunId');
      return res.jobRunId;
    } catch (err) {
      throw new Error(failedCallMessage(`EMR Serverless StartJobRun of ${job.name} (application ${this.opts.applicationId})`, err), {
        cause: err,
      });
    }
  }

  /** Polls GetJobRun until the job run is final; a signal (SIGTERM) stops the wait, not the job run. */
  async wait(jobRunId: string, signal?: AbortSignal, onState?: (state: string) => void): Promise<SparkOutcome> {
    const sleep = this.opts.sleep ?? defaultSleep;
    for (;;) {
      let state: JobRunState | undefined;
      let details = '';
      try {
        const res = await this.client.send(new GetJobRunCommand({ applicationId: this.opts.applicationId, jobRunId }));
        state = res.jobRun?.state;
        details = res.jobRun?.stateDetails ?? '';
      } catch (err) {
        throw new Error(failedCallMessage(`EMR Serverless GetJobRun ${jobRunId} (application ${this.opts.applicationId})`, err), {
          cause: err,
        });
      }
      if (state !== undefined) onState?.(state);
      if (state === 'SUCCESS') return { state, jobRunId };
      if (state !== undefined && FINAL.includes(state)) return { state: state as 'FAILED' | 'CANCELLED', jobRunId, details };
      await sleep(this.opts.pollMs ?? 15_000, signal);
    }
  }
}
