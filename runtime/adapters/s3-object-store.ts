/**
 * ObjectStore on Amazon S3 (SDK v3). The same code talks to s3rver in a local run.
 *
 * Streams are uploaded in parts (at most `queueSize * partSize` bytes in memory), deletes go in
 * batches of 1,000 keys with a few requests in flight, and every SDK failure becomes a
 * StorageError (exit code STORAGE) naming the operation, bucket and key, except a missing object
 * on read, which is an ObjectNotFoundError.
 */
import { PassThrough, type Readable } from 'node:stream';
import {
  CopyObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  paginateListObjectsV2,
  type DeleteObjectsCommandOutput,
  type GetObjectCommandOutput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { ExitCode, ObjectNotFoundError, StorageError } from '../errors';
import { forEachConcurrent } from '../pool';
import type { ObjectInfo, ObjectStore, PresignedLink } from '../ports';
import { failedCallMessage, httpStatus, sdkErrorName } from './sdk-errors';

/** Keys per DeleteObjects request (the S3 maximum). */
export const DELETE_BATCH_SIZE = 1000;
/** DeleteObjects requests in flight at once. */
const DELETE_CONCURRENCY = 4;
/** Multipart upload: part size and parts in flight (memory is bounded by their product). */
const UPLOAD_PART_SIZE = 8 * 1024 * 1024;
const UPLOAD_QUEUE_SIZE = 4;

export interface S3ObjectStoreOptions {
  /** Part size of streamed uploads, bytes (S3 minimum 5 MiB). @default 8 MiB */
  partSize?: number;
  /** Parts uploaded at once. @default 4 */
  queueSize?: number;
}

/** A missing object (not a missing bucket, which is a storage failure). */
function isObjectMissing(err: unknown): boolean {
  const name = sdkErrorName(err);
  if (name === 'NoSuchBucket') return false;
  return name === 'NoSuchKey' || name === 'NotFound' || httpStatus(err) === 404;
}

export class S3ObjectStore implements ObjectStore {
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(
    private readonly client: S3Client,
    readonly bucket: string,
    opts: S3ObjectStoreOptions = {},
  ) {
    this.partSize = opts.partSize ?? UPLOAD_PART_SIZE;
    this.queueSize = opts.queueSize ?? UPLOAD_QUEUE_SIZE;
  }

  async put(key: string, body: string | Uint8Array | Readable, opts: { contentType?: string } = {}): Promise<void> {
    const params = { Bucket: this.bucket, Key: key, Body: body, ContentType: opts.contentType };
    try {
      if (typeof body === 'string' || body instanceof Uint8Array) {
        await this.client.send(new PutObjectCommand(params));
      } else {
        const upload = new Upload({
          client: this.client,
          params,
          partSize: this.partSize,
          queueSize: this.queueSize,
          leavePartsOnError: false,
        });
        await upload.done();
      }
    } catch (err) {
      throw this.failure('PutObject', key, err);
    }
  }

  async copy(fromKey: string, toKey: string, opts: { metadata?: Record<string, string>; contentType?: string } = {}): Promise<void> {
    const replace = opts.metadata !== undefined || opts.contentType !== undefined;
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: toKey,
          CopySource: `${this.bucket}/${fromKey.split('/').map(encodeURIComponent).join('/')}`,
          ...(replace ? { MetadataDirective: 'REPLACE' as const, Metadata: opts.metadata, ContentType: opts.contentType } : {}),
        }),
      );
    } catch (err) {
      if (isObjectMissing(err)) throw new ObjectNotFoundError(fromKey);
      throw this.failure('CopyObject', `${fromKey} -> ${toKey}`, err);
    }
  }

  async getStream(key: string): Promise<Readable> {
    const body = (await this.getObjectBody(key)) as Readable;
    // A failure while the body streams (a reset connection) is a StorageError too.
    const out = new PassThrough({ highWaterMark: 1024 * 1024 });
    body.once('error', (err) => out.destroy(this.failure('GetObject (reading the body)', key, err)));
    out.once('close', () => {
      if (!body.readableEnded) body.destroy();
    });
    return body.pipe(out);
  }

  async getBytes(key: string): Promise<Buffer> {
    const body = await this.getObjectBody(key);
    try {
      return Buffer.from(await body.transformToByteArray());
    } catch (err) {
      throw this.failure('GetObject (reading the body)', key, err);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { key, size: res.ContentLength ?? 0 };
    } catch (err) {
      if (isObjectMissing(err)) return undefined;
      throw this.failure('HeadObject', key, err);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    try {
      const pages = paginateListObjectsV2({ client: this.client }, { Bucket: this.bucket, Prefix: prefix });
      for await (const page of pages) {
        for (const obj of page.Contents ?? []) {
          if (obj.Key !== undefined) yield { key: obj.Key, size: obj.Size ?? 0, eTag: obj.ETag, lastModified: obj.LastModified };
        }
      }
    } catch (err) {
      throw this.failure('ListObjectsV2', `${prefix}*`, err);
    }
  }

  async deleteMany(keys: string[]): Promise<void> {
    const batches = Array.from({ length: Math.ceil(keys.length / DELETE_BATCH_SIZE) }, (_, i) =>
      keys.slice(i * DELETE_BATCH_SIZE, (i + 1) * DELETE_BATCH_SIZE),
    );
    await forEachConcurrent(batches, DELETE_CONCURRENCY, (batch) => this.deleteBatch(batch));
  }

  async presignGet(key: string, expiresInSeconds: number): Promise<PresignedLink> {
    try {
      const requested = new Date(Date.now() + expiresInSeconds * 1000);
      const url = await getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: key }), {
        expiresIn: expiresInSeconds,
      });
      // A link signed with temporary credentials dies with them, whatever X-Amz-Expires says.
      const credentials = await this.client.config.credentials();
      const expiration = credentials.expiration;
      return { url, expiresAt: expiration && expiration < requested ? expiration : requested };
    } catch (err) {
      throw this.failure('presign GetObject', key, err);
    }
  }

  private async deleteBatch(batch: string[]): Promise<void> {
    let res: DeleteObjectsCommandOutput;
    try {
      res = await this.client.send(
        new DeleteObjectsCommand({
          Bucket: this.bucket,
          Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
        }),
      );
    } catch (err) {
      throw this.failure('DeleteObjects', `${batch[0]} (and ${batch.length - 1} more)`, err);
    }
    const errors = res.Errors ?? [];
    if (errors.length > 0) {
      const shown = errors
        .slice(0, 10)
        .map((e) => `${e.Key}: ${e.Code ?? 'error'}${e.Message ? ` (${e.Message})` : ''}`)
        .join('; ');
      const more = errors.length > 10 ? `; and ${errors.length - 10} more` : '';
      throw new StorageError(
        `S3 DeleteObjects in bucket ${this.bucket} failed for ${errors.length} of ${batch.length} keys: ${shown}${more}`,
        ExitCode.STORAGE,
      );
    }
  }

  /** The body of an object; a missing object is an ObjectNotFoundError. */
  private async getObjectBody(key: string) {
    let res: GetObjectCommandOutput;
    try {
      res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (err) {
      throw isObjectMissing(err) ? new ObjectNotFoundError(key) : this.failure('GetObject', key, err);
    }
    if (!res.Body) throw this.failure('GetObject', key, new Error('response has no body'));
    return res.Body;
  }

  private failure(operation: string, key: string, err: unknown): StorageError {
    return new StorageError(failedCallMessage(`S3 ${operation} of s3://${this.bucket}/${key}`, err, true), ExitCode.STORAGE, {
      cause: err,
    });
  }
}
