/**
 * The environment contract between the infrastructure (lib/) and the runtime entry points
 * (lambda/, batch-jobs/main.ts). Only entry points call these readers, once, at start; they fail
 * fast with an EnvironmentError naming the variable and what was wrong with it.
 *
 * Lambda handlers:
 *   FANOUT_BUCKET            pipeline bucket name
 *   FANOUT_TABLE             run table name
 *   FANOUT_CONFIG            the AppConfig as JSON (inlined at bundle time or set as environment)
 *   FANOUT_JOB_QUEUES        JSON {"<pipeline>": "<job queue ARN>"}
 *   FANOUT_JOB_DEFINITIONS   JSON {"<pipeline>": {"split": ARN, "fanout": ARN, "consolidate": ARN, "cleanup": ARN}}
 *   FANOUT_RUN_TTL_DAYS      days a run record is kept (optional, default 90)
 * Batch jobs (job definition environment, plus FANOUT_RUN_ID set per submission):
 *   FANOUT_BUCKET, FANOUT_TABLE, FANOUT_RUN_ID
 *   FANOUT_SPLIT_DONE_TOPIC_ARN   SNS topic split announces on (split only)
 *   FANOUT_EVENTS=ipc             local runs only: split announces to the parent process instead
 *   FANOUT_RESULT_LINK_DAYS       days a presigned result link is valid (optional, default 7)
 *   AWS_BATCH_JOB_ARRAY_INDEX, AWS_BATCH_JOB_ATTEMPT  set by AWS Batch (or the local runner)
 *   <credential env>         the pipeline's data-source credential (a Batch secret on AWS)
 *   FANOUT_MAX_CHILDREN      fan-out: most children the queue runs at once (shares rateLimitPerSecond; optional)
 *   FANOUT_OSRM_BASE_URL     osrm-match pipelines: base URL of the managed OSRM service (wins over the config)
 *   FANOUT_MAIL_MAX_BYTES    largest email the mail service takes (optional, default 40 MiB; local runs set the emulator's)
 *   FANOUT_TMP_DIR           scratch directory (optional, default the OS temp dir)
 *   FANOUT_TEST_STOP_AFTER_ITEMS  local job runner only (a test hook): a fan-out attempt stops itself after N outcomes;
 *                            refused anywhere else (batch-jobs/stop-after-items.ts)
 * Local emulators are reached through the SDK's own AWS_ENDPOINT_URL_<SERVICE> variables.
 */
import { EnvironmentError } from './errors';

export type Env = Record<string, string | undefined>;

export function requireEnv(env: Env, name: string, hint: string): string {
  const v = env[name];
  if (v === undefined || v.trim() === '') {
    throw new EnvironmentError(`environment variable ${name} is not set: ${hint}`);
  }
  return v.trim();
}

export function optionalIntEnv(env: Env, name: string, fallback: number, min = 0): number {
  const v = env[name];
  if (v === undefined || v.trim() === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw new EnvironmentError(`environment variable ${name} must be a whole number >= ${min}, got "${v}"`);
  }
  return n;
}

export function jsonEnv<T>(env: Env, name: string, hint: string): T {
  const raw = requireEnv(env, name, hint);
  try {
    return JSON.parse(raw) as T;
  } catch (err) {
    throw new EnvironmentError(
      `environment variable ${name} is not valid JSON (${err instanceof Error ? err.message : String(err)}): ${hint}`,
    );
  }
}
