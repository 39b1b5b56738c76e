/**
 * How the `files` shape rides on the job chain of the items shape: the split job definition runs
 * `list`, the fan-out runs the pipeline's per-file task on each file, and the consolidate job
 * definition runs `summary`. batch-jobs/main.ts asks these two questions.
 */
import type { FilesPipelineConfig } from '../../runtime/config/schema';
import { createFileTask, fileTaskAsItemTask } from '../tasks/file-items';
import type { Task } from '../tasks/task';
import type { StageContext } from './context';
import { filesKeys } from './list';

/** Whether the context's run belongs to a files pipeline. */
export async function filesRun(ctx: Pick<StageContext, 'table' | 'runId'>): Promise<boolean> {
  return (await ctx.table.getRun(ctx.runId))?.config?.shape === 'files';
}

/** The fan-out task of a files pipeline: its per-file task, writing under the run's result folder. */
export function runFilesFanoutTask(ctx: StageContext, pipeline: FilesPipelineConfig): Task {
  return fileTaskAsItemTask(createFileTask(pipeline.task), {
    store: ctx.store,
    outputPrefix: filesKeys.outputPrefix(pipeline.name, ctx.runId),
  });
}
