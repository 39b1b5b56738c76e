/**
 * A whole pipeline run on one machine, driven by the synthesized app (local/twin/): the app is
 * synthesized (cached), the emulators start on loopback, and the templates decide the wiring.
 * The upload's S3 notification reaches the Lambda whose prefix and suffix filter matches it; each
 * handler runs with its Lambda's environment and clients; its SubmitJob goes to the job queue and
 * job definition it names (command, environment, retry strategy, timeout, vCPUs and memory from
 * the template); split's Publish reaches the topic's subscribers; Batch's job state events reach
 * a rule's target only when the rule's event pattern matches. Every AWS call is checked against
 * the synthesized IAM policies of its principal; a denied call fails the run. Writes the result
 * workbook and the email (.eml, as the SES emulator received it) to the output folder. With
 * `keepDir` the emulators keep their data there, and while the run goes its endpoints (the twin's
 * Batch with TerminateJob/CancelJob included) are named in `<keepDir>/endpoints.json` for the
 * operating commands (local/kept-run.ts).
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPorts } from '../runtime/ports-factory';
import type { AwsClients } from '../runtime/adapters/clients';
import { createAwsClients } from '../runtime/adapters/clients';
import { SnsSplitDoneNotifier } from '../runtime/adapters/sns-notifier';
import type { ObjectStore, RunTable, SplitDoneNotifier } from '../runtime/ports';
import { findPipeline, type AppConfig } from '../runtime/config/schema';
import { errorMessage } from '../runtime/errors';
import type { HandlerDeps } from '../runtime/run/deps';
import { handleJobStateEvent } from '../lambda/handlers/on-job-failed';
import { decodeS3Key, handleS3Event, type IntakeOutcome } from '../lambda/handlers/on-intake';
import { handleSplitDoneEvent } from '../lambda/handlers/on-split-done';
import { lambdaDeps } from '../lambda/runtime-deps';
import { silentLogger, type Logger } from '../runtime/log';
import type { RunStatus } from '../runtime/lifecycle';
import type { JobStage, RunRecord } from '../runtime/model';
import { startEmulators, type ReceivedMail, type S3EventRecordLike } from './emulators';
import { removeKeptEndpoints, writeKeptEndpoints } from './kept-run';
import { LocalJobRunner, type Interruption, type LocalJob, type LocalJobRunnerOptions, type ProgressMessage } from './job-runner';
import { downloadFileOutputs } from './files-output';
import { bundleStages, type StageBundle } from './stage-bundle';
import { startControlPlane, type ControlPlane } from './twin/control-plane';
import { matchesEventPattern } from './twin/event-pattern';
import { describeDenials, IamLedger, type DeniedCall } from './twin/iam';
import { recordUsage } from './twin/iam-usage';
import { synthTemplates } from './twin/synth';
import { STACK_OUTPUTS } from '../lib/stack-output-names';
import {
  handlerEntryOf,
  readTwinModel,
  stackOutput,
  TemplateError,
  type AppTemplates,
  type LambdaModel,
  type TwinModel,
} from './twin/template';

/** The project root (this file is local/local-run.ts). */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The account the twin's ARNs are in. */
export const TWIN_ACCOUNT = '123456789012';

