/**
 * A local stand-in for AWS Batch's run time: runs each job as child processes with the environment
 * Batch gives a container (AWS_BATCH_JOB_ID, AWS_BATCH_JOB_ARRAY_INDEX for array children,
 * AWS_BATCH_JOB_ATTEMPT, AWS_BATCH_JQ_NAME), and does what Batch does while jobs run: scheduling
 * by vCPUs, `dependsOn` (a job starts when its dependencies succeeded, and fails with "Dependent Job
 * failed" when one failed), array jobs (one child per index; the parent fails when a child failed
 * for good), and each attempt's end: the job definition's retry strategy decides a retry
 * (local/twin/retry-strategy.ts, as Batch documents it), its timeout stops an attempt (SIGTERM,
 * then SIGKILL; a timed-out job is not retried), its memory caps the child's heap. What a job runs
 * (command, environment, retry strategy, timeout, size) comes from its job definition, in a local
 * run the synthesized one. Every state change is reported like EventBridge's "Batch Job State
 * Change" detail. TerminateJob and CancelJob (`terminate`) fail a job with the operator's reason
 * and start no further attempt. Tests drive the timeout with their own clock and stop a job with a
 * hook (`interrupt`, `stopAfterItems`), never by racing wall time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { MAX_ARRAY_SIZE } from '../runtime/config/schema';
import { NON_RETRYABLE_EXIT_CODES } from '../runtime/errors';
import type { BatchJobFailedDetail } from '../lambda/handlers/on-job-failed';
import type { JobStage } from '../runtime/model';
import type { JobRequest, JobSubmitter, SplitDoneMessage } from '../runtime/ports';
import { STOP_AFTER_ITEMS_ENV } from '../batch-jobs/stop-after-items';
import { shouldRetry } from './twin/retry-strategy';
import type { EvaluateOnExit } from './twin/template';

export type JobState = 'SUBMITTED' | 'PENDING' | 'RUNNABLE' | 'RUNNING' | 'SUCCEEDED' | 'FAILED';

export interface StageCommand {
  command: string;
  args: string[];
  cwd?: string;
}

export interface ProgressMessage {
  stage: string;
  index?: number;
  done: number;
  total: number;
}

/** What a job runs: the parts of a job definition the runner applies. */
export interface RunnerJobDefinition {
  /** Job definition ARN (reported in events). */
  arn?: string;
  platform: 'FARGATE' | 'EC2';
  /** The container command, e.g. ["split"]. */
  command: string[];
  environment: Record<string, string>;
  attempts: number;
  evaluateOnExit: EvaluateOnExit[];
  /** Per-attempt timeout; undefined: none. */
  timeoutSeconds?: number;
  vcpus: number;
  memoryMiB: number;
}

/** The timers of the per-attempt timeout and of the SIGTERM-to-SIGKILL grace. */
export interface RunnerClock {
  /** Calls `fire` after `ms`; returns a function that cancels the timer. */
  setTimer(ms: number, fire: () => void): () => void;
}

/** Node's own timers. */
export const realClock: RunnerClock = {
  setTimer: (ms, fire) => {
    const timer = setTimeout(fire, ms);
    return () => clearTimeout(timer);
  },
};

/** Why the runner stops an attempt from outside: a Spot reclaim (retried per the strategy) or a timeout. */
export type Interruption = 'spot-reclaim' | 'timeout';

