/** Lambda: SNS "split done" -> submit fan-out, consolidate (after it) and cleanup (after that). */
import type { SNSEvent } from 'aws-lambda';
import { handleSplitDone, type SplitDoneOutcome } from '../runtime/handlers/on-split-done';
import type { SplitDoneMessage } from '../runtime/ports';
import { lambdaDeps } from './runtime-deps';

const deps = lambdaDeps(process.env, 'on-split-done');

export function parseSplitDone(body: string): SplitDoneMessage {
  const m = JSON.parse(body) as Partial<SplitDoneMessage>;
  if (typeof m.runId !== 'string' || typeof m.pipeline !== 'string' || typeof m.chunks !== 'number') {
    throw new Error(`not a split-done message: ${body.slice(0, 200)}`);
  }
  return { runId: m.runId, pipeline: m.pipeline, chunks: m.chunks, items: Number(m.items ?? 0) };
}

export async function handler(event: SNSEvent): Promise<SplitDoneOutcome[]> {
  const outcomes: SplitDoneOutcome[] = [];
  for (const record of event.Records ?? []) {
    outcomes.push(await handleSplitDone(deps, parseSplitDone(record.Sns.Message)));
  }
  return outcomes;
}
