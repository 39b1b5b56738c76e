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

/**
 * One SDK call as a client sent it: the client (e.g. `S3Client`), the command (e.g.
 * `PutObjectCommand`) and the fields of its input that say what it acts on (bucket, key, table,
 * topic, queue, job definition, sender, parameter name...), never bodies or messages.
 */
export interface SdkCall {
  client: string;
  command: string;
  input: Record<string, unknown>;
}

export interface AwsClientsOptions {
  /** Told of every call before it is sent (local runs record them for the IAM check). */
  onCall?: (call: SdkCall) => void;
}

/** Input fields that name what a call acts on. */
const TARGET_FIELDS = [
  'Bucket',
  'Key',
  'Prefix',
  'TableName',
  'TopicArn',
  'jobQueue',
  'jobDefinition',
  'FromEmailAddress',
  'Name',
  'SecretId',
  'applicationId',
];

/** The parts of a command's input a call record keeps (no bodies: they can be large or secret). */
export function callTargets(input: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of TARGET_FIELDS) if (typeof input[f] === 'string') out[f] = input[f];
  if (input.RequestItems && typeof input.RequestItems === 'object') out.RequestItems = Object.keys(input.RequestItems);
  if (input.TransactItems) out.TransactItems = true;
  const del = input.Delete as { Objects?: Array<{ Key?: string }> } | undefined;
  if (del?.Objects) out.DeleteKeys = del.Objects.map((o) => o.Key);
  if (input.tags && typeof input.tags === 'object') out.tags = Object.keys(input.tags);
  const dest = input.Destination as { ToAddresses?: string[]; CcAddresses?: string[]; BccAddresses?: string[] } | undefined;
  if (dest) out.Destination = [...(dest.ToAddresses ?? []), ...(dest.CcAddresses ?? []), ...(dest.BccAddresses ?? [])];
  return out;
}

type StackOwner = { middlewareStack: { add: (mw: never, opts: { step: 'initialize'; name: string }) => void } };

/** Adds the call recorder to a client (first in its stack, so every attempt is one call). */
function observe<C>(client: C, onCall: AwsClientsOptions['onCall']): C {
  if (!onCall) return client;
  const mw =
    (next: (args: { input: unknown }) => Promise<unknown>, context: { clientName?: string; commandName?: string }) =>
    async (args: { input: unknown }) => {
      onCall({
        client: context.clientName ?? 'unknown',
        command: context.commandName ?? 'unknown',
        input: callTargets((args.input ?? {}) as Record<string, unknown>),
      });
      return next(args);
    };
  (client as StackOwner).middlewareStack.add(mw as never, { step: 'initialize', name: 'fanoutCallRecorder' });
  return client;
}

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

function createDynamoDocumentClient(env: Env, onCall?: AwsClientsOptions['onCall']): DynamoDBDocumentClient {
  const client = observe(
    new DynamoDBClient({
      ...serviceConfig(env, 'DynamoDB'),
      maxAttempts: STORAGE_MAX_ATTEMPTS,
    }),
    onCall,
  );
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: true },
    unmarshallOptions: { wrapNumbers: false },
  });
}

/** Creates each client on first use, once. */
export function createAwsClients(env: Env, opts: AwsClientsOptions = {}): AwsClients {
  const { onCall } = opts;
  let s3: S3Client | undefined;
  let dynamo: DynamoDBDocumentClient | undefined;
  let ses: SESv2Client | undefined;
  let batch: BatchClient | undefined;
  let sns: SNSClient | undefined;
  let ssm: SSMClient | undefined;
  return {
    get s3() {
      return (s3 ??= observe(createS3Client(env), onCall));
    },
    get dynamo() {
      return (dynamo ??= createDynamoDocumentClient(env, onCall));
    },
    get ses() {
      return (ses ??= observe(new SESv2Client(serviceConfig(env, 'SESv2')), onCall));
    },
    get batch() {
      return (batch ??= observe(new BatchClient(serviceConfig(env, 'Batch')), onCall));
    },
    get sns() {
      return (sns ??= observe(new SNSClient(serviceConfig(env, 'SNS')), onCall));
    },
    get ssm() {
      return (ssm ??= observe(new SSMClient(serviceConfig(env, 'SSM')), onCall));
    },
  };
}
