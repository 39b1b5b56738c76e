/**
 * The job container's entry point: `node --import tsx batch-jobs/main.ts <stage>`, with stage one
 * of split | fanout | consolidate | cleanup. Reads its environment once (runtime/env.ts), builds
 * the ports, runs the stage and exits with a code that tells Batch whether a retry can help
 * (runtime/errors.ts ExitCode).
 */
import { realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import { ConfigError, maxInFlight, requireShape, type ItemsPipelineConfig } from '../runtime/config/schema';
import { jobEnvSchema, parseEnv, type Env, type JobEnv } from '../runtime/env';
import { EnvironmentError, errorMessage, ExitCode, InputError, StorageError, TerminatedError } from '../runtime/errors';
import { fail } from '../runtime/lifecycle';
import { createLogger, type Logger } from '../runtime/log';
import { STAGES, type JobStage } from '../runtime/model';

/** Every stage this container runs: the items stages, and the merge of dataset pipelines. */
const JOB_STAGES: readonly JobStage[] = [...STAGES, 'merge'];
import type { SplitDoneNotifier } from '../runtime/ports';
import type { SdkCall } from '../runtime/adapters/clients';
import { createPorts } from '../runtime/ports-factory';
import type { ProgressReport, StageContext } from './stages/context';
import { stopAfterItemsHook } from './stop-after-items';
// Each stage's module is imported when that stage runs (below), so a fan-out child does not load
// DuckDB, the SFTP client or the workbook writer: a local run's bundle splits them into chunks of
// their own (local/stage-bundle.ts), and a wave of children starts in a fraction of the time.

/** Messages a local run's job runner receives from a stage over IPC. */
export type StageIpcMessage =
  | { type: 'split-done'; message: import('../runtime/ports').SplitDoneMessage }
  | { type: 'progress'; report: ProgressReport }
  | { type: 'sdk-call'; call: SdkCall };

let unsentCalls = 0;
let allCallsSent: (() => void) | undefined;
/** A local run's job runner records every AWS call of its jobs (for the IAM check); on AWS there is no IPC channel. */
function ipcCalls(): ((call: SdkCall) => void) | undefined {
  if (!process.send) return undefined;
  return (call) => {
    if (!process.connected) return;
    unsentCalls++;
    process.send?.({ type: 'sdk-call', call } satisfies StageIpcMessage, undefined, {}, () => {
      if (--unsentCalls === 0) allCallsSent?.();
    });
  };
}

/** Waits until every recorded call has reached the parent (before the IPC channel closes). */
function callsSent(): Promise<void> {
  return unsentCalls === 0 ? Promise.resolve() : new Promise((r) => (allCallsSent = r));
}

function ipcNotifier(): SplitDoneNotifier {
  return {
    publishSplitDone: async (message) => {
      const send = process.send?.bind(process);
      if (!send) throw new EnvironmentError('FANOUT_EVENTS=ipc but this process has no IPC channel to a parent');
      await new Promise<void>((resolve, reject) =>
        send({ type: 'split-done', message } satisfies StageIpcMessage, undefined, {}, (err) => (err ? reject(err) : resolve())),
      );
    },
  };
}

function ipcProgress(): ((r: ProgressReport) => void) | undefined {
  if (!process.send) return undefined;
  let last = 0;
  return (report) => {
    const now = Date.now();
    if (now - last < 200 && report.done < report.total) return;
    last = now;
    process.send?.({ type: 'progress', report } satisfies StageIpcMessage);
  };
}

/**
 * What a task reads from the environment: the data-source credential, under the name its pipeline
 * config gives (a Batch secret on AWS), and the managed OSRM server's URL.
 */
function taskEnv(pipeline: ItemsPipelineConfig, env: Env, jobEnv: JobEnv): Env {
  const credential = pipeline.task.type === 'http-lookup' ? pipeline.task.credential?.env : undefined;
  return {
    ...(credential !== undefined ? { [credential]: env[credential] } : {}),
    FANOUT_OSRM_BASE_URL: jobEnv.FANOUT_OSRM_BASE_URL,
  };
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof InputError) return ExitCode.BAD_INPUT;
  if (err instanceof EnvironmentError || err instanceof ConfigError) return ExitCode.BAD_CONFIG;
  if (err instanceof StorageError) return err.exitCode;
  if (err instanceof TerminatedError) return ExitCode.TERMINATED;
  return ExitCode.INTERNAL;
}

