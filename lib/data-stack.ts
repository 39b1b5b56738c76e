/**
 * The stateful stack: the pipeline bucket, its access-log bucket and the run table. Kept apart
 * from compute so that the compute stack can be replaced or destroyed without touching data.
 * Construct ids of these resources must never change (a new id is a new, empty resource).
 */
import { CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { acknowledgeGuard, acknowledgeNag, cfnOf } from './acknowledge';
import { STACK_OUTPUTS } from './stack-output-names';

/** Key prefixes of the pipeline bucket (see runtime/model.ts `keys`). */
export const PREFIX = { intake: 'intake/', work: 'work/', results: 'results/', history: 'history/' } as const;

export interface FanoutDataStackProps extends StackProps {
  /** Days uploads under `intake/` are kept. */
  readonly intakeDays: number;
  /** Days result workbooks under `results/` are kept. */
  readonly resultsDays: number;
  /** Days after which leftovers under `work/` expire (cleanup deletes them sooner). */
  readonly workDays: number;
  /** Days S3 server access logs are kept. */
  readonly accessLogDays: number;
  /** Days replaced or deleted object versions are kept. */
  readonly noncurrentVersionDays: number;
  /**
   * What happens to the buckets and the table when the stack is deleted.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * Defaults, all set here: buckets block public access, refuse plain HTTP, encrypt with S3-managed
 * keys, are versioned and own their objects; the pipeline bucket logs access to the log bucket.
 * The run table is on-demand, encrypted with the AWS-managed KMS key, has point-in-time
 * recovery, TTL on `expiresAt` and deletion protection while retained.
 */
export class FanoutDataStack extends Stack {
  /** Holds `intake/`, `work/` and `results/`. */
  readonly bucket: s3.Bucket;
  /** Receives the pipeline bucket's server access logs, and the managed OSRM load balancer's (`osrm-alb/`). */
  readonly accessLogBucket: s3.Bucket;
  /** Runs and chunk progress: partition key `pk`, sort key `sk`, TTL `expiresAt`. */
  readonly table: dynamodb.Table;

  constructor(scope: Construct, id: string, props: FanoutDataStackProps) {
    super(scope, id, props);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const destroy = removalPolicy === RemovalPolicy.DESTROY;
    const bucketDefaults = {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      encryption: s3.BucketEncryption.S3_MANAGED,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      removalPolicy,
      autoDeleteObjects: destroy,
    } satisfies s3.BucketProps;

    this.accessLogBucket = new s3.Bucket(this, 'AccessLogs', {
      ...bucketDefaults,
      lifecycleRules: [
        {
          id: 'expire-access-logs',
          expiration: Duration.days(props.accessLogDays),
          noncurrentVersionExpiration: Duration.days(1),
          abortIncompleteMultipartUploadAfter: Duration.days(1),
        },
      ],
    });

    this.bucket = new s3.Bucket(this, 'PipelineBucket', {
      ...bucketDefaults,
      serverAccessLogsBucket: this.accessLogBucket,
      serverAccessLogsPrefix: 'pipeline-bucket/',
      lifecycleRules: [
        {
          id: 'expire-work',
          prefix: PREFIX.work,
          expiration: Duration.days(props.workDays),
          noncurrentVersionExpiration: Duration.days(1),
        },
        {
          id: 'expire-intake',
          prefix: PREFIX.intake,
          expiration: Duration.days(props.intakeDays),
          noncurrentVersionExpiration: Duration.days(props.noncurrentVersionDays),
        },
        {
          id: 'expire-results',
          prefix: PREFIX.results,
          expiration: Duration.days(props.resultsDays),
          noncurrentVersionExpiration: Duration.days(props.noncurrentVersionDays),
        },
        {
          // Each run's items with their outcomes (for `fanout redrive`), kept as long as its results.
          id: 'expire-history',
          prefix: PREFIX.history,
          expiration: Duration.days(props.resultsDays),
          noncurrentVersionExpiration: Duration.days(1),
        },
        { id: 'remove-expired-delete-markers', expiredObjectDeleteMarker: true },
        { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
    });

    this.table = new dynamodb.Table(this, 'RunTable', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: 'expiresAt',
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      deletionProtection: !destroy,
      removalPolicy,
    });

    // Read by the `fanout` operating commands (--stack <appName>).
    new CfnOutput(this, STACK_OUTPUTS.bucket, { value: this.bucket.bucketName, description: 'Pipeline bucket (intake/, results/)' });
    new CfnOutput(this, STACK_OUTPUTS.table, { value: this.table.tableName, description: 'Run table' });
    this.acknowledgeFindings();
  }

  private acknowledgeFindings(): void {
    // removalPolicy 'destroy': CDK's custom resource that empties the buckets before deletion.
    const autoDelete = this.node.tryFindChild('Custom::S3AutoDeleteObjectsCustomResourceProvider')?.node.tryFindChild('Handler');
    if (autoDelete) {
      acknowledgeGuard(
        autoDelete,
        'lambda_inside_vpc_check',
        "CDK's own custom resource that empties the buckets when the stack is deleted (removalPolicy 'destroy'); it only calls the S3 API.",
      );
    }
    const logs = cfnOf(this.accessLogBucket);
    const pipeline = cfnOf(this.bucket);
    const selfLogging = 'This is the access-log destination; logging its own access would log the logging.';
    acknowledgeNag(logs, 'AwsSolutions-S1', selfLogging);
    acknowledgeGuard(logs, 's3_bucket_logging_enabled_check', selfLogging);
    for (const res of [logs, pipeline]) {
      acknowledgeGuard(
        res,
        's3_bucket_object_lock_enabled_check',
        'Object Lock would stop cleanup from deleting work files and lifecycle rules from expiring data; versioning and RETAIN protect against loss.',
      );
      acknowledgeGuard(
        res,
        's3_bucket_default_encryption_kms_check',
        'Encrypted with S3-managed keys (SSE-S3): a customer-managed KMS key would add a request charge to every chunk and part read by 10,000 children, and S3 access logs cannot be delivered to an SSE-KMS bucket.',
      );
    }
    acknowledgeGuard(
      logs,
      's3_event_notifications_enabled_check',
      'Nothing reacts to access-log objects, so the log bucket has no event notifications.',
    );
    acknowledgeGuard(
      pipeline,
      's3_event_notifications_enabled_check',
      'The intake notifications are set by the compute stack (Custom::S3BucketNotifications), which this rule cannot see in the bucket properties.',
    );
  }
}
