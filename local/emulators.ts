/**
 * The AWS emulators of a local run, started in-process on 127.0.0.1 with random ports:
 *   S3        s3rver (files under `<dataDir>/s3`)
 *   DynamoDB  dynalite (in memory, or LevelDB files under `<dataDir>/dynamo` with `persist`)
 *   SES v2    aws-ses-v2-local (in memory)
 * The runtime reaches them through the SDK's own `AWS_ENDPOINT_URL_<SERVICE>` variables (`env`),
 * with the same adapter code as on AWS.
 *
 * Facts about them that shape this module:
 * - s3rver accepts only the access key id `S3RVER` (it does not check v4 signatures, but looks
 *   the key id up); the secret is not checked. It emits object events in-process only
 *   (`'event'`), for every key, with the key not URL-encoded; this module encodes it as S3 does.
 * - s3rver builds ListObjectsV2 continuation tokens with single DES, which OpenSSL 3 (Node >= 17)
 *   no longer offers: every truncated V2 listing (more than 1,000 keys, or more than MaxKeys)
 *   fails with HTTP 500 InternalError. This module answers ListObjectsV2 itself, from s3rver's
 *   own store, with a plain continuation token (see listObjectsV2Middleware).
 * - aws-ses-v2-local keeps its mail store in a module-level variable: two servers loaded from one
 *   module instance share their mail. Each call here loads a fresh instance of the module.
 * - aws-ses-v2-local refuses request bodies over 25 MB (its JSON body limit), i.e. raw messages
 *   over about 18 MB once base64-encoded: see SES_EMULATOR_MAX_MESSAGE_BYTES.
 */
import { mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';
import { CreateTableCommand, DynamoDBClient, waitUntilTableExists } from '@aws-sdk/client-dynamodb';
import { RUN_TABLE_SCHEMA } from '../runtime/adapters/dynamo-run-table';

const require = createRequire(import.meta.url);

/** An S3 ObjectCreated notification record, shaped as S3 sends it (the key URL-encoded). */
export interface S3EventRecordLike {
  eventVersion: string;
  eventSource: string;
  awsRegion: string;
  eventTime: string;
  /** `ObjectCreated:Put`, `ObjectCreated:Post` (s3rver names a completed multipart upload so too) or `ObjectCreated:Copy`. */
  eventName: string;
  userIdentity: { principalId: string };
  requestParameters: { sourceIPAddress: string };
  responseElements: { 'x-amz-request-id': string; 'x-amz-id-2': string };
  s3: {
    s3SchemaVersion: string;
    configurationId: string;
    bucket: { name: string; ownerIdentity: { principalId: string }; arn: string };
    object: { key: string; size: number; eTag: string; sequencer: string };
  };
}

export interface ReceivedMail {
  messageId: string;
  from: string;
  to: string[];
  subject: string;
  text?: string;
  html?: string;
  attachments: Array<{ filename: string; contentType: string; content: Buffer }>;
}

export interface LocalEmulators {
  /** AWS_ENDPOINT_URL_S3/_DYNAMODB/_SESV2, AWS_REGION, dummy credentials, FANOUT_BUCKET, FANOUT_TABLE. */
  env: Record<string, string>;
  bucket: string;
  table: string;
  /** Largest raw message the SES emulator accepts (give it to SesMailer as maxMessageBytes). */
  sesMaxMessageBytes: number;
  /**
   * S3 ObjectCreated notifications from s3rver (emitted for every key; filter by prefix yourself),
   * shaped like an S3 event record (bucket name, object key URL-encoded as S3 does, size, eTag,
   * sequencer, eventTime). Listeners are called asynchronously, apart from the upload request,
   * so the upload may resolve before its notification arrives (as on S3).
   */
  onObjectCreated(listener: (record: S3EventRecordLike) => void): void;
  /** Mail the SES emulator received (parsed from its GET /store), oldest first. */
  listMail(): Promise<ReceivedMail[]>;
  /** The .eml of one received message: the raw MIME as sent for `Content.Raw` mail. */
  getEml(messageId: string): Promise<string>;
  /** Closes every server (and their open connections). */
  stop(): Promise<void>;
}

export interface StartEmulatorsOptions {
  /** Folder for the emulators' files (s3rver keeps objects under `<dataDir>/s3`). */
  dataDir: string;
  /** @default 'fanout-local' */
  bucket?: string;
  /** @default 'fanout-runs' */
  table?: string;
  /**
   * Keep the run table on disk too (`<dataDir>/dynamo`), so emulators started again on the same
   * folder find the runs (`fanout run --keep DIR`, `fanout status --local DIR`). @default false
   */
  persist?: boolean;
}

/** aws-ses-v2-local's 25 MB JSON body limit, less base64 (4/3) and the request's other fields. */
const SES_EMULATOR_MAX_MESSAGE_BYTES = 18 * 1024 * 1024;

const REGION = 'us-east-1';
/** s3rver knows this key pair only; dynalite and the SES emulator accept any. */
const ACCESS_KEY_ID = 'S3RVER';
const SECRET_ACCESS_KEY = 'S3RVER';

// ---- the emulators' own shapes (they ship no TypeScript types) ----

/** What s3rver emits: an S3 event record whose object may lack size and eTag. */
type S3rverRecord = Omit<S3EventRecordLike, 's3'> & {
  s3: Omit<S3EventRecordLike['s3'], 'object'> & { object: { key: string; size?: number; eTag?: string; sequencer: string } };
};

interface S3rverStoredObject {
  key: string;
  size: number;
  lastModifiedDate: Date;
  metadata: Record<string, string>;
}

interface S3rverStore {
  getBucket(name: string): Promise<unknown>;
  listObjects(
    bucket: string,
    options: { prefix?: string; startAfter?: string; delimiter?: string; maxKeys?: number },
  ): Promise<{ objects: S3rverStoredObject[]; commonPrefixes: string[]; isTruncated: boolean }>;
}

/** The part of a Koa context the ListObjectsV2 middleware uses. */
interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | string[] | undefined>;
  status: number;
  type: string;
  body: unknown;
  store: S3rverStore;
}

type KoaMiddleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;

interface S3rverInstance {
  /** Koa's middleware list (s3rver is a Koa application). */
  middleware: KoaMiddleware[];
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  on(event: 'event', listener: (event: { Records: S3rverRecord[] }) => void): void;
  httpServer?: Server;
}

type S3rverConstructor = new (options: {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  configureBuckets: Array<{ name: string; configs?: string[] }>;
}) => S3rverInstance;

type Dynalite = (options: { createTableMs: number; deleteTableMs: number; updateTableMs: number; path?: string }) => Server;

type SesServerFactory = (config: { host: string; port: number }) => Promise<Server>;

interface SesStoreEmail {
  messageId: string;
  from: string;
  destination: { to: string[] };
  subject: string;
  body?: { text?: string; html?: string };
  attachments: Array<{ filename?: string; contentType?: string; content: string }>;
}

/** Loads a fresh instance of aws-ses-v2-local, so its module-level mail store is ours alone. */
function loadSesServer(): SesServerFactory {
  const entry = require.resolve('aws-ses-v2-local');
  const distDir = dirname(entry) + sep;
  for (const key of Object.keys(require.cache)) {
    if (key.startsWith(distDir)) delete require.cache[key];
  }
  return (require(entry) as { default: SesServerFactory }).default;
}

function xmlEscape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function queryValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Answers ListObjectsV2 (`GET /<bucket>?list-type=2`) from s3rver's store, in place of s3rver's
 * handler, whose continuation tokens need single DES (gone from OpenSSL 3). The token is the
 * last key returned, base64url-encoded; pages hold at most 1,000 keys, as on S3.
 */
