/**
 * A local stand-in for AWS Batch: runs each job as child processes with the environment Batch
 * gives a container (AWS_BATCH_JOB_ID, AWS_BATCH_JOB_ARRAY_INDEX for array children,
 * AWS_BATCH_JOB_ATTEMPT), and reproduces the rules the pipeline relies on: `dependsOn` (a job
 * starts when its dependencies succeeded, and fails with "Dependent Job failed" when one failed),
 * array jobs (one child per index; the parent fails when a child failed for good), retry attempts
 * on non-zero exit (except the exit codes that mean retrying cannot help), and a per-attempt
 * timeout (SIGTERM, then SIGKILL). A job that fails for good is reported like EventBridge's
 * "Batch Job State Change" detail. Tests drive the timeout with their own clock and stop a fan-out
 * child after N items with `stopAfterItems`, never by racing wall time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { MAX_ARRAY_SIZE } from '../runtime/config/schema';
import { NON_RETRYABLE_EXIT_CODES } from '../runtime/errors';
import type { BatchJobFailedDetail } from '../lambda/handlers/on-job-failed';
import type { JobStage } from '../runtime/model';
import type { JobRequest, JobSubmitter, SplitDoneMessage } from '../runtime/ports';
import { STOP_AFTER_ITEMS_ENV } from '../batch-jobs/stop-after-items';

export type JobState = 'SUBMITTED' | 'PENDING' | 'RUNNING' | 'SUCCEEDED' | 'FAILED';

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

export interface LocalJobRunnerOptions {
  /** Environment given to every job (emulator endpoints, bucket, table...). */
  env: Record<string, string>;
  /** How to start a stage. */
  commandFor: (stage: JobStage) => StageCommand;
  /** Child processes running at once. @default 2 */
  maxParallel?: number;
  /** Attempts per job (per array child), like a Batch retry strategy. @default 3 */
  attempts?: number | ((stage: JobStage) => number);
  /** Per-attempt timeout, like Batch's attemptDurationSeconds. @default 15 minutes */
  timeoutMs?: number | ((stage: JobStage) => number);
  /** Grace between SIGTERM and SIGKILL on timeout. @default 5000 */
  killGraceMs?: number;
  /** Timers of the timeout and the kill grace (tests pass one whose timers they fire themselves). @default realClock */
  clock?: RunnerClock;
  /**
   * Test hook: the number of outcomes after which an attempt stops itself (SIGTERM, as on a Spot
   * reclaim), by stage, attempt and array index; undefined lets the attempt run. Handed to the child
   * as FANOUT_TEST_STOP_AFTER_ITEMS (batch-jobs/stop-after-items.ts; fan-out only). @default - no attempt is stopped
   */
  stopAfterItems?: (stage: JobStage, attempt: number, index: number | undefined) => number | undefined;
  /** Split's "split done" announcement (delivered over IPC, in place of SNS). */
  onSplitDone?: (message: SplitDoneMessage) => Promise<unknown>;
  /** A job failed for good (in place of the EventBridge rule). */
  onJobFailed?: (detail: BatchJobFailedDetail) => Promise<unknown>;
  onProgress?: (job: LocalJob, report: ProgressMessage) => void;
  onStateChange?: (job: LocalJob) => void;
  /** Appends every child's stdout and stderr here. */
  logFile?: string;
}

export interface AttemptRecord {
  index?: number;
  attempt: number;
  exitCode: number | null;
  signal: string | null;
  reason?: string;
  startedAt: number;
  stoppedAt: number;
}

export interface LocalJob {
  jobId: string;
  request: JobRequest;
  state: JobState;
  statusReason?: string;
  attempts: AttemptRecord[];
  /** Array children states, by index. */
  children?: JobState[];
  /** Why the job was terminated (TerminateJob / CancelJob); no attempt starts after it. */
  terminated?: string;
}

export class LocalJobRunner implements JobSubmitter {
  private readonly jobs = new Map<string, LocalJob>();
  private readonly waiting: Array<() => void> = [];
  private running = 0;
  private busy = 0;
  private idleWaiters: Array<() => void> = [];
  private readonly errors: unknown[] = [];
  private readonly log?: WriteStream;
  private readonly procs = new Map<ChildProcess, LocalJob>();

