/** Lambda: SNS "split done" -> submit fan-out, consolidate (after it) and cleanup (after that). */
import { handleSplitDoneEvent, type SplitDoneOutcome } from './handlers/on-split-done';
import { lambdaDeps } from './runtime-deps';

const deps = lambdaDeps(process.env, 'on-split-done');

/** The event is parsed (runtime/events.ts); a malformed one is logged and dropped. */
export async function handler(event: unknown): Promise<SplitDoneOutcome[]> {
  return handleSplitDoneEvent(deps, event);
}
