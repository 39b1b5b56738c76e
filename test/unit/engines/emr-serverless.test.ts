/**
 * The EMR Serverless adapter: EMR Serverless has no emulator, so the serialized StartJobRun and
 * GetJobRun requests are captured and checked against the API reference's request syntax
 * (POST /applications/{applicationId}/jobruns with clientToken, executionRoleArn, jobDriver.sparkSubmit...;
 * GET /applications/{applicationId}/jobruns/{jobRunId}).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EMRServerlessClient } from '@aws-sdk/client-emr-serverless';
import { EmrServerlessSpark, SPARK_RUNNER_PY, SPARK_SUBMIT_PARAMETERS } from '../../../batch-jobs/engines/emr-serverless';
import { STATEMENT_SEPARATOR } from '../../../batch-jobs/engines/spark-sql';
import { capturingClient, offlineClientConfig, type CapturedRequest } from '../adapters/fixtures';

const APP = '00fabc123def4567';
const ROLE = 'arn:aws:iam::123456789012:role/merge-spark';
const job = {
  name: 'batch-fanout merge-xy b1',
  clientToken: 'b1-0123456789',
  entryPoint: 's3://bucket/work/b1-0123456789/spark/run_sql.py',
  entryPointArguments: ['s3://bucket/work/b1-0123456789/spark/merge.sql'],
  tags: { 'batch-fanout:run': 'b1-0123456789', 'batch-fanout:pipeline': 'merge-xy' },
};

/** A client whose requests are captured and answered from a list, in turn (the last one repeats). */
function sequenceClient(bodies: object[]) {
  const requests: CapturedRequest[] = [];
  let n = 0;
  const handler = {
    async handle(request: { method: string; path: string; headers: Record<string, string>; body?: unknown }) {
      requests.push({
        method: request.method,
        path: request.path,
        headers: request.headers,
        body: typeof request.body === 'string' ? request.body : '',
      });
      const body = bodies[Math.min(n++, bodies.length - 1)];
      return { response: { statusCode: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(body)) } };
    },
    updateHttpClientConfig() {},
    httpHandlerConfigs() {
      return {};
    },
  };
  return { client: new EMRServerlessClient({ ...offlineClientConfig, requestHandler: handler as never }), requests };
}

describe('EMR Serverless adapter', () => {
  it('StartJobRun: POST /applications/{applicationId}/jobruns with the documented body', async () => {
    // given an adapter whose client captures the serialized request
    const { client, requests } = capturingClient(EMRServerlessClient, {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        applicationId: APP,
        jobRunId: '00fjobrun1',
        arn: `arn:aws:emr-serverless:us-east-1:123456789012:/applications/${APP}/jobruns/00fjobrun1`,
      }),
    });
    const spark = new EmrServerlessSpark(client, { applicationId: APP, executionRoleArn: ROLE, logUri: 's3://bucket/work/b1/spark/logs/' });
    // when a job run is started
    const id = await spark.start(job);
    // then the request is StartJobRun's documented shape and the job run id is returned
    assert.equal(id, '00fjobrun1');
    assert.equal(requests.length, 1);
    assert.equal(requests[0]!.method, 'POST');
    assert.equal(requests[0]!.path, `/applications/${APP}/jobruns`);
    assert.match(requests[0]!.headers['content-type'] ?? '', /^application\/json/);
    assert.deepEqual(JSON.parse(requests[0]!.body), {
      clientToken: job.clientToken,
      executionRoleArn: ROLE,
      name: job.name,
      jobDriver: {
        sparkSubmit: {
          entryPoint: job.entryPoint,
          entryPointArguments: job.entryPointArguments,
          sparkSubmitParameters: SPARK_SUBMIT_PARAMETERS,
        },
      },
      configurationOverrides: { monitoringConfiguration: { s3MonitoringConfiguration: { logUri: 's3://bucket/work/b1/spark/logs/' } } },
      executionTimeoutMinutes: 720,
      tags: job.tags,
    });
    // the documented constraints: clientToken 1-64 of [A-Za-z0-9._-], applicationId [0-9a-z]+
    assert.match(JSON.parse(requests[0]!.body).clientToken, /^[A-Za-z0-9._-]{1,64}$/);
    assert.match(APP, /^[0-9a-z]{1,64}$/);
  });

  it('refuses a client token the API would refuse', () => {
    const { client } = capturingClient(EMRServerlessClient, { body: '{}' });
    const spark = new EmrServerlessSpark(client, { applicationId: APP, executionRoleArn: ROLE });
    assert.throws(() => spark.buildInput({ ...job, clientToken: 'has space' }), /client token "has space" must be 1-64 of A-Za-z0-9\._-/);
  });

  it('waits with GET /applications/{applicationId}/jobruns/{jobRunId} until a final state', async () => {
    const { client, requests } = sequenceClient([
      { jobRun: { applicationId: APP, jobRunId: 'r1', state: 'SCHEDULED' } },
      { jobRun: { applicationId: APP, jobRunId: 'r1', state: 'RUNNING' } },
      { jobRun: { applicationId: APP, jobRunId: 'r1', state: 'SUCCESS' } },
    ]);
    const slept: number[] = [];
    const spark = new EmrServerlessSpark(client, {
      applicationId: APP,
      executionRoleArn: ROLE,
      pollMs: 5000,
      sleep: async (ms) => void slept.push(ms),
    });
    const states: string[] = [];
    const outcome = await spark.wait('r1', undefined, (s) => states.push(s));
    assert.deepEqual(outcome, { state: 'SUCCESS', jobRunId: 'r1' });
    assert.deepEqual(states, ['SCHEDULED', 'RUNNING', 'SUCCESS']);
    assert.deepEqual(slept, [5000, 5000]);
    assert.ok(requests.every((r) => r.method === 'GET' && r.path === `/applications/${APP}/jobruns/r1`));
  });

  it('reports a failed job run with its details', async () => {
    const { client } = sequenceClient([
      { jobRun: { applicationId: APP, jobRunId: 'r2', state: 'FAILED', stateDetails: 'Malformed records are detected in record parsing' } },
    ]);
    const spark = new EmrServerlessSpark(client, { applicationId: APP, executionRoleArn: ROLE, sleep: async () => undefined });
    assert.deepEqual(await spark.wait('r2'), {
      state: 'FAILED',
      jobRunId: 'r2',
      details: 'Malformed records are detected in record parsing',
    });
  });

  it('the PySpark runner splits the script on the separator the SQL generator writes', () => {
    assert.ok(SPARK_RUNNER_PY.includes(`SEPARATOR = "\\n${STATEMENT_SEPARATOR}\\n"`));
    assert.ok(SPARK_RUNNER_PY.includes('spark.sql(statement)'));
  });
});