export interface LocalRunOptions {
  /** The file to process (uploaded to the intake folder), unless `begin` starts the run. */
  file?: string;
  pipeline: string;
  config: AppConfig;
  /** Where the workbook and email go. @default ./fanout-out/<runId> */
  outDir?: string;
  /**
   * Feeds the intake folder instead of uploading `file` (a local SFTP pull: local/local-pull.ts),
   * with the emulated store and the clients of the emulators (the operator's: not IAM-checked).
   */
  feed?: (ports: { store: ObjectStore; clients: AwsClients; table: string }) => Promise<void>;
  /** Upload under this key instead of intake/<pipeline>/<file name> (to try other folders). */
  intakeKey?: string;
  /** Upload these (in order) instead of `file`: a dataset pipeline's batch folder (local/merge-run.ts). */
  uploads?: Array<{ key: string; file: string }>;
  /** Extra environment for the jobs (credentials, FANOUT_OSRM_BASE_URL...). */
  env?: Record<string, string>;
  /** vCPUs of job containers running at once. @default - twice the CPU count, at least 2 */
  maxParallel?: number;
  /** Deployment settings overrides the app is synthesized with (as `-c fanout=...`). @default none */
  deployment?: unknown;
  /** Changes the synthesized templates before the run reads them (tests: a removed grant, another retry rule). */
  editTemplates?: (templates: AppTemplates) => void;
  /** Stops a job attempt as AWS would (a Spot reclaim, a timeout), asked at each progress report. */
  interrupt?: (job: LocalJob, attempt: { index?: number; attempt: number }, report: ProgressMessage) => Interruption | undefined;
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
   * goes, name its endpoints (S3, DynamoDB, SES, and the twin's Batch with TerminateJob/CancelJob)
   * in `<keepDir>/endpoints.json` (local/kept-run.ts), for the operating commands.
   */
  keepDir?: string;
  /**
   * Starts the run in place of an upload (e.g. a redrive announcing its split, as the operator's
   * CLI does on AWS: not IAM-checked); answers its run id.
   */
  begin?: (stack: LocalStack) => Promise<string>;
}

/**
 * What `begin` may use, as the operator's CLI has against a deployed stack: the bucket and run
 * table, and "split done" published to the app's topic (the compute stack's SplitDoneTopicArn
 * output), whose subscription delivers it to on-split-done.
 */
export interface LocalStack {
  store: ObjectStore;
  table: RunTable;
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
  /** The IAM check: calls made, calls denied, and each denied permission. */
  iam: { calls: number; denied: number; deniedCalls: DeniedCall[] };
  /** The synthesized app the run was driven by. */
  twin: {
    key: string;
    cached: boolean;
    synthMs: number;
    /** Synth (or cache lookup) and reading the templates, before the emulators start. */
    setupMs: number;
    /** Waiting for the IAM verdicts after the last job ended (the rest overlaps the run). */
    iamWaitMs: number;
    model: TwinModel;
  };
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

/** Environment of the emulators the SDK reads (endpoints, region, credentials), without the app's names. */
function sdkEnv(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('AWS_')));
}

/** Which handler a Lambda of the app runs; one the twin cannot run is an error naming it. */
function handlerOf(lambda: LambdaModel): 'on-intake' | 'on-split-done' | 'on-job-failed' {
  const entry = handlerEntryOf(lambda);
  if (entry === 'on-intake' || entry === 'on-split-done' || entry === 'on-job-failed') return entry;
  throw new TemplateError(
    `Lambda ${lambda.logicalId} (${lambda.path}, handler ${lambda.handler}) is not one of the app's handlers the local run can invoke`,
  );
}

/** S3's filter: the key starts with the prefix and ends with the suffix, and the event is one of the configured ones. */
function notificationMatches(n: TwinModel['notifications'][number], bucket: string, key: string, eventName: string): boolean {
  const event = `s3:${eventName}`;
  const eventOk = n.events.some((e) => (e.endsWith('*') ? event.startsWith(e.slice(0, -1)) : e === event));
  return n.bucket === bucket && eventOk && key.startsWith(n.prefix) && key.endsWith(n.suffix);
}

