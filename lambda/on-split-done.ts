/** Lambda: SNS "split done" -> submit fan-out, consolidate (after it) and cleanup (after that). */
import type { SNSEvent } from 'aws-lambda';
import { handleSplitDone, parseSplitDone, type SplitDoneOutcome } from './handlers/on-split-done';
import { lambdaDeps } from './runtime-deps';

const deps = lambdaDeps(process.env, 'on-split-done');

export async function handler(event: SNSEvent): Promise<SplitDoneOutcome[]> {
  const outcomes: SplitDoneOutcome[] = [];
  for (const record of event.Records ?? []) {
    outcomes.push(await handleSplitDone(deps, parseSplitDone(record.Sns.Message)));
  }
  return outcomes;
}
