/**
 * AWS Batch's retry decision for a failed job attempt, as documented for `RetryStrategy`:
 * - a job that ran past its `attemptDurationSeconds` is not retried;
 * - otherwise the `evaluateOnExit` conditions are tried in order and the first one whose every
 *   given pattern matches decides (RETRY or EXIT); `onStatusReason` is matched against the job's
 *   status reason, `onReason` against the container's reason, `onExitCode` against the decimal
 *   exit code; a pattern matches exactly, or by prefix when it ends with `*`;
 * - when no condition matches (or none is given) the job is retried;
 * - a retry happens only while attempts remain (`attempts`, 1..10, the first attempt included).
 */
import type { EvaluateOnExit } from './template';

export interface AttemptOutcome {
  exitCode?: number;
  /** The job's status reason, e.g. "Essential container in task exited" or a Spot interruption. */
  statusReason?: string;
  /** The container's reason, e.g. "OutOfMemoryError: Container killed due to memory usage". */
  reason?: string;
  /** The attempt was stopped for passing the job's timeout. */
  timedOut?: boolean;
}

export interface RetryStrategyModel {
  attempts: number;
  evaluateOnExit: EvaluateOnExit[];
}

/** Batch's glob: exact, or a prefix match when the pattern ends with `*`. */
export function globMatches(pattern: string, value: string | undefined): boolean {
  if (value === undefined) return false;
  return pattern.endsWith('*') ? value.startsWith(pattern.slice(0, -1)) : value === pattern;
}

/** The first condition that matches the outcome, or undefined. */
export function matchingCondition(conditions: readonly EvaluateOnExit[], o: AttemptOutcome): EvaluateOnExit | undefined {
  return conditions.find(
    (c) =>
      (c.onStatusReason === undefined || globMatches(c.onStatusReason, o.statusReason)) &&
      (c.onReason === undefined || globMatches(c.onReason, o.reason)) &&
      (c.onExitCode === undefined || globMatches(c.onExitCode, o.exitCode === undefined ? undefined : String(o.exitCode))),
  );
}

/** Whether Batch starts another attempt after failed attempt number `attempt` (1-based), and why. */
export function shouldRetry(strategy: RetryStrategyModel, o: AttemptOutcome, attempt: number): { retry: boolean; why: string } {
  if (o.timedOut) return { retry: false, why: 'a job stopped for passing its timeout is not retried' };
  const c = matchingCondition(strategy.evaluateOnExit, o);
  const wants = c ? c.action === 'RETRY' : true;
  const rule = c ? `evaluateOnExit ${JSON.stringify(c)}` : 'no evaluateOnExit condition matched';
  if (!wants) return { retry: false, why: `${rule}: EXIT` };
  if (attempt >= strategy.attempts) return { retry: false, why: `${rule}: RETRY, but all ${strategy.attempts} attempts are used` };
  return { retry: true, why: `${rule}: RETRY` };
}
