/** Lambda: S3 ObjectCreated under intake/<pipeline>/ -> open a run and submit split. */
import type { S3Event } from 'aws-lambda';
import { decodeS3Key, handleObjectCreated, type IntakeOutcome } from './handlers/on-intake';
import { lambdaDeps } from './runtime-deps';

const deps = lambdaDeps(process.env, 'on-intake');

export async function handler(event: S3Event): Promise<IntakeOutcome[]> {
  const outcomes: IntakeOutcome[] = [];
  for (const record of event.Records ?? []) {
    outcomes.push(
      await handleObjectCreated(deps, {
        bucket: record.s3.bucket.name,
        key: decodeS3Key(record.s3.object.key),
        size: record.s3.object.size,
        eTag: record.s3.object.eTag,
        versionId: record.s3.object.versionId,
        sequencer: record.s3.object.sequencer,
        eventTime: record.eventTime,
      }),
    );
  }
  return outcomes;
}