export async function runLocal(opts: LocalRunOptions): Promise<LocalRunResult> {
  const started = Date.now();
  const synth = await synthTemplates({ projectRoot: PROJECT_ROOT, config: opts.config, deployment: opts.deployment });
  const templates: AppTemplates = opts.editTemplates ? (structuredClone(synth.templates) as AppTemplates) : synth.templates;
  opts.editTemplates?.(templates);
  let setupMs = 0;
  const dataDir = opts.keepDir ? resolve(opts.keepDir) : await mkdtemp(join(tmpdir(), 'fanout-local-'));
  await mkdir(dataDir, { recursive: true });
  const emulatorsStarted = Date.now();
  const emulators = await startEmulators({ dataDir, persist: opts.keepDir !== undefined });
  const emulatorsMs: number | undefined = Date.now() - emulatorsStarted;
  const workDir = join(dataDir, 'jobs');
  await mkdir(workDir, { recursive: true });
  const logFile = join(dataDir, 'jobs.log');
  const log = opts.log ?? silentLogger;
  let runner: LocalJobRunner | undefined;
  let bundle: StageBundle | undefined;
  let control: ControlPlane | undefined;
  try {
    const model = readTwinModel(templates, {
      account: TWIN_ACCOUNT,
      region: emulators.env.AWS_REGION ?? 'us-east-1',
      bucket: emulators.bucket,
      table: emulators.table,
    });
    setupMs = Date.now() - started - (emulatorsMs ?? 0);
    const ledger = new IamLedger(model);
    bundle = await bundleStages(PROJECT_ROOT);
    const stageEntry = bundle.file;
    // The run's own reads (the upload, the results) are the operator's, not the app's: not checked.
    const { store, table, clients } = createPorts({ FANOUT_BUCKET: emulators.bucket, FANOUT_TABLE: emulators.table }, emulators.env);

    const intake: IntakeOutcome[] = [];
    const lambdaDepsCache = new Map<string, HandlerDeps>();
    let r!: LocalJobRunner;
    const localEnv = () => ({
      ...sdkEnv(emulators.env),
      ...control!.env,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      FANOUT_MAIL_MAX_BYTES: String(emulators.sesMaxMessageBytes),
    });
    /** The handler deps of a Lambda: its template environment, the emulators' endpoints, calls recorded as its role's. */
    const depsOf = (lambda: LambdaModel): HandlerDeps => {
      let deps = lambdaDepsCache.get(lambda.arn);
      if (!deps) {
        const name = handlerOf(lambda);
        const env = { FANOUT_CONFIG: JSON.stringify(opts.config), ...lambda.environment, ...localEnv() };
        const principal = { roleArn: lambda.roleArn, label: `Lambda ${name}`, pipeline: opts.pipeline };
        deps = lambdaDeps(env, name, { log, mailMaxBytes: emulators.sesMaxMessageBytes, onCall: (call) => ledger.record(principal, call) });
        lambdaDepsCache.set(lambda.arn, deps);
      }
      return deps;
    };
    const lambdaAt = (arn: string, what: string): LambdaModel => {
      const lambda = model.lambdas.get(arn);
      if (!lambda) throw new TemplateError(`${what} targets ${arn}, which is not a Lambda of the app`);
      return lambda;
    };
    const invoke = (arn: string, what: string, run: (lambda: LambdaModel, deps: HandlerDeps) => Promise<unknown>) => {
      const lambda = lambdaAt(arn, what);
      r.track(run(lambda, depsOf(lambda)));
    };

    control = await startControlPlane(model, {
      submitJob: async (job) => {
        const stage = (job.parameters.stage ?? job.definition.command[0]) as JobStage;
        const exec = job.definition.executionRoleArn;
        if (exec) {
          // ECS reads the definition's secrets with its execution role before the container starts.
          for (const [name, from] of Object.entries(job.definition.secrets)) {
            const arn = /-[A-Za-z0-9]{6}$/.test(from) ? from : `${from}-AbCdEf`;
            ledger.recordPlatform(
              { roleArn: exec, label: `ECS starting ${stage} (execution role)` },
              { action: 'secretsmanager:GetSecretValue', resource: arn },
              `read secret for ${name}`,
            );
          }
        }
        // The JobRequest the handler made: the run id travels as FANOUT_RUN_ID (the runner sets it again).
        const { FANOUT_RUN_ID: runIdOverride, ...asked } = job.environment;
        return r.submitJob({
          request: {
            name: job.jobName,
            stage,
            runId: job.parameters.runId ?? runIdOverride ?? '',
            pipeline: job.parameters.pipeline ?? opts.pipeline,
            compute: job.queue.platform === 'FARGATE' ? 'fargate-spot' : 'ec2-spot',
            arraySize: job.arraySize,
            dependsOn: job.dependsOn.length > 0 ? job.dependsOn : undefined,
            environment: Object.keys(asked).length > 0 ? asked : undefined,
          },
          definition: { ...job.definition, arn: job.definition.arn },
          queue: job.queue.arn,
          parameters: job.parameters,
        });
      },
      // The operator's TerminateJob and CancelJob (fanout cancel --local DIR), as Batch answers them.
      terminateJob: (jobId, reason) => r.terminate(jobId, reason),
      cancelJob: (jobId, reason) => {
        const job = r.get(jobId);
        if (!job) return false;
        // CancelJob leaves a job that has started alone (and still succeeds), as on Batch.
        if (job.state !== 'RUNNING') r.terminate(jobId, reason);
        return true;
      },
      deliverSns: (functionArn, message) => {
        invoke(functionArn, `SNS subscription of ${message.topicArn}`, async (lambda, deps) => {
          if (handlerOf(lambda) !== 'on-split-done')
            throw new TemplateError(`SNS delivers to ${lambda.logicalId}, which is not on-split-done`);
          // The event as Lambda receives it from SNS, through the same parsing as the entry point.
          const attributes = Object.fromEntries(Object.entries(message.attributes).map(([k, v]) => [k, { Type: 'String', Value: v }]));
          return handleSplitDoneEvent(deps, {
            Records: [
              {
                EventSource: 'aws:sns',
                EventVersion: '1.0',
                EventSubscriptionArn: `${message.topicArn}:twin`,
                Sns: {
                  Type: 'Notification',
                  MessageId: message.messageId,
                  TopicArn: message.topicArn,
                  Message: message.message,
                  MessageAttributes: attributes,
                  Timestamp: new Date().toISOString(),
                },
              },
            ],
          });
        });
      },
    });

    const jobEnv: Record<string, string> = {
      ...passthroughEnv(opts.config, opts.pipeline),
      ...localEnv(),
      FANOUT_TMP_DIR: workDir,
      ...opts.env,
    };
    runner = new LocalJobRunner({
      env: jobEnv,
      launch: (command) => ({ command: process.execPath, args: ['--enable-source-maps', stageEntry, ...command], cwd: PROJECT_ROOT }),
      maxVcpus: opts.maxParallel ?? Math.max(2, availableParallelism() * 2),
      interrupt: opts.interrupt,
      stopAfterItems: opts.stopAfterItems,
      onEvent: (detail) => {
        const event = {
          version: '0',
          id: `${detail.jobId}-${detail.status}`,
          'detail-type': 'Batch Job State Change',
          source: 'aws.batch',
          account: model.names.account,
          time: new Date().toISOString(),
          region: model.names.region,
          resources: [detail.jobArn],
          detail,
        };
        for (const rule of model.rules) {
          if (!matchesEventPattern(rule.pattern, event, `rule ${rule.logicalId}`)) continue;
          for (const target of rule.targets) {
            invoke(target, `rule ${rule.logicalId}`, async (lambda, deps) => {
              if (handlerOf(lambda) !== 'on-job-failed')
                throw new TemplateError(`rule ${rule.logicalId} targets ${lambda.logicalId}, which is not on-job-failed`);
              return handleJobStateEvent(deps, event);
            });
          }
        }
      },
      onMessage: (job, message) => {
        const m = message as { type?: string; call?: Parameters<IamLedger['record']>[1] };
        const role = job.definition.arn ? model.jobDefinitions.get(job.definition.arn)?.jobRoleArn : undefined;
        if (m.type === 'sdk-call' && m.call) {
          ledger.record({ roleArn: role ?? 'no job role', label: `job ${job.request.stage}`, pipeline: job.request.pipeline }, m.call);
        }
      },
      onProgress: opts.onProgress,
      onStateChange: opts.onJob,
      logFile,
    });
    r = runner;

    const received: S3EventRecordLike[] = [];
    const dispatch = (record: S3EventRecordLike) => {
      const key = decodeS3Key(record.s3.object.key);
      const targets = new Set(
        model.notifications.filter((n) => notificationMatches(n, record.s3.bucket.name, key, record.eventName)).map((n) => n.functionArn),
      );
      if (targets.size === 0) return;
      received.push(record);
      for (const arn of targets) {
        invoke(arn, `S3 notification of ${key}`, async (lambda, deps) => {
          if (handlerOf(lambda) !== 'on-intake') throw new TemplateError(`S3 notifies ${lambda.logicalId}, which is not on-intake`);
          // The event as Lambda receives it from S3 (key URL-encoded), through the same parsing as the entry point.
          intake.push(...(await handleS3Event(deps, { Records: [record] })));
        });
      }
    };
    emulators.onObjectCreated(dispatch);
    if (opts.keepDir) {
      const env = { ...emulators.env, ...control.env };
      await writeKeptEndpoints(dataDir, { pid: process.pid, env, bucket: emulators.bucket, table: emulators.table });
    }
    let key = '(no upload)';
    if (opts.begin) {
      // As the operator's CLI: "split done" to the app's topic through the twin's SNS (not IAM-checked).
      const topic = stackOutput(model, STACK_OUTPUTS.splitDoneTopic);
      const notifier = new SnsSplitDoneNotifier(createAwsClients({ ...sdkEnv(emulators.env), ...control.env }).sns, topic);
      intake.push({ action: 'started', runId: await opts.begin({ store, table, notifier }), jobId: '' });
    } else if (opts.feed) {
      await opts.feed({ store, clients, table: emulators.table });
    } else {
      const file = opts.file;
      const uploads = opts.uploads ?? (file ? [{ key: opts.intakeKey ?? `intake/${opts.pipeline}/${basename(file)}`, file }] : []);
      if (uploads.length === 0) throw new Error('runLocal needs a file or uploads to upload, feed or begin');
      for (const u of uploads) await store.put(u.key, createReadStream(u.file));
      key = uploads.at(-1)!.key;
    }
    await runner.idle();
    if (opts.duplicateEvent && received[0]) {
      // Deliver the same notification again, as S3 may: it must start nothing twice.
      dispatch(received[0]);
      await runner.idle();
    }

    const iamStarted = Date.now();
    const iam = await ledger.summary();
    const iamWaitMs = Date.now() - iamStarted;
    await recordUsage(PROJECT_ROOT, model, opts.pipeline, iam.used).catch((err: unknown) =>
      log.warn('could not record IAM usage', { error: errorMessage(err) }),
    );
    const first = intake.find((o) => 'runId' in o);
    if (!first || !('runId' in first)) {
      const why = intake[0] && 'why' in intake[0] ? intake[0].why : `no S3 notification of the app matches ${key}`;
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
    const denied = iam.deniedCalls.length > 0;
    return {
      runId,
      pipeline: opts.pipeline,
      // A call AWS would refuse fails the run, whatever the emulators let through.
      status: denied ? 'FAILED' : (run?.status ?? 'UNKNOWN'),
      items: run?.counts?.items ?? 0,
      succeeded: run?.counts?.succeeded ?? 0,
      failed: run?.counts?.failed ?? 0,
      chunks: run?.counts?.chunks ?? 0,
      resultFile,
      emailFile: emailFiles[0],
      emailFiles,
      durationMs: Date.now() - started,
      error: denied ? `AWS would deny ${iam.denied} of ${iam.calls} calls:\n${describeDenials(iam.deniedCalls)}` : run?.error,
      outDir,
      run,
      jobs: runner.list(),
      mails,
      intake,
      iam: { calls: iam.calls, denied: iam.denied, deniedCalls: iam.deniedCalls },
      twin: { key: synth.key, cached: synth.cached, synthMs: synth.synthMs, setupMs, iamWaitMs, model },
    };
  } finally {
    await runner?.stop().catch((err: unknown) => log.warn('stopping the job runner failed', { error: errorMessage(err) }));
    if (opts.keepDir) await removeKeptEndpoints(dataDir);
    await control?.stop();
    await emulators.stop();
    await bundle?.remove();
    if (!opts.keepDir) await rm(dataDir, { recursive: true, force: true });
  }
}
