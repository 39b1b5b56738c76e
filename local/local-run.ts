/**
 * A whole pipeline run on one machine: starts the emulators on loopback, uploads the file to the
 * intake folder, and lets the S3 event, the handlers and the job stages run through the local job
 * runner, exactly as on AWS but for the runner and the event wiring. Writes the result workbook
 * and the email (.eml, as the SES emulator received it) to the output folder.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findPipeline, type AppConfig } from '../runtime/config/schema';
import { errorMessage } from '../runtime/errors';
import { createPorts } from '../runtime/ports-factory';
import type { AwsClients } from '../runtime/adapters/clients';
import type { ObjectStore } from '../runtime/ports';
import type { HandlerDeps } from '../runtime/run/deps';
import { handleJobFailed } from '../lambda/handlers/on-job-failed';
import { decodeS3Key, handleObjectCreated, type IntakeOutcome } from '../lambda/handlers/on-intake';
import { handleSplitDone } from '../lambda/handlers/on-split-done';
import { silentLogger, type Logger } from '../runtime/log';
import type { RunStatus } from '../runtime/lifecycle';
import type { JobStage, RunRecord } from '../runtime/model';
import type { SplitDoneNotifier } from '../runtime/ports';
import { startBatchControl, type BatchControl } from './batch-control';
import { removeKeptEndpoints, writeKeptEndpoints } from './kept-run';
import { startEmulators, type ReceivedMail, type S3EventRecordLike } from './emulators';
import { LocalJobRunner, type LocalJob, type LocalJobRunnerOptions, type ProgressMessage } from './job-runner';
import { downloadFileOutputs } from './files-output';
import { bundleStages, type StageBundle } from './stage-bundle';

/** The project root (this file is local/local-run.ts). */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export interface LocalRunOptions {
  /** The file to process (uploaded to the intake folder), unless `begin` starts the run. */
  file?: string;
  pipeline: string;
  config: AppConfig;
  /** Where the workbook and email go. @default ./fanout-out/<runId> */
  outDir?: string;
  /**
   * Feeds the intake folder instead of uploading `file` (a local SFTP pull: local/local-pull.ts),
   * with the emulated store and the clients of the emulators.
   */
  feed?: (ports: { store: ObjectStore; clients: AwsClients; table: string }) => Promise<void>;
  /** Upload under this key instead of intake/<pipeline>/<file name> (to try other folders). */
  intakeKey?: string;
  /** Upload these (in order) instead of `file`: a dataset pipeline's batch folder (local/merge-run.ts). */
  uploads?: Array<{ key: string; file: string }>;
  /** Extra environment for the jobs (credentials, FANOUT_OSRM_BASE_URL...). */
  env?: Record<string, string>;
  /** Child processes at once. @default - twice the CPU count, at least 2 */
  maxParallel?: number;
  /** Attempts per job, as a Batch retry strategy. @default 3 */
  attempts?: number;
  /** Per-attempt timeout. @default 15 minutes */
  timeoutMs?: number | ((stage: JobStage) => number);
  /** Test hook: stop fan-out attempts after N outcomes (LocalJobRunnerOptions.stopAfterItems). @default - none */
  stopAfterItems?: LocalJobRunnerOptions['stopAfterItems'];
  /** Upload the same file twice (duplicated S3 event) — for trying idempotency. */
  duplicateEvent?: boolean;
  /** Handler logs; silent by default (the stages' logs go to <outDir>/jobs.log). */
  log?: Logger;
  onJob?: (job: LocalJob) => void;
  onProgress?: (job: LocalJob, report: ProgressMessage) => void;
  /**
   * Keep the emulators' data in this folder (created if missing, never deleted), and while the run
   * goes, serve the job runner's TerminateJob/CancelJob and name the endpoints in
   * `<keepDir>/endpoints.json` (local/kept-run.ts), for the operating commands.
   */
  keepDir?: string;
  /** Starts the run in place of an upload (e.g. a redrive announcing its split); answers its run id. */
  begin?: (stack: LocalStack) => Promise<string>;
}

