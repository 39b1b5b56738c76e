/**
 * Builds the handlers' dependencies in Lambda, once per execution environment: reads and
 * validates the environment (fail fast, naming the variable), creates the SDK clients.
 */
import { BatchJobSubmitter } from '../runtime/adapters/batch-job-submitter';
import { createAwsClients } from '../runtime/adapters/clients';
import { DynamoRunTable } from '../runtime/adapters/dynamo-run-table';
import { S3ObjectStore } from '../runtime/adapters/s3-object-store';
import { SesMailer } from '../runtime/adapters/ses-mailer';
import { parseAppConfig } from '../runtime/config/schema';
import { jsonEnv, optionalIntEnv, requireEnv, type Env } from '../runtime/env';
import type { HandlerDeps } from '../runtime/run/deps';
import { createLogger } from '../runtime/log';
import type { Stage } from '../runtime/model';

export function lambdaDeps(env: Env, handlerName: string): HandlerDeps {
  const parsed = parseAppConfig(
    jsonEnv<unknown>(env, 'FANOUT_CONFIG', 'the pipelines config as JSON, set by the CDK app'),
    'FANOUT_CONFIG',
  );
  // The deployment's run-record retention wins over the pipelines config's.
  const config = { ...parsed, runRetentionDays: optionalIntEnv(env, 'FANOUT_RUN_TTL_DAYS', parsed.runRetentionDays, 1) };
  const bucket = requireEnv(env, 'FANOUT_BUCKET', 'the pipeline bucket name, set by the CDK app');
  const table = requireEnv(env, 'FANOUT_TABLE', 'the run table name, set by the CDK app');
  const queues = jsonEnv<Record<string, string>>(env, 'FANOUT_JOB_QUEUES', 'JSON {pipeline: job queue ARN}');
  const jobDefinitions = jsonEnv<Record<string, Record<Stage, string>>>(
    env,
    'FANOUT_JOB_DEFINITIONS',
    'JSON {pipeline: {split, fanout, consolidate, cleanup: job definition ARN}}',
  );
  const clients = createAwsClients(env);
  return {
    config,
    store: new S3ObjectStore(clients.s3, bucket),
    table: new DynamoRunTable(clients.dynamo, table),
    jobs: new BatchJobSubmitter(clients.batch, { queues, jobDefinitions }),
    mailer: new SesMailer(clients.ses),
    log: createLogger({ sink: (line) => console.log(line), fields: { handler: handlerName } }),
  };
}
