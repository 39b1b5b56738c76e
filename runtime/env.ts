/**
 * The environment contract between the infrastructure (lib/) and the runtime entry points
 * (lambda/*.ts, batch-jobs/main.ts): one zod schema per kind of entry point, listing every
 * variable it reads. Each entry point parses its environment once, at start, and fails fast with
 * an EnvironmentError naming every bad variable and what was wrong with it. lib/ builds the
 * functions' and job definitions' environments as `HandlerEnvironment` and
 * `JobDefinitionEnvironment<stage>`, typed from these schemas: a renamed or dropped variable
 * fails the type check on both sides.
 *
 * Lambda handlers (`handlerEnvSchema`), set by lib/compute-stack.ts:
 *   FANOUT_BUCKET            pipeline bucket name
 *   FANOUT_TABLE             run table name
 *   FANOUT_CONFIG            the AppConfig as JSON (inlined at bundle time, or set as environment)
 *   FANOUT_JOB_TARGETS_PREFIX  SSM parameter name prefix; `<prefix><pipeline>` holds
 *                            {"queue": ARN, "definitions": {"split": ARN, ...}} (read once per pipeline)
 *   FANOUT_RUN_TTL_DAYS      days a run record is kept (optional: the config's runRetentionDays)
 * Batch jobs (`jobEnvSchema(stage)`): the job definition's environment (lib/pipeline-jobs.ts), what
 * the handler that submits the job adds, and what AWS Batch sets:
 *   FANOUT_BUCKET, FANOUT_TABLE   every stage
 *   FANOUT_RUN_ID                 set per submission (runtime/adapters/batch-job-submitter.ts)
 *   FANOUT_SPLIT_DONE_TOPIC_ARN   split: SNS topic it announces on (unless FANOUT_EVENTS=ipc)
 *   FANOUT_EVENTS=ipc             local runs only: split announces to the parent process instead
 *   FANOUT_MAX_CHILDREN           fan-out: most children the queue runs at once (logged; the fleet-wide rate is shared by counting the live children in the run table; optional)
 *   FANOUT_OSRM_BASE_URL          fan-out of osrm-match pipelines: the managed OSRM service (wins over the config)
 *   FANOUT_PARTIAL=1              consolidate: set per submission when the run failed (partial results)
 *   FANOUT_RESULT_LINK_DAYS       consolidate: days a presigned result link is valid (optional, default 7)
 *   FANOUT_MAIL_MAX_BYTES         largest email the mail service takes (optional, default SES's 40 MiB; local runs set the emulator's)
 *   FANOUT_TMP_DIR                scratch directory (optional, default the OS temp dir)
 *   FANOUT_MERGE_MEMORY_MIB       merge (DuckDB): its memory limit (optional, default from the container's memory)
 *   FANOUT_MERGE_THREADS          merge (DuckDB): its worker threads (optional, default the CPU count)
 *   FANOUT_EMR_APPLICATION_ID     merge of emr-serverless pipelines: the Spark application (lib/merge-jobs.ts)
 *   FANOUT_EMR_JOB_ROLE_ARN       merge of emr-serverless pipelines: the role its job runs use
 *   AWS_BATCH_JOB_ARRAY_INDEX, AWS_BATCH_JOB_ATTEMPT   set by AWS Batch (or the local job runner)
 *   FANOUT_TEST_STOP_AFTER_ITEMS  local job runner only (a test hook): a fan-out attempt stops itself after N
 *                                 outcomes; refused anywhere else (batch-jobs/stop-after-items.ts)
 *   <credential env>              fan-out of http-lookup pipelines: the data-source credential, under the
 *                                 name the pipeline config gives (a Batch secret on AWS); read by the task
 * Every entry point: the AWS SDK's own variables (region, credentials, `AWS_ENDPOINT_URL_<SERVICE>`,
 * through which a local run reaches its emulators), read by runtime/adapters/clients.ts as the SDK
 * defines them.
 */
import { z } from 'zod';
import { parseAppConfig } from './config/schema';
import { EnvironmentError, errorMessage } from './errors';
import type { JobStage } from './model';

export type Env = Record<string, string | undefined>;

