/**
 * cleanup: deletes the run's chunk files, result parts and chunk state in batches. The run record
 * stays, with its final status and counts, as history (DynamoDB's TTL removes it later).
 */
import { keys } from '../../runtime/model';
import { nowOf, type StageContext } from './context';

export async function runCleanup(ctx: StageContext): Promise<{ objects: number; chunks: number }> {
  const run = await ctx.table.getRun(ctx.runId);
  if (!run) throw new Error(`run ${ctx.runId} does not exist in the run table`);
  const batch: string[] = [];
  let objects = 0;
  for await (const obj of ctx.store.list(keys.workPrefix(ctx.runId))) {
    batch.push(obj.key);
    if (batch.length >= 5_000) {
      objects += batch.length;
      await ctx.store.deleteMany(batch.splice(0));
    }
  }
  objects += batch.length;
  await ctx.store.deleteMany(batch);
  const chunks = run.counts?.chunks ?? 0;
  if (chunks > 0) await ctx.table.deleteChunks(ctx.runId, chunks);
  await ctx.table.updateRun(ctx.runId, { cleanedAt: nowOf(ctx) });
  ctx.log.info('cleanup done', { objects, chunks });
  return { objects, chunks };
}
