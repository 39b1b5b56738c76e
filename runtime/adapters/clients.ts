/**
 * AWS SDK v3 clients of the runtime, created once per process and only when first used.
 *
 * Endpoints follow the SDK's own `AWS_ENDPOINT_URL_<SERVICE>` / `AWS_ENDPOINT_URL` variables, but
 * read from the `env` given here rather than from `process.env` (the SDK itself only reads
 * `process.env`), so an in-process local run can point the same code at its emulators. When the
 * S3 endpoint is overridden (an S3 emulator), path-style addressing is forced and checksums are
 * only computed when an operation requires them: s3rver stores aws-chunked uploads with their
 * framing, i.e. corrupt.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { BatchClient } from '@aws-sdk/client-batch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SESv2Client } from '@aws-sdk/client-sesv2';
import { SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { Env } from '../env';

export interface AwsClients {
  s3: S3Client;
  dynamo: DynamoDBDocumentClient;
  ses: SESv2Client;
  batch: BatchClient;
  sns: SNSClient;
  ssm: SSMClient;
}

/** Sockets kept per S3 client: stages read and write many objects at once. */
const S3_MAX_SOCKETS = 256;
/** Attempts per call (the SDK's standard retry with back-off) for storage calls. */
const STORAGE_MAX_ATTEMPTS = 6;

/** SDK service ids, as they appear in `AWS_ENDPOINT_URL_<SERVICE>`. */
type ServiceId = 'S3' | 'DynamoDB' | 'SESv2' | 'Batch' | 'SNS' | 'SSM';

/**
 * The endpoint configured for a service in `env`, as the SDK resolves it from the environment:
 * `AWS_ENDPOINT_URL_<SERVICE ID>` first, then `AWS_ENDPOINT_URL`, neither when
 * `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is true.
 */
export function configuredEndpoint(env: Env, serviceId: ServiceId): string | undefined {
  if (env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS?.trim().toLowerCase() === 'true') return undefined;
  const specific = env[`AWS_ENDPOINT_URL_${serviceId.toUpperCase()}`]?.trim();
  if (specific) return specific;
  const global = env.AWS_ENDPOINT_URL?.trim();
  return global || undefined;
}

interface CommonConfig {
  region?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

function commonConfig(env: Env): CommonConfig {
  const config: CommonConfig = {};
  const region = env.AWS_REGION?.trim() || env.AWS_DEFAULT_REGION?.trim();
  if (region) config.region = region;
  // Keys in `env` are used as given; otherwise the SDK's default chain (process environment,
  // container or instance role) finds them.
  const accessKeyId = env.AWS_ACCESS_KEY_ID?.trim();
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY?.trim();
  if (accessKeyId && secretAccessKey) {
    const sessionToken = env.AWS_SESSION_TOKEN?.trim();
    config.credentials = { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
  }
  return config;
}

/** Region, credentials and the configured endpoint (if any) of a service's client. */
function serviceConfig(env: Env, serviceId: ServiceId): CommonConfig & { endpoint?: string } {
  const endpoint = configuredEndpoint(env, serviceId);
  return { ...commonConfig(env), ...(endpoint ? { endpoint } : {}) };
}

export function createS3Client(env: Env): S3Client {
  const config = serviceConfig(env, 'S3');
  return new S3Client({
    ...config,
    maxAttempts: STORAGE_MAX_ATTEMPTS,
    requestHandler: {
      httpAgent: new HttpAgent({ keepAlive: true, maxSockets: S3_MAX_SOCKETS }),
      httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets: S3_MAX_SOCKETS }),
    },
    ...(config.endpoint
      ? {
          forcePathStyle: true,
          requestChecksumCalculation: 'WHEN_REQUIRED' as const,
          responseChecksumValidation: 'WHEN_REQUIRED' as const,
        }
      : {}),
  });
}

function createDynamoDocumentClient(env: Env): DynamoDBDocumentClient {
  const client = new DynamoDBClient({
    ...serviceConfig(env, 'DynamoDB'),
    maxAttempts: STORAGE_MAX_ATTEMPTS,
  });
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: true },
    unmarshallOptions: { wrapNumbers: false },
  });
}

/** Creates each client on first use, once. */
export function createAwsClients(env: Env): AwsClients {
  let s3: S3Client | undefined;
  let dynamo: DynamoDBDocumentClient | undefined;
  let ses: SESv2Client | undefined;
  let batch: BatchClient | undefined;
  let sns: SNSClient | undefined;
  let ssm: SSMClient | undefined;
  return {
    get s3() {
      return (s3 ??= createS3Client(env));
    },
    get dynamo() {
      return (dynamo ??= createDynamoDocumentClient(env));
    },
    get ses() {
      return (ses ??= new SESv2Client(serviceConfig(env, 'SESv2')));
    },
    get batch() {
      return (batch ??= new BatchClient(serviceConfig(env, 'Batch')));
    },
    get sns() {
      return (sns ??= new SNSClient(serviceConfig(env, 'SNS')));
    },
    get ssm() {
      return (ssm ??= new SSMClient(serviceConfig(env, 'SSM')));
    },
  };
}
