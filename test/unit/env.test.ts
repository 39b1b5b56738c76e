/**
 * The entry points' environment schemas (runtime/env.ts): each bad or missing variable is named,
 * all at once; defaults apply; the stage's own requirements hold; the job container exits with
 * BAD_CONFIG on a bad environment; and lib/'s environment types follow the schemas' keys.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { main } from '../../batch-jobs/main';
import { pipelinesConfig } from '../../config/pipelines';
import { lambdaDeps } from '../../lambda/runtime-deps';
import { handlerEnvSchema, jobEnvSchema, parseEnv, type HandlerEnvironment, type JobDefinitionEnvironments } from '../../runtime/env';
import { EnvironmentError, ExitCode } from '../../runtime/errors';

const handlerEnv = {
  FANOUT_BUCKET: 'bucket',
  FANOUT_TABLE: 'table',
  FANOUT_CONFIG: JSON.stringify(pipelinesConfig),
  FANOUT_JOB_TARGETS_PREFIX: '/batch-fanout-compute/job-targets/',
  FANOUT_RUN_TTL_DAYS: '30',
  AWS_REGION: 'eu-west-1',
};
const jobEnv = { FANOUT_BUCKET: 'bucket', FANOUT_TABLE: 'table', FANOUT_RUN_ID: 'run-1' };

describe('handler environment', () => {
  it('builds the ports and the config from a complete environment; the deployment retention wins', () => {
    const deps = lambdaDeps(handlerEnv, 'on-intake');
    assert.equal(deps.store.bucket, 'bucket');
    assert.equal(deps.config.runRetentionDays, 30);
    assert.ok(deps.jobs, 'a Batch job submitter');
    assert.equal(deps.config.pipelines[0]?.name, pipelinesConfig.pipelines[0]?.name);
  });

  it('names every bad variable at once, and what was wrong with each', () => {
    const env = {
      ...handlerEnv,
      FANOUT_BUCKET: ' ',
      FANOUT_JOB_TARGETS_PREFIX: undefined,
      FANOUT_RUN_TTL_DAYS: '0',
      FANOUT_TABLE: undefined,
    };
    assert.throws(
      () => lambdaDeps(env, 'on-split-done'),
      (err: unknown) => {
        assert.ok(err instanceof EnvironmentError);
        const lines = err.message.split('\n');
        assert.equal(lines[0], 'Lambda on-split-done: 4 problems:');
        assert.match(err.message, /- environment variable FANOUT_BUCKET is blank: the pipeline bucket name, set by the CDK app/);
        assert.match(err.message, /- environment variable FANOUT_TABLE is not set: the run table name/);
        assert.match(err.message, /- environment variable FANOUT_JOB_TARGETS_PREFIX is not set: the SSM parameter name prefix/);
        assert.match(err.message, /- environment variable FANOUT_RUN_TTL_DAYS must be a whole number >= 1, got "0"/);
        return true;
      },
    );
  });

  it('refuses a pipelines config that does not validate, quoting the config error', () => {
    const config = { ...pipelinesConfig, pipelines: [{ ...pipelinesConfig.pipelines[0], chunkSize: 20_000 }] };
    assert.throws(
      () => parseEnv(handlerEnvSchema, { ...handlerEnv, FANOUT_CONFIG: JSON.stringify(config) }, 'Lambda on-intake'),
      /Lambda on-intake: environment variable FANOUT_CONFIG is not a valid pipelines config: invalid pipelines config in FANOUT_CONFIG:\n {2}- pipelines\[0\]\.chunkSize/,
    );
  });
});

describe('job environment', () => {
  it('applies the defaults of every optional variable', () => {
    const env = parseEnv(jobEnvSchema('fanout'), jobEnv, 'fanout job');
    assert.equal(env.FANOUT_RUN_ID, 'run-1');
    assert.equal(env.AWS_BATCH_JOB_ARRAY_INDEX, 0);
    assert.equal(env.AWS_BATCH_JOB_ATTEMPT, 1);
    assert.equal(env.FANOUT_RESULT_LINK_DAYS, 7);
    assert.equal(env.FANOUT_MAX_CHILDREN, undefined);
    assert.equal(env.FANOUT_PARTIAL, false);
  });

  it('reads the settings the stages use, typed', () => {
    const env = parseEnv(
      jobEnvSchema('consolidate'),
      { ...jobEnv, FANOUT_PARTIAL: '1', FANOUT_MAX_CHILDREN: '12', AWS_BATCH_JOB_ARRAY_INDEX: '41', FANOUT_MAIL_MAX_BYTES: '4096' },
      'consolidate job',
    );
    assert.deepEqual(
      [env.FANOUT_PARTIAL, env.FANOUT_MAX_CHILDREN, env.AWS_BATCH_JOB_ARRAY_INDEX, env.FANOUT_MAIL_MAX_BYTES],
      [true, 12, 41, 4096],
    );
  });

  it('names a bad stage setting with the value it got', () => {
    assert.throws(
      () => parseEnv(jobEnvSchema('fanout'), { ...jobEnv, FANOUT_MAX_CHILDREN: 'many' }, 'fanout job'),
      (err: unknown) =>
        err instanceof EnvironmentError &&
        err.message === 'fanout job: environment variable FANOUT_MAX_CHILDREN must be a whole number >= 1, got "many"',
    );
    assert.throws(
      () => parseEnv(jobEnvSchema('consolidate'), { ...jobEnv, FANOUT_PARTIAL: 'yes' }, 'consolidate job'),
      /environment variable FANOUT_PARTIAL must be "1" or left out, got "yes"/,
    );
  });

  it('needs the split-done topic for split only, unless a local run announces over IPC', () => {
    assert.throws(
      () => parseEnv(jobEnvSchema('split'), jobEnv, 'split job'),
      /split job: environment variable FANOUT_SPLIT_DONE_TOPIC_ARN is not set: the split-done SNS topic ARN/,
    );
    assert.doesNotThrow(() => parseEnv(jobEnvSchema('split'), { ...jobEnv, FANOUT_EVENTS: 'ipc' }, 'split job'));
    assert.doesNotThrow(() => parseEnv(jobEnvSchema('cleanup'), jobEnv, 'cleanup job'));
  });

  it('makes the job container exit with BAD_CONFIG before it touches anything', async () => {
    // given a fan-out job whose run id was never set (nothing listens on the endpoints: nothing may be called)
    const env = { FANOUT_BUCKET: 'bucket', FANOUT_TABLE: 'table', AWS_ENDPOINT_URL: 'http://127.0.0.1:9', AWS_REGION: 'eu-west-1' };
    // when it starts, then it exits at once with the code Batch does not retry
    assert.equal(await main(['fanout'], env), ExitCode.BAD_CONFIG);
  });
});

describe("lib/'s environment types", () => {
  it('follow the schema keys: a misspelt or missing variable is a type error', () => {
    const handler: HandlerEnvironment = {
      FANOUT_BUCKET: 'b',
      FANOUT_TABLE: 't',
      FANOUT_JOB_TARGETS_PREFIX: '/app/job-targets/',
      FANOUT_RUN_TTL_DAYS: '90',
    };
    // @ts-expect-error -- FANOUT_RUN_TTL is no variable the handlers read
    const misspelt: HandlerEnvironment = { ...handler, FANOUT_RUN_TTL: '90' };
    const base = { FANOUT_BUCKET: 'b', FANOUT_TABLE: 't', AWS_REGION: 'eu-west-1' };
    // @ts-expect-error -- split's job definition must name the split-done topic
    const split: JobDefinitionEnvironments['split'] = { ...base };
    const fanout: JobDefinitionEnvironments['fanout'] = { ...base, FANOUT_MAX_CHILDREN: '4' };
    // The values are what the runtime then parses.
    assert.equal(parseEnv(jobEnvSchema('fanout'), { ...fanout, FANOUT_RUN_ID: 'r' }, 'fanout job').FANOUT_MAX_CHILDREN, 4);
    assert.ok(misspelt && split);
  });
});