function listObjectsV2Middleware(): KoaMiddleware {
  return async (ctx, next) => {
    const bucketPath = /^\/([^/]+)\/?$/.exec(ctx.path);
    const q = ctx.query;
    if (ctx.method !== 'GET' || !bucketPath || queryValue(q['list-type']) !== '2' || q['encoding-type'] !== undefined) {
      return next();
    }
    const bucket = bucketPath[1]!;
    if (!(await ctx.store.getBucket(bucket))) {
      ctx.status = 404;
      ctx.type = 'application/xml';
      ctx.body =
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchBucket</Code>' +
        `<Message>The specified bucket does not exist</Message><BucketName>${xmlEscape(bucket)}</BucketName></Error>`;
      return;
    }
    const prefix = queryValue(q.prefix) ?? '';
    const delimiter = queryValue(q.delimiter) || undefined;
    const token = queryValue(q['continuation-token']);
    const startAfter = token ? Buffer.from(token, 'base64url').toString('utf8') : (queryValue(q['start-after']) ?? '');
    const maxKeysText = queryValue(q['max-keys']);
    const maxKeys = Math.min(1000, maxKeysText !== undefined && /^\d+$/.test(maxKeysText) ? Number(maxKeysText) : 1000);
    const result =
      maxKeys === 0
        ? { objects: [], commonPrefixes: [], isTruncated: false }
        : await ctx.store.listObjects(bucket, { prefix, startAfter, delimiter, maxKeys });
    const last = result.objects[result.objects.length - 1];
    const nextToken = result.isTruncated && last ? Buffer.from(last.key, 'utf8').toString('base64url') : undefined;
    const parts = [
      '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
      `<Name>${xmlEscape(bucket)}</Name>`,
      `<Prefix>${xmlEscape(prefix)}</Prefix>`,
      token ? `<ContinuationToken>${xmlEscape(token)}</ContinuationToken>` : '',
      !token && startAfter ? `<StartAfter>${xmlEscape(startAfter)}</StartAfter>` : '',
      nextToken ? `<NextContinuationToken>${nextToken}</NextContinuationToken>` : '',
      `<KeyCount>${result.objects.length + result.commonPrefixes.length}</KeyCount>`,
      `<MaxKeys>${maxKeys}</MaxKeys>`,
      delimiter ? `<Delimiter>${xmlEscape(delimiter)}</Delimiter>` : '',
      `<IsTruncated>${result.isTruncated}</IsTruncated>`,
      ...result.objects.map(
        (o) =>
          `<Contents><Key>${xmlEscape(o.key)}</Key><LastModified>${o.lastModifiedDate.toISOString()}</LastModified>` +
          `<ETag>${xmlEscape(o.metadata.etag ?? '')}</ETag><Size>${o.size}</Size><StorageClass>STANDARD</StorageClass></Contents>`,
      ),
      ...result.commonPrefixes.map((p) => `<CommonPrefixes><Prefix>${xmlEscape(p)}</Prefix></CommonPrefixes>`),
      '</ListBucketResult>',
    ];
    ctx.status = 200;
    ctx.type = 'application/xml';
    ctx.body = parts.join('');
  };
}

/** Encodes a key as S3 does in event notifications (form encoding, `/` kept). */
export function encodeS3EventKey(key: string): string {
  return encodeURIComponent(key)
    .replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+')
    .replace(/%2F/g, '/');
}

/** An s3rver event record as S3 sends it: key URL-encoded, bucket ARN, size, eTag, a sequencer from `sequence`. */
function toS3EventRecord(r: S3rverRecord, sequence: number): S3EventRecordLike {
  return {
    ...r,
    s3: {
      ...r.s3,
      bucket: { ...r.s3.bucket, arn: `arn:aws:s3:::${r.s3.bucket.name}` },
      object: {
        key: encodeS3EventKey(r.s3.object.key),
        size: r.s3.object.size ?? 0,
        eTag: r.s3.object.eTag ?? '',
        // s3rver's sequencer is the time in ms, equal for events in the same millisecond.
        sequencer: sequence.toString(16).toUpperCase().padStart(16, '0'),
      },
    },
  };
}

