/** Lambda: EventBridge "Batch Job State Change" to FAILED -> fail the run, email, clean up. */
import { handleJobStateEvent, type JobFailedOutcome } from './handlers/on-job-failed';
import { lambdaDeps } from './runtime-deps';

const deps = lambdaDeps(process.env, 'on-job-failed');

/** The event is parsed (runtime/events.ts); a malformed one is logged and dropped. */
export async function handler(event: unknown): Promise<JobFailedOutcome> {
  return handleJobStateEvent(deps, event);
}