export interface LocalJobRunnerOptions {
  /** Environment given to every job under the definition's own (emulator endpoints, credentials...). */
  env: Record<string, string>;
  /** How to start a container command locally (e.g. ["split"] → node <bundle> split). */
  launch?: (command: string[], definition: RunnerJobDefinition) => StageCommand;
  /** @deprecated for `submit(JobRequest)` without a definition: how to start a stage. */
  commandFor?: (stage: JobStage) => StageCommand;
  /** vCPUs the runner schedules at once (a job takes its definition's vCPUs). @default 2 */
  maxVcpus?: number;
  /** @deprecated alias of maxVcpus for jobs of 1 vCPU. */
  maxParallel?: number;
  /** For `submit(JobRequest)` without a definition: attempts. @default 3 */
  attempts?: number | ((stage: JobStage) => number);
  /** For `submit(JobRequest)` without a definition: per-attempt timeout. @default none */
  timeoutMs?: number | ((stage: JobStage) => number);
  /** Grace between SIGTERM and SIGKILL (ECS waits 30 s). @default 5000 */
  killGraceMs?: number;
  /** Timers of the timeout and the kill grace (tests pass one whose timers they fire themselves). @default realClock */
  clock?: RunnerClock;
  /**
   * Test hook: the number of outcomes after which an attempt stops itself (SIGTERM, exit 143), by
   * stage, attempt and array index; undefined lets the attempt run. Handed to the child as
   * FANOUT_TEST_STOP_AFTER_ITEMS (batch-jobs/stop-after-items.ts; fan-out only). @default - no attempt is stopped
   */
  stopAfterItems?: (stage: JobStage, attempt: number, index: number | undefined) => number | undefined;
  /** Stops an attempt when this returns an interruption (asked at each progress report of the attempt). */
  interrupt?: (job: LocalJob, attempt: { index?: number; attempt: number }, report: ProgressMessage) => Interruption | undefined;
  /** Split's "split done" over IPC (only when a stage announces over IPC, FANOUT_EVENTS=ipc). */
  onSplitDone?: (message: SplitDoneMessage) => Promise<unknown>;
  /** Every state change of a job or array child, shaped like EventBridge's "Batch Job State Change" detail. */
  onEvent?: (detail: BatchJobEventDetail) => unknown;
  /** A job or child failed for good (the FAILED events). */
  onJobFailed?: (detail: BatchJobFailedDetail) => Promise<unknown>;
  onProgress?: (job: LocalJob, report: ProgressMessage) => void;
  onStateChange?: (job: LocalJob) => void;
  /** Any other IPC message of a job's process (e.g. recorded SDK calls), with the job it came from. */
  onMessage?: (job: LocalJob, message: unknown) => void;
  /** Appends every child's stdout and stderr here. */
  logFile?: string;
}

export interface AttemptRecord {
  index?: number;
  attempt: number;
  exitCode: number | null;
  signal: string | null;
  /** The job's status reason for this attempt ("Essential container in task exited", a Spot interruption...). */
  statusReason?: string;
  /** The container's reason (set by Batch for timeouts and stops; undefined for a plain exit). */
  reason?: string;
  /** The last error the stage logged (local only: Batch does not read logs). */
  logTail?: string;
  /** Why the runner did or did not retry. */
  retryDecision?: string;
  startedAt: number;
  stoppedAt: number;
}

export interface LocalJob {
  jobId: string;
  request: JobRequest;
  definition: RunnerJobDefinition;
  /** Job queue ARN (events name it; EventBridge rules match on it). */
  queue?: string;
  parameters: Record<string, string>;
  state: JobState;
  statusReason?: string;
  attempts: AttemptRecord[];
  /** Array children states, by index. */
  children?: JobState[];
  createdAt: number;
  /** Why the job was terminated (TerminateJob / CancelJob); no attempt starts after it. */
  terminated?: string;
}

/** The "Batch Job State Change" detail (the fields of DescribeJobs that the events carry). */
export interface BatchJobEventDetail extends BatchJobFailedDetail {
  jobArn: string;
  jobQueue?: string;
  jobDefinition?: string;
  createdAt: number;
  dependsOn: Array<{ jobId: string }>;
  retryStrategy: { attempts: number; evaluateOnExit: EvaluateOnExit[] };
  platformCapabilities: string[];
}

/** What `submitJob` takes: a SubmitJob request with its definition and queue already looked up. */
export interface LocalJobSpec {
  request: JobRequest;
  definition: RunnerJobDefinition;
  queue?: string;
  parameters?: Record<string, string>;
}