/** Splits a header address list ("A <a@x>, b@y") into addresses. */
function addresses(list: string[]): string[] {
  const out: string[] = [];
  for (const text of list) {
    for (const part of text.match(/(?:"[^"]*"|[^,])+/g) ?? []) {
      const angle = /<([^>]+)>/.exec(part);
      const address = (angle ? angle[1]! : part).trim();
      if (address) out.push(address);
    }
  }
  return out;
}

/**
 * Keeps the raw MIME message of every accepted `SendEmail` with `Content.Raw`, by message id.
 *
 * The emulator's own .eml (`GET /get-emlContent`) is rebuilt from its parsed store and encodes
 * attachments twice (the stored base64 text is taken as the content), so it cannot be opened as
 * sent. The request body (already parsed by the emulator's express app when the response is
 * written) holds the message exactly as the mailer sent it; the response holds its id.
 */
function captureRawMessages(server: Server): Map<string, Buffer> {
  const messages = new Map<string, Buffer>();
  server.on('request', (req: IncomingMessage & { body?: unknown }, res: ServerResponse) => {
    if (req.method !== 'POST' || !req.url?.startsWith('/v2/email/outbound-emails')) return;
    const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
    res.end = ((...args: unknown[]) => {
      try {
        const [chunk] = args;
        const data = (req.body as { Content?: { Raw?: { Data?: unknown } } } | undefined)?.Content?.Raw?.Data;
        if (res.statusCode === 200 && typeof data === 'string' && (typeof chunk === 'string' || Buffer.isBuffer(chunk))) {
          const { MessageId } = JSON.parse(chunk.toString()) as { MessageId?: string };
          if (MessageId) messages.set(MessageId, Buffer.from(data, 'base64'));
        }
      } catch {
        // Not a response we understand: the message is only in the emulator's store.
      }
      return end(...args);
    }) as ServerResponse['end'];
  });
  return messages;
}

async function closeServer(server: Server, close: () => Promise<void>): Promise<void> {
  const closing = close();
  server.closeAllConnections();
  await closing;
}

function closeHttp(server: Server): Promise<void> {
  return new Promise((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
}

function listen(server: Server): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

async function createRunTable(endpoint: string, table: string): Promise<void> {
  const client = new DynamoDBClient({
    endpoint,
    region: REGION,
    credentials: { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET_ACCESS_KEY },
  });
  try {
    const create = client.send(
      new CreateTableCommand({
        TableName: table,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [
          { AttributeName: RUN_TABLE_SCHEMA.partitionKey, AttributeType: 'S' },
          { AttributeName: RUN_TABLE_SCHEMA.sortKey, AttributeType: 'S' },
        ],
        KeySchema: [
          { AttributeName: RUN_TABLE_SCHEMA.partitionKey, KeyType: 'HASH' },
          { AttributeName: RUN_TABLE_SCHEMA.sortKey, KeyType: 'RANGE' },
        ],
      }),
    );
    // A kept folder has the table already.
    await create.catch((err: unknown) => {
      if (!(err instanceof Error && err.name === 'ResourceInUseException')) throw err;
    });
    // dynalite has no TTL operations (UpdateTimeToLive): expiresAt is only an attribute here.
    await waitUntilTableExists({ client, maxWaitTime: 30, minDelay: 0.05, maxDelay: 0.2 }, { TableName: table });
  } finally {
    client.destroy();
  }
}

export async function startEmulators(opts: StartEmulatorsOptions): Promise<LocalEmulators> {
  const bucket = opts.bucket ?? 'fanout-local';
  const table = opts.table ?? 'fanout-runs';
  const stops: Array<() => Promise<void>> = [];
  const stop = async (): Promise<void> => {
    const results = await Promise.allSettled(
      stops
        .splice(0)
        .reverse()
        .map((s) => s()),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  };

  try {
    // S3
    const s3Dir = join(opts.dataDir, 's3');
    await mkdir(s3Dir, { recursive: true });
    const S3rver = require('s3rver') as S3rverConstructor;
    const s3 = new S3rver({
      address: '127.0.0.1',
      port: 0,
      silent: true,
      directory: s3Dir,
      configureBuckets: [{ name: bucket }],
    });
    // Before s3rver's own handlers (Koa composes the list when the server starts).
    s3.middleware.unshift(listObjectsV2Middleware());
    const s3Address = await s3.run();
    stops.push(() => closeServer(s3.httpServer!, () => s3.close()));

    const listeners: Array<(record: S3EventRecordLike) => void> = [];
    let sequence = 0;
    s3.on('event', (event) => {
      for (const r of event.Records) {
        if (!r.eventName.startsWith('ObjectCreated:')) continue;
        const record = toS3EventRecord(r, (sequence += 1));
        // Outside s3rver's request handling, as S3 notifications are: a listener that throws
        // must not turn the upload into an HTTP 500.
        for (const listener of listeners) setImmediate(() => listener(record));
      }
    });

    // DynamoDB
    const dynalite = require('dynalite') as Dynalite;
    const dynamoDir = opts.persist ? join(opts.dataDir, 'dynamo') : undefined;
    if (dynamoDir) await mkdir(dynamoDir, { recursive: true });
    const dynamo = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, ...(dynamoDir ? { path: dynamoDir } : {}) });
    const dynamoAddress = await listen(dynamo);
    stops.push(() => closeServer(dynamo, () => closeHttp(dynamo)));
    const dynamoEndpoint = `http://127.0.0.1:${dynamoAddress.port}`;
    await createRunTable(dynamoEndpoint, table);

    // SES v2
    const ses = await loadSesServer()({ host: '127.0.0.1', port: 0 });
    stops.push(() => closeServer(ses, () => closeHttp(ses)));
    const rawMessages = captureRawMessages(ses);
    const sesBase = `http://127.0.0.1:${(ses.address() as AddressInfo).port}`;

    const env: Record<string, string> = {
      AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${s3Address.port}`,
      AWS_ENDPOINT_URL_DYNAMODB: dynamoEndpoint,
      AWS_ENDPOINT_URL_SESV2: sesBase,
      AWS_REGION: REGION,
      AWS_ACCESS_KEY_ID: ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: SECRET_ACCESS_KEY,
      FANOUT_BUCKET: bucket,
      FANOUT_TABLE: table,
      // The SDK warns once per process that Node 20 support ends in 2027; not news in a local run.
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    };

    const getJson = async (path: string): Promise<unknown> => {
      const res = await fetch(`${sesBase}${path}`);
      const body = await res.text();
      if (!res.ok) throw new Error(`SES emulator GET ${path} answered HTTP ${res.status}: ${body.slice(0, 300)}`);
      return JSON.parse(body) as unknown;
    };
    const storedMail = async (): Promise<SesStoreEmail[]> => ((await getJson('/store')) as { emails: SesStoreEmail[] }).emails;

    return {
      env,
      bucket,
      table,
      sesMaxMessageBytes: SES_EMULATOR_MAX_MESSAGE_BYTES,
      onObjectCreated(listener) {
        listeners.push(listener);
      },
      async listMail() {
        return (await storedMail()).map((e) => ({
          messageId: e.messageId,
          from: e.from,
          to: addresses(e.destination.to),
          subject: e.subject,
          ...(e.body?.text !== undefined ? { text: e.body.text } : {}),
          ...(e.body?.html !== undefined ? { html: e.body.html } : {}),
          attachments: e.attachments.map((a) => ({
            filename: a.filename ?? '',
            contentType: a.contentType ?? 'application/octet-stream',
            content: Buffer.from(a.content, 'base64'),
          })),
        }));
      },
      async getEml(messageId) {
        const raw = rawMessages.get(messageId);
        if (raw) return raw.toString('utf8');
        // Not a raw message (Simple or Template content): the emulator rebuilds it from what it
        // parsed. Asked for an unknown id, it answers 400 and then fails again writing a second
        // response (an unhandled rejection in this process): look the id up first.
        if (!(await storedMail()).some((e) => e.messageId === messageId)) {
          throw new Error(`the SES emulator has no message ${messageId}`);
        }
        const res = (await getJson(`/get-emlContent?messageId=${encodeURIComponent(messageId)}`)) as {
          body: { type: 'Buffer'; data: number[] } | string;
        };
        return typeof res.body === 'string' ? res.body : Buffer.from(res.body.data).toString('utf8');
      },
      stop,
    };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}
