/** Lambda: S3 ObjectCreated under intake/<pipeline>/ -> open a run and submit split. */
import { handleS3Event, type IntakeOutcome } from './handlers/on-intake';
import { lambdaDeps } from './runtime-deps';

const deps = lambdaDeps(process.env, 'on-intake');

/** The event is parsed (runtime/events.ts); a malformed one is logged and dropped. */
export async function handler(event: unknown): Promise<IntakeOutcome[]> {
  return handleS3Event(deps, event);
}