  constructor(private readonly opts: LocalJobRunnerOptions) {
    if (opts.logFile) this.log = createWriteStream(opts.logFile, { flags: 'a' });
  }

  async submit(request: JobRequest): Promise<{ jobId: string }> {
    if (request.arraySize !== undefined && (request.arraySize < 2 || request.arraySize > MAX_ARRAY_SIZE)) {
      throw new Error(`array size must be 2..${MAX_ARRAY_SIZE.toLocaleString('en-US')}, got ${request.arraySize}`);
    }
    for (const dep of request.dependsOn ?? []) {
      if (!this.jobs.has(dep)) throw new Error(`job ${request.name} depends on unknown job ${dep}`);
    }
    const job: LocalJob = { jobId: randomUUID(), request, state: 'SUBMITTED', attempts: [] };
    this.jobs.set(job.jobId, job);
    this.track(this.drive(job));
    return { jobId: job.jobId };
  }

  /** Every job the runner was given, in submission order. */
  list(): LocalJob[] {
    return [...this.jobs.values()];
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

  private setState(job: LocalJob, state: JobState, reason?: string): void {
    job.state = state;
    if (reason) job.statusReason = reason;
    this.opts.onStateChange?.(job);
  }

  private async drive(job: LocalJob): Promise<void> {
    const deps = (job.request.dependsOn ?? []).map((id) => this.jobs.get(id)!);
    this.setState(job, 'PENDING');
    while (!job.terminated && deps.some((d) => d.state !== 'SUCCEEDED' && d.state !== 'FAILED')) {
      await new Promise<void>((r) => this.waiting.push(r));
    }
    if (job.terminated) {
      this.finish(job, 'FAILED', job.terminated);
      await this.reportFailure(job);
      return;
    }
    if (deps.some((d) => d.state === 'FAILED')) {
      this.finish(job, 'FAILED', 'Dependent Job failed');
      await this.reportFailure(job);
      return;
    }
    this.setState(job, 'RUNNING');
    const size = job.request.arraySize;
    if (size === undefined) {
      const ok = await this.runWithAttempts(job, undefined);
      this.finish(job, ok ? 'SUCCEEDED' : 'FAILED', ok ? undefined : (job.terminated ?? this.lastReason(job)));
      if (!ok) await this.reportFailure(job);
      return;
    }
    job.children = new Array<JobState>(size).fill('PENDING');
    let failed = 0;
    await Promise.all(
      Array.from({ length: size }, async (_, index) => {
        const ok = await this.runWithAttempts(job, index);
        job.children![index] = ok ? 'SUCCEEDED' : 'FAILED';
        if (!ok) {
          failed++;
          await this.reportFailure(job, index);
        }
      }),
    );
    this.finish(job, failed === 0 ? 'SUCCEEDED' : 'FAILED', failed === 0 ? undefined : (job.terminated ?? 'Array Child Job failed'));
    if (failed > 0) await this.reportFailure(job);
  }

  private finish(job: LocalJob, state: JobState, reason?: string): void {
    this.setState(job, state, reason);
    for (const w of this.waiting.splice(0)) w();
  }

  private lastReason(job: LocalJob, index?: number): string | undefined {
    const last = job.attempts.filter((a) => a.index === index).at(-1);
    return last?.reason;
  }

  private async reportFailure(job: LocalJob, index?: number): Promise<void> {
    if (!this.opts.onJobFailed) return;
    const attempts = job.attempts.filter((a) => a.index === index);
    const last = attempts.at(-1);
    const detail: BatchJobFailedDetail = {
      jobName: job.request.name,
      jobId: index === undefined ? job.jobId : `${job.jobId}:${index}`,
      status: 'FAILED',
      statusReason: index === undefined ? job.statusReason : (last?.reason ?? 'Essential container in task exited'),
      parameters: { runId: job.request.runId, stage: job.request.stage, pipeline: job.request.pipeline },
      container: last ? { exitCode: last.exitCode ?? undefined, reason: last.reason } : undefined,
      attempts: attempts.map((a) => ({ container: { exitCode: a.exitCode ?? undefined, reason: a.reason } })),
      arrayProperties: index === undefined ? (job.request.arraySize ? { size: job.request.arraySize } : undefined) : { index },
    };
    await this.opts.onJobFailed(detail);
  }

  private setting(v: number | ((s: JobStage) => number) | undefined, stage: JobStage, fallback: number): number {
    return typeof v === 'function' ? v(stage) : (v ?? fallback);
  }

  private async runWithAttempts(job: LocalJob, index: number | undefined): Promise<boolean> {
    const stage = job.request.stage;
    const maxAttempts = this.setting(this.opts.attempts, stage, 3);
    for (let attempt = 1; attempt <= maxAttempts && !job.terminated; attempt++) {
      const rec = await this.runAttempt(job, index, attempt);
      if (!rec) return false;
      job.attempts.push(rec);
      if (rec.exitCode === 0) return true;
      if (rec.exitCode !== null && NON_RETRYABLE_EXIT_CODES.includes(rec.exitCode)) return false;
    }
    return false;
  }

  private async slot(): Promise<() => void> {
    const max = this.opts.maxParallel ?? 2;
    while (this.running >= max) await new Promise<void>((r) => this.waiting.push(r));
    this.running++;
    return () => {
      this.running--;
      for (const w of this.waiting.splice(0)) w();
    };
  }

  /** One attempt of a job (or array child); undefined when the job was terminated before it started. */
  private async runAttempt(job: LocalJob, index: number | undefined, attempt: number): Promise<AttemptRecord | undefined> {
    const release = await this.slot();
    if (job.terminated) {
      release();
      return undefined;
    }
    const stage = job.request.stage;
    const { command, args, cwd } = this.opts.commandFor(stage);
    const startedAt = Date.now();
    const env: Record<string, string> = {
      ...this.opts.env,
      ...job.request.environment,
      FANOUT_RUN_ID: job.request.runId,
      AWS_BATCH_JOB_ID: index === undefined ? job.jobId : `${job.jobId}:${index}`,
      AWS_BATCH_JOB_ATTEMPT: String(attempt),
      AWS_BATCH_JQ_NAME: `local-${job.request.compute}`,
    };
    if (index !== undefined) env.AWS_BATCH_JOB_ARRAY_INDEX = String(index);
    const stopAfter = this.opts.stopAfterItems?.(stage, attempt, index);
    if (stopAfter !== undefined) env[STOP_AFTER_ITEMS_ENV] = String(stopAfter);
    const label = `${stage}${index === undefined ? '' : `[${index}]`}#${attempt}`;
    try {
      return await new Promise<AttemptRecord>((resolve) => {
        const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
        this.procs.set(child, job);
        let reason: string | undefined;
        let lastErr = '';
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
          }
        });
        const timeoutMs = this.setting(this.opts.timeoutMs, stage, 15 * 60_000);
        const clock = this.opts.clock ?? realClock;
        let cancelKill: (() => void) | undefined;
        const cancelTimeout = clock.setTimer(timeoutMs, () => {
          reason = `Job attempt duration exceeded timeout (${Math.round(timeoutMs / 1000)} s)`;
          child.kill('SIGTERM');
          cancelKill = clock.setTimer(this.opts.killGraceMs ?? 5_000, () => child.kill('SIGKILL'));
        });
        child.on('error', (err) => {
          reason = `could not start ${command}: ${err.message}`;
        });
        child.on('close', (code, signal) => {
          cancelTimeout();
          cancelKill?.();
          this.procs.delete(child);
          if (!reason && job.terminated) reason = job.terminated;
          if (!reason && code !== 0) reason = lastErrorLine(lastErr) ?? `exit code ${code ?? signal}`;
          resolve({ index, attempt, exitCode: code, signal, reason, startedAt, stoppedAt: Date.now() });
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

/** The last structured error message a stage logged, for the job's status reason. */
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
