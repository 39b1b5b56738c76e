/**
 * The events that cross a process boundary, as zod schemas: the "split done" message split
 * publishes on SNS, and the envelopes AWS hands the Lambda handlers (an S3 notification, an SNS
 * notification, an EventBridge "Batch Job State Change"). A handler parses what arrives with these;
 * what does not match is logged with what was wrong and dropped, never half-read.
 *
 * Only the fields the handlers read are declared; others are let through unread (AWS adds fields).
 */
import { z } from 'zod';

/** Split's announcement that a run's chunks are written (SNS message body, JSON). */
export const splitDoneMessageSchema = z.object({
  runId: z.string().min(1),
  pipeline: z.string().min(1),
  chunks: z.number().int().nonnegative(),
  /** Older messages may lack it. @default 0 */
  items: z.number().int().min(0).default(0),
});
export type SplitDoneMessage = z.output<typeof splitDoneMessageSchema>;

/** An SNS notification as Lambda receives it: one record per message. */
export const snsEventSchema = z.object({
  Records: z.array(z.object({ Sns: z.object({ Message: z.string(), MessageId: z.string().optional() }) })),
});

/** An S3 event notification as Lambda receives it (no Records: S3's test event on configuration). */
export const s3EventSchema = z.object({
  Records: z
    .array(
      z.object({
        eventTime: z.string(),
        s3: z.object({
          bucket: z.object({ name: z.string().min(1) }),
          object: z.object({
            key: z.string().min(1),
            size: z.number().optional(),
            eTag: z.string().optional(),
            versionId: z.string().optional(),
            sequencer: z.string().optional(),
          }),
        }),
      }),
    )
    .optional(),
});
export type S3EventRecord = NonNullable<z.output<typeof s3EventSchema>['Records']>[number];

const containerSchema = z.object({
  exitCode: z.number().int().optional(),
  reason: z.string().optional(),
  /** The CloudWatch Logs stream of the job's container. */
  logStreamName: z.string().optional(),
});

/** The `detail` of an EventBridge "Batch Job State Change" event: the parts the handlers read. */
export const batchJobDetailSchema = z.object({
  jobName: z.string(),
  jobId: z.string(),
  status: z.string(),
  statusReason: z.string().optional(),
  /** SubmitJob parameters: the handlers set runId, stage and pipeline; an SFTP source's schedule sets source. */
  parameters: z.record(z.string(), z.string()).optional(),
  container: containerSchema.optional(),
  attempts: z.array(z.object({ container: containerSchema.optional(), statusReason: z.string().optional() })).optional(),
  arrayProperties: z.object({ index: z.number().int().optional(), size: z.number().int().optional() }).optional(),
});
export type BatchJobDetail = z.output<typeof batchJobDetailSchema>;

/** An EventBridge "Batch Job State Change" event (https://docs.aws.amazon.com/batch/latest/userguide/batch_job_events.html). */
export const batchJobStateChangeSchema = z.object({
  source: z.literal('aws.batch'),
  'detail-type': z.literal('Batch Job State Change'),
  detail: batchJobDetailSchema,
});

/** What was wrong with an event, one line per problem, each with its path (`Records.0.Sns.Message: ...`). */
export function describeProblems(error: z.ZodError): string[] {
  return error.issues.map((issue) => `${issue.path.length > 0 ? issue.path.map(String).join('.') : '(the event)'}: ${issue.message}`);
}

/** A short quote of what arrived, for a log line. */
export function quote(value: unknown, max = 300): string {
  let text: string;
  try {
    text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  } catch {
    text = String(value);
  }
  return text.length > max ? `${text.slice(0, max)}...` : text;
}
