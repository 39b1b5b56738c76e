/**
 * One event handler Lambda from `lambda/<name>.ts`, bundled with the locally installed esbuild
 * (no Docker), with its own encrypted log group, a dead-letter queue for events it could not
 * process, and the pipelines config inlined into the bundle.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { join } from 'node:path';
import { acknowledgeGuard, acknowledgeNag, cfnOf } from './acknowledge';

/** The handlers, by the file name of their entry under `lambda/`. */
export type HandlerName = 'on-intake' | 'on-split-done' | 'on-job-failed';
/** Handlers that exist only with some pipelines: the merge input-deadline sweep (dataset pipelines). */
export type OptionalHandlerName = 'on-merge-deadline';

export interface HandlerFunctionProps {
  /** Repository root (holds package-lock.json, tsconfig.json and `lambda/`). */
  readonly projectRoot: string;
  /** File name under `lambda/` without extension, e.g. `on-intake`. */
  readonly entryName: HandlerName | OptionalHandlerName;
  readonly description: string;
  /** Environment (the Lambda limit is 4 KB in total; the pipelines config is not in here). */
  readonly environment: Record<string, string>;
  /**
   * The pipelines config as JSON. Inlined at bundle time: an esbuild banner sets
   * `process.env.FANOUT_CONFIG` before any module runs (unless the environment sets it), so the
   * config is not bound by the 4 KB environment limit and the handler reads it as usual.
   */
  readonly configJson: string;
  readonly logRetention: logs.RetentionDays;
  readonly logKey: kms.IKey;
  /** Active X-Ray tracing. @default false */
  readonly tracing?: boolean;
  /** @default Duration.seconds(60) */
  readonly timeout?: Duration;
  /** @default 512 */
  readonly memorySize?: number;
  /** Removal policy of the log group. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * Defaults: Node.js 22.x on arm64, ESM bundle (AWS SDK bundled too, so the SDK version is the
 * lock file's, not the runtime's), minified with source maps, JSON logs at INFO, 2 async
 * retries over at most 6 hours, then the event goes to the dead-letter queue (SQS-managed
 * encryption, TLS only, kept 14 days).
 */
export class HandlerFunction extends Construct {
  readonly function: nodejs.NodejsFunction;
  readonly deadLetterQueue: sqs.Queue;
  readonly logGroup: logs.LogGroup;
  /** The function's role: writes its own log group; every other permission is granted by the caller. */
  readonly role: iam.Role;

  constructor(scope: Construct, id: string, props: HandlerFunctionProps) {
    super(scope, id);
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention,
      encryptionKey: props.logKey,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `batch-fanout ${props.entryName} handler`,
    });
    this.logGroup.grantWrite(this.role);
    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetters', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    this.function = new nodejs.NodejsFunction(this, 'Function', {
      entry: join(props.projectRoot, 'lambda', `${props.entryName}.ts`),
      handler: 'handler',
      description: props.description,
      projectRoot: props.projectRoot,
      depsLockFilePath: join(props.projectRoot, 'package-lock.json'),
      role: this.role,
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memorySize ?? 512,
      timeout: props.timeout ?? Duration.seconds(60),
      environment: { NODE_OPTIONS: '--enable-source-maps', ...props.environment },
      logGroup: this.logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      applicationLogLevelV2: lambda.ApplicationLogLevel.INFO,
      systemLogLevelV2: lambda.SystemLogLevel.WARN,
      tracing: props.tracing ? lambda.Tracing.ACTIVE : lambda.Tracing.DISABLED,
      deadLetterQueue: this.deadLetterQueue,
      retryAttempts: 2,
      maxEventAge: Duration.hours(6),
      bundling: {
        format: nodejs.OutputFormat.ESM,
        target: 'node22',
        mainFields: ['module', 'main'],
        externalModules: [],
        minify: true,
        sourceMap: true,
        sourcesContent: false,
        forceDockerBundling: false,
        banner: configBanner(props.configJson),
        logLevel: nodejs.LogLevel.WARNING,
      },
    });
    this.acknowledgeFindings(props.entryName);
  }

  private acknowledgeFindings(name: HandlerName | OptionalHandlerName): void {
    const fn = cfnOf(this.function);
    acknowledgeNag(
      fn,
      'AwsSolutions-L1',
      `${name} runs on Node.js 22.x on purpose: the runtime code targets Node 20/22 APIs and is tested on them; move to 24.x after testing.`,
    );
    acknowledgeGuard(
      fn,
      'lambda_inside_vpc_check',
      `${name} only calls AWS APIs (DynamoDB, S3, Batch, SES) and reaches no private resource; inside the VPC it would need NAT or interface endpoints for the same calls.`,
    );
    const dlq = cfnOf(this.deadLetterQueue);
    const dlqReason = `This queue is the dead-letter destination of ${name}; it has no dead-letter queue of its own.`;
    acknowledgeNag(dlq, 'AwsSolutions-SQS3', dlqReason);
    acknowledgeGuard(dlq, 'sqs_dlq_check', dlqReason);
  }
}

/**
 * The bundle's first line: a `require` for CommonJS dependencies inside an ESM bundle, and the
 * pipelines config as the default of FANOUT_CONFIG.
 */
function configBanner(configJson: string): string {
  return [
    "import { createRequire as __fanoutCreateRequire } from 'node:module';",
    'const require = __fanoutCreateRequire(import.meta.url);',
    `process.env.FANOUT_CONFIG ??= ${JSON.stringify(configJson)};`,
  ].join(' ');
}
