/** Lambda: EventBridge "Batch Job State Change" to FAILED -> fail the run, email, clean up. */
import type { EventBridgeEvent } from 'aws-lambda';
import { handleJobFailed, type BatchJobFailedDetail, type JobFailedOutcome } from './handlers/on-job-failed';
import { lambdaDeps } from './runtime-deps';

const deps = lambdaDeps(process.env, 'on-job-failed');

export async function handler(
  event: EventBridgeEvent<'Batch Job State Change', BatchJobFailedDetail>,
): Promise<JobFailedOutcome> {
  return handleJobFailed(deps, event.detail);
}
