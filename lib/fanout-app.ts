/**
 * Builds the whole app from the two configs: the data stack and the compute stack, with the
 * typed props each needs. `bin/app.ts` reads the configs; tests call this with their own.
 */
import { Duration, RemovalPolicy, type App, type Environment } from 'aws-cdk-lib';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { checkAgainstPipelines, type DeploymentConfig } from '../config/deployment';
import type { AppConfig } from '../runtime/config/schema';
import { FanoutComputeStack } from './compute-stack';
import { FanoutDataStack } from './data-stack';

/**
 * App context the stacks rely on, whatever cdk.json says: cross-stack references stay "strong"
 * (the data stack cannot drop an export the compute stack still imports), and S3 access logs are
 * delivered under a bucket policy (the log bucket keeps ACLs disabled).
 */
export const FANOUT_APP_CONTEXT: Readonly<Record<string, unknown>> = {
  '@aws-cdk/core:defaultCrossStackReferences': 'strong',
  '@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy': true,
};

export interface FanoutAppOptions {
  readonly pipelines: AppConfig;
  readonly deployment: DeploymentConfig;
  /** Repository root (lambda/, batch-jobs/Dockerfile, package-lock.json). */
  readonly projectRoot: string;
}

export interface FanoutStacks {
  readonly data: FanoutDataStack;
  readonly compute: FanoutComputeStack;
}

export function buildFanoutApp(app: App, options: FanoutAppOptions): FanoutStacks {
  const { pipelines, deployment: d } = options;
  const emailIdentity = checkAgainstPipelines(d, pipelines);
  const env: Environment | undefined =
    d.account !== undefined || d.region !== undefined ? { account: d.account, region: d.region } : undefined;
  const removalPolicy = d.removalPolicy === 'destroy' ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN;
  const tags = { app: 'batch-fanout', 'batch-fanout:deployment': d.appName };

  const data = new FanoutDataStack(app, `${d.appName}-data`, {
    env,
    tags,
    description: 'batch-fanout: pipeline bucket, access-log bucket and run table (stateful)',
    intakeDays: d.retention.intakeDays,
    resultsDays: d.retention.resultsDays,
    workDays: d.retention.workDays,
    accessLogDays: d.retention.accessLogDays,
    noncurrentVersionDays: d.retention.noncurrentVersionDays,
    removalPolicy,
  });
  const compute = new FanoutComputeStack(app, `${d.appName}-compute`, {
    env,
    tags,
    description: 'batch-fanout: network, AWS Batch, event handlers, email and observability (stateless)',
    pipelines,
    bucket: data.bucket,
    table: data.table,
    projectRoot: options.projectRoot,
    network: d.network,
    compute: d.compute,
    jobs: d.jobs,
    emailIdentity,
    existingEmailIdentity: d.email.existingIdentity,
    verifyRecipients: d.email.verifyRecipients,
    operatorEmail: d.operatorEmail,
    logRetention: d.retention.logDays as logs.RetentionDays,
    runRecordDays: d.retention.runRecordDays,
    resultLinkDays: d.resultLinkDays,
    tracing: d.tracing,
    removalPolicy,
    osrm: d.osrm.enabled
      ? {
          extractKey: d.osrm.extractKey,
          profile: d.osrm.profile,
          cpu: d.osrm.cpu,
          memoryLimitMiB: d.osrm.memoryLimitMiB,
          idleTimeout: d.osrm.idleTimeoutMinutes !== undefined ? Duration.minutes(d.osrm.idleTimeoutMinutes) : undefined,
          accessLogBucket: data.accessLogBucket,
        }
      : undefined,
  });
  return { data, compute };
}