export async function main(argv: string[], env: Env): Promise<number> {
  const stage = argv[0] as JobStage;
  const log: Logger = createLogger({ fields: { stage } });
  // A scheduled SFTP pull is a job of its own, outside any run.
  if (argv[0] === 'sftp-pull') return (await import('./sftp/pull-job')).runSftpPullJob(env);
  if (!(JOB_STAGES as readonly string[]).includes(stage)) {
    log.error(`unknown stage "${argv[0] ?? ''}"; expected one of ${JOB_STAGES.join(', ')}`);
    return ExitCode.BAD_CONFIG;
  }
  let ctx: StageContext;
  let onOutcome: ((recorded: number) => void) | undefined;
  const abort = new AbortController();
  let jobEnv: JobEnv;
  try {
    jobEnv = parseEnv(jobEnvSchema(stage), env, `${stage} job`);
    const { store, table, mailer, splitDone } = createPorts(jobEnv, env, { onCall: ipcCalls() });
    const runId = jobEnv.FANOUT_RUN_ID;
    const notifier: SplitDoneNotifier =
      jobEnv.FANOUT_EVENTS === 'ipc'
        ? ipcNotifier()
        : (splitDone ?? {
            publishSplitDone: async () => {
              throw new Error('only split announces');
            },
          });
    ctx = {
      runId,
      store,
      table,
      mailer,
      notifier,
      log: log.child({ runId }),
      env: jobEnv,
      arrayIndex: jobEnv.AWS_BATCH_JOB_ARRAY_INDEX,
      attempt: jobEnv.AWS_BATCH_JOB_ATTEMPT,
      tmpDir: jobEnv.FANOUT_TMP_DIR ?? tmpdir(),
      signal: abort.signal,
      progress: ipcProgress(),
      resultLinkDays: jobEnv.FANOUT_RESULT_LINK_DAYS,
    };
    onOutcome = stopAfterItemsHook(env, process.send !== undefined);
  } catch (err) {
    log.error('cannot start: bad environment', { error: errorMessage(err) });
    return exitCodeFor(err);
  }
  const onTerm = () => {
    ctx.log.warn('termination signal: saving progress and stopping');
    abort.abort(new Error('terminated'));
  };
  process.once('SIGTERM', onTerm);
  process.once('SIGINT', onTerm);
  try {
    switch (stage) {
      case 'split':
        // The split job definition lists the files of a files-shape run.
        if (await (await import('./stages/files-shape')).filesRun(ctx)) await (await import('./stages/list')).runList(ctx);
        else await (await import('./stages/split')).runSplit(ctx);
        break;
      case 'fanout': {
        const [{ runFanout }, { createTask }, { runFilesFanoutTask }] = await Promise.all([
          import('./stages/fanout'),
          import('./tasks'),
          import('./stages/files-shape'),
        ]);
        await runFanout(ctx, {
          createTask: (p) => createTask(p.task, { env: taskEnv(p, env, jobEnv), concurrency: maxInFlight(p) }),
          createFileTask: (p) => runFilesFanoutTask(ctx, p),
          onOutcome,
        });
        break;
      }
      case 'consolidate':
        // The consolidate job definition writes the summary of a files-shape run.
        if (await (await import('./stages/files-shape')).filesRun(ctx)) await (await import('./stages/summary')).runSummary(ctx);
        else {
          const [{ runConsolidate }, { describeTaskOutput }] = await Promise.all([import('./stages/consolidate'), import('./tasks')]);
          await runConsolidate(ctx, { describeOutput: (run) => describeTaskOutput(requireShape(run.config!, 'items').task) });
        }
        break;
      case 'cleanup':
        await (await import('./stages/cleanup')).runCleanup(ctx);
        break;
      case 'merge':
        await (await import('./stages/merge')).runMerge(ctx);
        break;
    }
    return ExitCode.OK;
  } catch (err) {
    const code = exitCodeFor(err);
    ctx.log.error(`${stage} failed`, { error: errorMessage(err), exitCode: code });
    if (err instanceof InputError) {
      // Bad input is final: record the reason a person can act on; on-job-failed emails it.
      await fail(ctx.table, ctx.runId, err.message, Date.now()).catch((e: unknown) =>
        ctx.log.error('could not record the input error', { error: errorMessage(e) }),
      );
    }
    return code;
  }
}

// Run when started as a program (directly, through tsx, or as the local runner's bundle), not when imported.
const isEntry = process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
if (isEntry) {
  main(process.argv.slice(2), process.env).then(
    async (code) => {
      process.exitCode = code;
      await callsSent();
      if (process.send) process.disconnect?.();
    },
    (err: unknown) => {
      console.error(err);
      process.exitCode = ExitCode.INTERNAL;
    },
  );
}
