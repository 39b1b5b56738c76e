/**
 * The one place the ports are wired: from an entry point's parsed environment (runtime/env.ts) to
 * the AWS SDK adapters. The Lambda handlers (lambda/runtime-deps.ts), the job stages
 * (batch-jobs/main.ts) and the local run (local/local-run.ts, against its emulators) all build
 * their ports here, so the same settings mean the same adapters everywhere.
 */
import { BatchJobSubmitter } from './adapters/batch-job-submitter';
import { createAwsClients, type AwsClients, type AwsClientsOptions } from './adapters/clients';
import { DynamoRunTable } from './adapters/dynamo-run-table';
import { S3ObjectStore } from './adapters/s3-object-store';
import { SES_MAX_MESSAGE_BYTES, SesMailer } from './adapters/ses-mailer';
import { SnsSplitDoneNotifier } from './adapters/sns-notifier';
import { SsmJobTargets } from './adapters/ssm-job-targets';
import type { Env } from './env';
import type { JobSubmitter, Mailer, ObjectStore, RunTable, SplitDoneNotifier } from './ports';

/** What the ports are built from: the parsed variables of runtime/env.ts that name their resources. */
export interface PortsEnvironment {
  readonly FANOUT_BUCKET: string;
  readonly FANOUT_TABLE: string;
  /** Largest email the mail service takes. @default SES's 40 MiB */
  readonly FANOUT_MAIL_MAX_BYTES?: number;
  /** SSM parameter prefix of each pipeline's job queue and definitions: jobs are submitted to AWS Batch. @default - no job submitter */
  readonly FANOUT_JOB_TARGETS_PREFIX?: string;
  /** SNS topic "split done" is published to. @default - no split-done notifier */
  readonly FANOUT_SPLIT_DONE_TOPIC_ARN?: string;
}

/** An environment that names the Batch queues and job definitions, so its ports submit jobs. */
type WithBatch = Required<Pick<PortsEnvironment, 'FANOUT_JOB_TARGETS_PREFIX'>>;

export interface Ports<E extends PortsEnvironment = PortsEnvironment> {
  readonly clients: AwsClients;
  readonly store: ObjectStore;
  readonly table: RunTable;
  readonly mailer: Mailer;
  /** AWS Batch, when the environment names queues and job definitions (the Lambda handlers). */
  readonly jobs: E extends WithBatch ? JobSubmitter : JobSubmitter | undefined;
  /** SNS, when the environment names the split-done topic (the split job on AWS). */
  readonly splitDone: SplitDoneNotifier | undefined;
}

/**
 * Builds the ports named by `env`. `sdkEnv` holds the AWS SDK's own variables (region,
 * credentials, `AWS_ENDPOINT_URL_<SERVICE>`), which the clients read as the SDK defines them; SDK
 * clients are created on first use, once. `options.onCall` is told of every SDK call (a local
 * run's IAM check).
 */
export function createPorts<E extends PortsEnvironment>(env: E, sdkEnv: Env, options: AwsClientsOptions = {}): Ports<E> {
  const clients = createAwsClients(sdkEnv, options);
  const targetsPrefix = env.FANOUT_JOB_TARGETS_PREFIX;
  const topicArn = env.FANOUT_SPLIT_DONE_TOPIC_ARN;
  return {
    clients,
    store: new S3ObjectStore(clients.s3, env.FANOUT_BUCKET),
    table: new DynamoRunTable(clients.dynamo, env.FANOUT_TABLE),
    mailer: new SesMailer(clients.ses, { maxMessageBytes: env.FANOUT_MAIL_MAX_BYTES ?? SES_MAX_MESSAGE_BYTES }),
    jobs: (targetsPrefix
      ? new BatchJobSubmitter(clients.batch, { targets: new SsmJobTargets(clients.ssm, targetsPrefix) })
      : undefined) as Ports<E>['jobs'],
    splitDone: topicArn ? new SnsSplitDoneNotifier(clients.sns, topicArn) : undefined,
  };
}