const SPOT_REASON: Record<RunnerJobDefinition['platform'], string> = {
  FARGATE: 'Your Spot Task was interrupted.',
  EC2: 'Host EC2 (instance i-0local) terminated.',
};
const TIMEOUT_REASON = 'Job attempt duration exceeded timeout';

/** The exit code a container killed by a signal reports (128 + signal number), as on ECS. */
function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number | null {
  if (code !== null) return code;
  const n = signal ? osConstants.signals[signal] : undefined;
  return n === undefined ? null : 128 + n;
}

export class LocalJobRunner implements JobSubmitter {
  private readonly jobs = new Map<string, LocalJob>();
  private readonly waiting: Array<() => void> = [];
  private usedVcpus = 0;
  private busy = 0;
  private idleWaiters: Array<() => void> = [];
  private readonly errors: unknown[] = [];
  private readonly log?: WriteStream;
  private readonly procs = new Map<ChildProcess, LocalJob>();

  constructor(private readonly opts: LocalJobRunnerOptions) {
    if (opts.logFile) this.log = createWriteStream(opts.logFile, { flags: 'a' });
  }

  private setting(v: number | ((s: JobStage) => number) | undefined, stage: JobStage, fallback: number): number;
  private setting(v: number | ((s: JobStage) => number) | undefined, stage: JobStage, fallback: undefined): number | undefined;
  private setting(v: number | ((s: JobStage) => number) | undefined, stage: JobStage, fallback: number | undefined): number | undefined {
    return typeof v === 'function' ? v(stage) : (v ?? fallback);
  }

  /** A job from a JobRequest alone (tests of the runner): the stage is the command, retries as the app's strategy. */
  async submit(request: JobRequest): Promise<{ jobId: string }> {
    const timeoutMs = this.setting(this.opts.timeoutMs, request.stage, undefined);
    return this.submitJob({
      request,
      definition: {
        platform: request.compute === 'ec2-spot' ? 'EC2' : 'FARGATE',
        command: [request.stage],
        environment: {},
        attempts: this.setting(this.opts.attempts, request.stage, 3),
        evaluateOnExit: [
          ...NON_RETRYABLE_EXIT_CODES.map((code): EvaluateOnExit => ({ action: 'EXIT', onExitCode: String(code) })),
          { action: 'RETRY', onExitCode: '*' },
        ],
        timeoutSeconds: timeoutMs === undefined ? undefined : timeoutMs / 1000,
        vcpus: 1,
        memoryMiB: 2048,
      },
    });
  }

  async submitJob(spec: LocalJobSpec): Promise<{ jobId: string }> {
    const { request } = spec;
    if (request.arraySize !== undefined && (request.arraySize < 2 || request.arraySize > MAX_ARRAY_SIZE)) {
      throw new Error(`array size must be 2..${MAX_ARRAY_SIZE.toLocaleString('en-US')}, got ${request.arraySize}`);
    }
    for (const dep of request.dependsOn ?? []) {
      if (!this.jobs.has(dep)) throw new Error(`job ${request.name} depends on unknown job ${dep}`);
    }
    const job: LocalJob = {
      jobId: randomUUID(),
      request,
      definition: spec.definition,
      queue: spec.queue,
      parameters: spec.parameters ?? { runId: request.runId, stage: request.stage, pipeline: request.pipeline },
      state: 'SUBMITTED',
      attempts: [],
      createdAt: Date.now(),
    };
    this.jobs.set(job.jobId, job);
    this.track(this.drive(job));
    return { jobId: job.jobId };
  }

  /** Every job the runner was given, in submission order. */
  list(): LocalJob[] {
    return [...this.jobs.values()];
  }

  get(jobId: string): LocalJob | undefined {
    return this.jobs.get(jobId);
  }