/** What `begin` may use: the same ports the handlers use, and split's announcement. */
export interface LocalStack {
  deps: HandlerDeps;
  notifier: SplitDoneNotifier;
}

export interface LocalRunResult {
  runId: string;
  pipeline: string;
  status: RunStatus | 'UNKNOWN';
  items: number;
  succeeded: number;
  failed: number;
  chunks: number;
  resultFile?: string;
  emailFile?: string;
  emailFiles: string[];
  durationMs: number;
  error?: string;
  outDir: string;
  run?: RunRecord;
  jobs: LocalJob[];
  mails: ReceivedMail[];
  intake: IntakeOutcome[];
}

/** Environment variables a job may take from the caller's shell: its credential and proxies for tsx. */
function passthroughEnv(config: AppConfig, pipeline: string): Record<string, string> {
  const names = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ', 'FANOUT_OSRM_BASE_URL'];
  const p = findPipeline(config, pipeline);
  if (p?.shape === 'items' && p.task.type === 'http-lookup' && p.task.credential) names.push(p.task.credential.env);
  const env: Record<string, string> = {};
  for (const n of names) if (process.env[n] !== undefined) env[n] = process.env[n]!;
  return env;
}

export async function runLocal(opts: LocalRunOptions): Promise<LocalRunResult> {
  const started = Date.now();
  const dataDir = opts.keepDir ? resolve(opts.keepDir) : await mkdtemp(join(tmpdir(), 'fanout-local-'));
  await mkdir(dataDir, { recursive: true });
  const emulators = await startEmulators({ dataDir, persist: opts.keepDir !== undefined });
  const workDir = join(dataDir, 'jobs');
  await mkdir(workDir, { recursive: true });
  const logFile = join(dataDir, 'jobs.log');
  const log = opts.log ?? silentLogger;
  let runner: LocalJobRunner | undefined;
  let bundle: StageBundle | undefined;
  let control: BatchControl | undefined;
  try {
    bundle = await bundleStages(PROJECT_ROOT);
    const stageEntry = bundle.file;
    // The handlers run in-process on the same ports the jobs build from their environment.
    const { store, table, mailer, clients } = createPorts(
      { FANOUT_BUCKET: emulators.bucket, FANOUT_TABLE: emulators.table, FANOUT_MAIL_MAX_BYTES: emulators.sesMaxMessageBytes },
      emulators.env,
    );
    const jobEnv: Record<string, string> = {
      ...passthroughEnv(opts.config, opts.pipeline),
      ...emulators.env,
      FANOUT_EVENTS: 'ipc',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      FANOUT_MAIL_MAX_BYTES: String(emulators.sesMaxMessageBytes),
      FANOUT_TMP_DIR: workDir,
      ...opts.env,
    };
    let deps: HandlerDeps;
    runner = new LocalJobRunner({
      env: jobEnv,
      commandFor: (stage) => ({
        command: process.execPath,
        args: ['--enable-source-maps', stageEntry, stage],
        cwd: PROJECT_ROOT,
      }),
      maxParallel: opts.maxParallel ?? Math.max(2, availableParallelism() * 2),
      attempts: opts.attempts ?? 3,
      timeoutMs: opts.timeoutMs,
      stopAfterItems: opts.stopAfterItems,
      onSplitDone: (m) => handleSplitDone(deps, m),
      onJobFailed: (d) => handleJobFailed(deps, d),
      onProgress: opts.onProgress,
      onStateChange: opts.onJob,
      logFile,
    });
    deps = { config: opts.config, store, table, jobs: runner, mailer, log };
    if (opts.keepDir) {
      control = await startBatchControl(runner);
      const env = { ...emulators.env, AWS_ENDPOINT_URL_BATCH: control.endpoint };
      await writeKeptEndpoints(dataDir, { pid: process.pid, env, bucket: emulators.bucket, table: emulators.table });
    }

    const intake: IntakeOutcome[] = [];
    const r = runner;
    const received: S3EventRecordLike[] = [];
    const dispatch = (record: S3EventRecordLike) => {
      const key = decodeS3Key(record.s3.object.key);
      if (!key.startsWith('intake/')) return;
      received.push(record);
      r.track(
        handleObjectCreated(deps, {
          bucket: record.s3.bucket.name,
          key,
          size: record.s3.object.size,
          eTag: record.s3.object.eTag,
          sequencer: record.s3.object.sequencer,
          eventTime: record.eventTime,
        }).then((o) => intake.push(o)),
      );
    };
    emulators.onObjectCreated(dispatch);
    if (opts.begin) {
      const notifier: SplitDoneNotifier = { publishSplitDone: async (m) => r.track(handleSplitDone(deps, m)) };
      intake.push({ action: 'started', runId: await opts.begin({ deps, notifier }), jobId: '' });
    } else if (opts.feed) {
      await opts.feed({ store, clients, table: emulators.table });
    } else {
      const file = opts.file;
      const uploads = opts.uploads ?? (file ? [{ key: opts.intakeKey ?? `intake/${opts.pipeline}/${basename(file)}`, file }] : []);
      if (uploads.length === 0) throw new Error('runLocal needs a file or uploads to upload, feed or begin');
      for (const u of uploads) await store.put(u.key, createReadStream(u.file));
    }
    await runner.idle();
    if (opts.duplicateEvent && received[0]) {
      // Deliver the same notification again, as S3 may: it must start nothing twice.
      dispatch(received[0]);
      await runner.idle();
    }

    const first = intake.find((o) => 'runId' in o);
    if (!first || !('runId' in first)) {
      const why = intake[0] && 'why' in intake[0] ? intake[0].why : 'no S3 event arrived';
      throw new Error(`the upload started no run: ${why}`);
    }
    const runId = first.runId;
    const run = await table.getRun(runId);
    const outDir = resolve(opts.outDir ?? join('fanout-out', runId));
    await mkdir(outDir, { recursive: true });
    let resultFile: string | undefined;
    if (run?.resultKey) {
      // Streamed: a result CSV past Excel's row limit can be larger than memory should hold.
      for (const key of [run.resultKey, ...(run.extraResultKeys ?? [])]) {
        await pipeline(await store.getStream(key), createWriteStream(join(outDir, basename(key))));
      }
      resultFile = join(outDir, basename(run.resultKey));
    }
    if (run?.config?.shape === 'files') await downloadFileOutputs(store, run, outDir);
    const mails = await emulators.listMail();
    const emailFiles: string[] = [];
    for (const [n, mail] of mails.entries()) {
      const file = join(outDir, mails.length === 1 ? 'email.eml' : `email-${n + 1}.eml`);
      await writeFile(file, await emulators.getEml(mail.messageId));
      emailFiles.push(file);
    }
    await copyFile(logFile, join(outDir, 'jobs.log')).catch(() => undefined);
    return {
      runId,
      pipeline: opts.pipeline,
      status: run?.status ?? 'UNKNOWN',
      items: run?.counts?.items ?? 0,
      succeeded: run?.counts?.succeeded ?? 0,
      failed: run?.counts?.failed ?? 0,
      chunks: run?.counts?.chunks ?? 0,
      resultFile,
      emailFile: emailFiles[0],
      emailFiles,
      durationMs: Date.now() - started,
      error: run?.error,
      outDir,
      run,
      jobs: runner.list(),
      mails,
      intake,
    };
  } finally {
    await runner?.stop().catch((err: unknown) => log.warn('stopping the job runner failed', { error: errorMessage(err) }));
    if (opts.keepDir) await removeKeptEndpoints(dataDir);
    await control?.close();
    await emulators.stop();
    await bundle?.remove();
    if (!opts.keepDir) await rm(dataDir, { recursive: true, force: true });
  }
}