/** A variable that must be set and not blank; `hint` says what it is and who sets it. */
function required(hint: string) {
  return z
    .string({ error: (issue) => (issue.input === undefined ? `is not set: ${hint}` : `must be text: ${hint}`) })
    .trim()
    .min(1, `is blank: ${hint}`);
}

/** A variable that may be left out (blank counts as left out). */
function optional() {
  return z
    .string()
    .optional()
    .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));
}

/** A whole number of at least `min`, or `fallback` when left out. */
function wholeNumber<F extends number | undefined>(min: number, fallback: F) {
  return z
    .string()
    .optional()
    .transform((v, ctx): number | F => {
      if (v === undefined || v.trim() === '') return fallback;
      const n = Number(v);
      if (Number.isInteger(n) && n >= min) return n;
      ctx.addIssue({ code: 'custom', message: `must be a whole number >= ${min}, got "${v}"` });
      return z.NEVER;
    });
}

/** A flag: "1" (or "true") sets it; left out, "0" or "false" leaves it unset. */
function flag() {
  return z
    .string()
    .optional()
    .transform((v, ctx) => {
      const s = v?.trim().toLowerCase() ?? '';
      if (s === '' || s === '0' || s === 'false') return false;
      if (s === '1' || s === 'true') return true;
      ctx.addIssue({ code: 'custom', message: `must be "1" or left out, got "${v}"` });
      return z.NEVER;
    });
}

/** The AWS SDK's own variables, as the clients read them (runtime/adapters/clients.ts). All optional. */
const awsSdkFields = {
  AWS_REGION: optional(),
  AWS_DEFAULT_REGION: optional(),
  AWS_ACCESS_KEY_ID: optional(),
  AWS_SECRET_ACCESS_KEY: optional(),
  AWS_SESSION_TOKEN: optional(),
  AWS_ENDPOINT_URL: optional(),
  AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: optional(),
};
type AwsSdkKey = keyof typeof awsSdkFields;

/** Where the ports' data lives: read by every entry point. */
const storageFields = {
  FANOUT_BUCKET: required('the pipeline bucket name, set by the CDK app'),
  FANOUT_TABLE: required('the run table name, set by the CDK app'),
};

const handlerFields = {
  ...storageFields,
  FANOUT_CONFIG: required('the pipelines config as JSON, set by the CDK app').transform((text, ctx) => {
    try {
      return parseAppConfig(JSON.parse(text), 'FANOUT_CONFIG');
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `is not a valid pipelines config: ${errorMessage(err)}` });
      return z.NEVER;
    }
  }),
  FANOUT_JOB_TARGETS_PREFIX: required("the SSM parameter name prefix of the pipelines' job queue and definitions, set by the CDK app"),
  FANOUT_RUN_TTL_DAYS: wholeNumber(1, undefined),
  ...awsSdkFields,
};
export const handlerEnvSchema = z.object(handlerFields);
/** A Lambda handler's environment, parsed. */
export type HandlerEnv = z.output<typeof handlerEnvSchema>;

const jobFields = {
  ...storageFields,
  FANOUT_RUN_ID: required('the run id, set by the handler that submitted the job'),
  FANOUT_SPLIT_DONE_TOPIC_ARN: optional(),
  FANOUT_EVENTS: z.enum(['ipc']).optional(),
  FANOUT_MAX_CHILDREN: wholeNumber(1, undefined),
  FANOUT_OSRM_BASE_URL: optional(),
  FANOUT_PARTIAL: flag(),
  FANOUT_RESULT_LINK_DAYS: wholeNumber(1, 7),
  FANOUT_MAIL_MAX_BYTES: wholeNumber(1024, undefined),
  FANOUT_TMP_DIR: optional(),
  FANOUT_MERGE_MEMORY_MIB: wholeNumber(64, undefined),
  FANOUT_MERGE_THREADS: wholeNumber(1, undefined),
  FANOUT_EMR_APPLICATION_ID: optional(),
  FANOUT_EMR_JOB_ROLE_ARN: optional(),
  AWS_BATCH_JOB_ARRAY_INDEX: wholeNumber(0, 0),
  AWS_BATCH_JOB_ATTEMPT: wholeNumber(1, 1),
  /** Checked further (local runner only) by batch-jobs/stop-after-items.ts. */
  FANOUT_TEST_STOP_AFTER_ITEMS: wholeNumber(1, undefined),
  ...awsSdkFields,
};
const jobObject = z.object(jobFields);
/** A job stage's environment, parsed (the same variables for every stage; what each stage needs is checked by stage). */
export type JobEnv = z.output<typeof jobObject>;