  /** Resolves when no job is pending or running and every event handler has returned. */
  async idle(): Promise<void> {
    while (this.busy > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
    if (this.errors.length > 0) {
      const err = this.errors.shift();
      throw err instanceof Error ? err : new Error(String(err));
    }
  }

  /**
   * Like Batch's TerminateJob (and CancelJob): a job not started yet fails at once with `reason`;
   * a running one gets SIGTERM in every child process (they save their progress and exit) and
   * fails with `reason`, without further attempts. False when the runner has no such job.
   */
  terminate(jobId: string, reason: string): boolean {
    const job = this.jobs.get(jobId);
    if (!job) return false;
    if (job.state === 'SUCCEEDED' || job.state === 'FAILED') return true;
    job.terminated ??= reason;
    for (const [proc, owner] of this.procs) if (owner === job) proc.kill('SIGTERM');
    for (const w of this.waiting.splice(0)) w();
    return true;
  }

  /** Kills running children (used when a local run is interrupted). */
  async stop(): Promise<void> {
    for (const p of this.procs.keys()) p.kill('SIGKILL');
    await new Promise<void>((r) => (this.log ? this.log.end(r) : r()));
  }

  /** Counts an event handler as work in progress, so `idle()` waits for it. */
  track(p: Promise<unknown>): void {
    this.busy++;
    p.catch((err: unknown) => this.errors.push(err)).finally(() => {
      this.busy--;
      if (this.busy === 0) for (const w of this.idleWaiters.splice(0)) w();
    });
  }

  private async setState(job: LocalJob, state: JobState, reason?: string, index?: number): Promise<void> {
    if (index === undefined) {
      job.state = state;
      if (reason) job.statusReason = reason;
      this.opts.onStateChange?.(job);
    }
    await this.emit(job, state, index);
  }

  private detail(job: LocalJob, state: JobState, index?: number): BatchJobEventDetail {
    const attempts = job.attempts.filter((a) => a.index === index);
    const last = attempts.at(-1);
    const jobId = index === undefined ? job.jobId : `${job.jobId}:${index}`;
    const statusReason = index === undefined ? job.statusReason : last?.statusReason;
    return {
      jobArn: `arn:aws:batch:local:000000000000:job/${jobId}`,
      jobName: job.request.name,
      jobId,
      jobQueue: job.queue,
      jobDefinition: job.definition.arn,
      status: state,
      ...(state === 'FAILED'
        ? { statusReason: statusReason ?? 'Essential container in task exited' }
        : statusReason
          ? { statusReason }
          : {}),
      parameters: job.parameters,
      createdAt: job.createdAt,
      dependsOn: (job.request.dependsOn ?? []).map((jobId) => ({ jobId })),
      retryStrategy: { attempts: job.definition.attempts, evaluateOnExit: job.definition.evaluateOnExit },
      platformCapabilities: [job.definition.platform],
      container: last ? { exitCode: last.exitCode ?? undefined, reason: last.reason } : undefined,
      attempts: attempts.map((a) => ({ container: { exitCode: a.exitCode ?? undefined, reason: a.reason }, statusReason: a.statusReason })),
      arrayProperties: index === undefined ? (job.request.arraySize ? { size: job.request.arraySize } : undefined) : { index },
    };
  }

  private async emit(job: LocalJob, state: JobState, index?: number): Promise<void> {
    if (!this.opts.onEvent && !(state === 'FAILED' && this.opts.onJobFailed)) return;
    const detail = this.detail(job, state, index);
    await this.opts.onEvent?.(detail);
    if (state === 'FAILED') await this.opts.onJobFailed?.(detail);
  }

  private async drive(job: LocalJob): Promise<void> {
    const deps = (job.request.dependsOn ?? []).map((id) => this.jobs.get(id)!);
    await this.setState(job, 'PENDING');
    while (!job.terminated && deps.some((d) => d.state !== 'SUCCEEDED' && d.state !== 'FAILED')) {
      await new Promise<void>((r) => this.waiting.push(r));
    }
    if (job.terminated) {
      await this.finish(job, 'FAILED', job.terminated);
      return;
    }
    if (deps.some((d) => d.state === 'FAILED')) {
      await this.finish(job, 'FAILED', 'Dependent Job failed');
      return;
    }
    await this.setState(job, 'RUNNABLE');
    const size = job.request.arraySize;
    if (size === undefined) {
      const ok = await this.runWithAttempts(job, undefined);
      await this.finish(job, ok ? 'SUCCEEDED' : 'FAILED', ok ? undefined : (job.terminated ?? job.attempts.at(-1)?.statusReason));
      return;
    }
    job.children = new Array<JobState>(size).fill('PENDING');
    await this.setState(job, 'RUNNING');
    let failed = 0;
    await Promise.all(
      Array.from({ length: size }, async (_, index) => {
        const ok = await this.runWithAttempts(job, index);
        job.children![index] = ok ? 'SUCCEEDED' : 'FAILED';
        if (!ok) failed++;
        await this.emit(job, ok ? 'SUCCEEDED' : 'FAILED', index);
      }),
    );
    await this.finish(job, failed === 0 ? 'SUCCEEDED' : 'FAILED', failed === 0 ? undefined : (job.terminated ?? 'Array Child Job failed'));
  }

  private async finish(job: LocalJob, state: JobState, reason?: string): Promise<void> {
    job.state = state;
    if (reason) job.statusReason = reason;
    // Dependants may start as soon as the state is final; the event goes out alongside.
    for (const w of this.waiting.splice(0)) w();
    await this.setState(job, state, reason);
  }

  private async runWithAttempts(job: LocalJob, index: number | undefined): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      const rec = await this.runAttempt(job, index, attempt);
      if (!rec) return false;
      job.attempts.push(rec);
      if (rec.exitCode === 0 && !rec.statusReason) return true;
      if (job.terminated) {
        rec.retryDecision = `terminated: ${job.terminated}`;
        return false;
      }
      const decision = shouldRetry(
        job.definition,
        {
          exitCode: rec.exitCode ?? undefined,
          statusReason: rec.statusReason,
          reason: rec.reason,
          timedOut: rec.reason === TIMEOUT_REASON,
        },
        attempt,
      );
      rec.retryDecision = decision.why;
      if (!decision.retry) return false;
    }
  }

  private async slot(vcpus: number): Promise<() => void> {
    const max = this.opts.maxVcpus ?? this.opts.maxParallel ?? 2;
    // A job larger than the whole capacity still runs, alone.
    const need = Math.min(vcpus, max);
    while (this.usedVcpus + need > max) await new Promise<void>((r) => this.waiting.push(r));
    this.usedVcpus += need;
    return () => {
      this.usedVcpus -= need;
      for (const w of this.waiting.splice(0)) w();
    };
  }

  private launch(job: LocalJob): StageCommand {
    if (this.opts.launch) return this.opts.launch(job.definition.command, job.definition);
    if (this.opts.commandFor) return this.opts.commandFor(job.request.stage);
    throw new Error('LocalJobRunner needs a launch (or commandFor) option');
  }

  /** One attempt of a job (or array child); undefined when the job was terminated before it started. */
  private async runAttempt(job: LocalJob, index: number | undefined, attempt: number): Promise<AttemptRecord | undefined> {
    const def = job.definition;
    const release = await this.slot(def.vcpus);
    if (job.terminated) {
      release();
      return undefined;
    }
    if (index === undefined) await this.setState(job, 'RUNNING');
    const { command, args, cwd } = this.launch(job);
    const startedAt = Date.now();
    const env: Record<string, string> = {
      ...this.opts.env,
      ...def.environment,
      ...job.request.environment,
      FANOUT_RUN_ID: job.request.runId,
      AWS_BATCH_JOB_ID: index === undefined ? job.jobId : `${job.jobId}:${index}`,
      AWS_BATCH_JOB_ATTEMPT: String(attempt),
      AWS_BATCH_JQ_NAME: job.queue?.split('/').pop() ?? `local-${job.request.compute}`,
      AWS_BATCH_CE_NAME: `local-${def.platform.toLowerCase()}`,
    };
    if (index !== undefined) env.AWS_BATCH_JOB_ARRAY_INDEX = String(index);
    const stopAfter = this.opts.stopAfterItems?.(job.request.stage, attempt, index);
    if (stopAfter !== undefined) env[STOP_AFTER_ITEMS_ENV] = String(stopAfter);
    // The container's memory is the most the child's heap may take (NODE_OPTIONS may set less).
    const memoryFlag = /--max-old-space-size=/.test(env.NODE_OPTIONS ?? '') ? [] : [`--max-old-space-size=${Math.floor(def.memoryMiB)}`];
    const label = `${job.request.stage}${index === undefined ? '' : `[${index}]`}#${attempt}`;
    try {
      return await new Promise<AttemptRecord>((resolve) => {
        const child = spawn(command, [...memoryFlag, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
        this.procs.set(child, job);
        let statusReason: string | undefined;
        let reason: string | undefined;
        let lastErr = '';
        const clock = this.opts.clock ?? realClock;
        let cancelKill: (() => void) | undefined;
        const stopWith = (why: Interruption) => {
          if (statusReason) return;
          if (why === 'timeout') {
            statusReason = TIMEOUT_REASON;
            reason = TIMEOUT_REASON;
          } else {
            statusReason = SPOT_REASON[def.platform];
          }
          child.kill('SIGTERM');
          cancelKill = clock.setTimer(this.opts.killGraceMs ?? 5_000, () => child.kill('SIGKILL'));
        };
        const out = (chunk: Buffer) => this.log?.write(prefixLines(label, chunk));
        child.stdout?.on('data', out);
        child.stderr?.on('data', (chunk: Buffer) => {
          out(chunk);
          lastErr = (lastErr + chunk.toString('utf8')).slice(-2_000);
        });
        child.on('message', (msg: unknown) => {
          const m = msg as { type?: string; message?: SplitDoneMessage; report?: ProgressMessage };
          if (m.type === 'split-done' && m.message && this.opts.onSplitDone) {
            // Like SNS: delivery is asynchronous to the publisher.
            this.track(this.opts.onSplitDone(m.message));
          } else if (m.type === 'progress' && m.report) {
            this.opts.onProgress?.(job, m.report);
            const why = this.opts.interrupt?.(job, { index, attempt }, m.report);
            if (why) stopWith(why);
          } else {
            this.opts.onMessage?.(job, msg);
          }
        });
        const cancelTimeout =
          def.timeoutSeconds === undefined ? undefined : clock.setTimer(def.timeoutSeconds * 1000, () => stopWith('timeout'));
        child.on('error', (err) => {
          statusReason = `CannotStartContainerError: could not start ${command}: ${err.message}`;
        });
        child.on('close', (code, signal) => {
          cancelTimeout?.();
          cancelKill?.();
          this.procs.delete(child);
          const exitCode = exitCodeOf(code, signal);
          if (!statusReason && job.terminated) statusReason = job.terminated;
          if (!statusReason && exitCode !== 0) statusReason = 'Essential container in task exited';
          resolve({
            index,
            attempt,
            exitCode,
            signal,
            statusReason,
            reason,
            logTail: lastErrorLine(lastErr),
            startedAt,
            stoppedAt: Date.now(),
          });
        });
      });
    } finally {
      release();
    }
  }
}

function prefixLines(label: string, chunk: Buffer): string {
  return chunk
    .toString('utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => `[${label}] ${l}\n`)
    .join('');
}

/** The last structured error message a stage logged (for people reading the local job list). */
function lastErrorLine(stderr: string): string | undefined {
  const lines = stderr.trim().split('\n').reverse();
  for (const line of lines) {
    try {
      const entry = JSON.parse(line) as { level?: string; message?: string; error?: string };
      if (entry.level === 'error') return [entry.message, entry.error].filter(Boolean).join(': ');
    } catch {
      // not a JSON log line
    }
  }
  return lines[0]?.slice(0, 500) || undefined;
}