/** The schema of stage `stage`'s environment: the job variables, with the stage's own requirements. */
export function jobEnvSchema(stage: JobStage) {
  return jobObject.superRefine((env, ctx) => {
    if (stage === 'split' && env.FANOUT_EVENTS !== 'ipc' && env.FANOUT_SPLIT_DONE_TOPIC_ARN === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['FANOUT_SPLIT_DONE_TOPIC_ARN'],
        message: 'is not set: the split-done SNS topic ARN, set by the CDK app (or FANOUT_EVENTS=ipc in a local run)',
      });
    }
  });
}

/**
 * Parses an entry point's environment with its schema; an EnvironmentError names every bad
 * variable (`what` names the entry point).
 */
export function parseEnv<S extends z.ZodType>(schema: S, env: Env, what: string): z.output<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `environment variable ${issue.path.map(String).join('.')} ${issue.message}`);
  throw new EnvironmentError(
    problems.length === 1
      ? `${what}: ${problems[0]}`
      : `${what}: ${problems.length} problems:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
  );
}

/** The variable a caller names in its config (a data-source credential); an EnvironmentError naming it when unset. */
export function requireEnv(env: Env, name: string, hint: string): string {
  const v = env[name];
  if (v === undefined || v.trim() === '') {
    throw new EnvironmentError(`environment variable ${name} is not set: ${hint}`);
  }
  return v.trim();
}

// What lib/ must provide. Keys come from the schemas above: renaming a variable there fails
// these types, and lib/ building an environment under the old name fails the type check.
type Input<F> = { [K in keyof F]: F[K] extends z.ZodType ? z.input<F[K]> : never };
/** `Must` keys set (not undefined), `May` keys optional. */
type Provide<T, Must extends keyof T, May extends keyof T = never> = { [K in Must]-?: Exclude<T[K], undefined> } & {
  [K in May]?: Exclude<T[K], undefined>;
};
type JobInput = Input<typeof jobFields>;
type HandlerInput = Input<typeof handlerFields>;

/** The environment lib/ gives the Lambda handlers (FANOUT_CONFIG is inlined in the bundle instead). */
export type HandlerEnvironment = Provide<
  HandlerInput,
  'FANOUT_BUCKET' | 'FANOUT_TABLE' | 'FANOUT_JOB_TARGETS_PREFIX' | 'FANOUT_RUN_TTL_DAYS',
  'FANOUT_CONFIG'
>;

type StorageKeys = keyof typeof storageFields | Extract<AwsSdkKey, 'AWS_REGION'>;
/** The environment lib/ gives each stage's job definition (the rest comes per submission, from Batch, or from the SDK). */
export interface JobDefinitionEnvironments {
  split: Provide<JobInput, StorageKeys | 'FANOUT_SPLIT_DONE_TOPIC_ARN'>;
  fanout: Provide<JobInput, StorageKeys, 'FANOUT_MAX_CHILDREN' | 'FANOUT_OSRM_BASE_URL'>;
  consolidate: Provide<JobInput, StorageKeys | 'FANOUT_RESULT_LINK_DAYS'>;
  cleanup: Provide<JobInput, StorageKeys>;
  merge: Provide<JobInput, StorageKeys | 'FANOUT_RESULT_LINK_DAYS', 'FANOUT_EMR_APPLICATION_ID' | 'FANOUT_EMR_JOB_ROLE_ARN'>;
}
export type JobDefinitionEnvironment<S extends JobStage> = JobDefinitionEnvironments[S];

/** What a handler adds to a job's environment when it submits it (beside FANOUT_RUN_ID, which the submitter sets). */
export type SubmissionEnvironment = Provide<JobInput, never, 'FANOUT_PARTIAL'>;
