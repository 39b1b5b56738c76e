import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BatchClient } from '@aws-sdk/client-batch';
import { BatchJobSubmitter } from '../../../runtime/adapters/batch-job-submitter';
import { staticJobTargets } from '../../../runtime/adapters/ssm-job-targets';
import { EnvironmentError } from '../../../runtime/errors';
import type { JobRequest } from '../../../runtime/ports';
import { capturingClient } from './fixtures';

const QUEUE = 'arn:aws:batch:us-east-1:123456789012:job-queue/tax-due';
const DEFS = {
  split: 'arn:aws:batch:us-east-1:123456789012:job-definition/split:1',
  fanout: 'arn:aws:batch:us-east-1:123456789012:job-definition/fanout:1',
  consolidate: 'arn:aws:batch:us-east-1:123456789012:job-definition/consolidate:1',
  cleanup: 'arn:aws:batch:us-east-1:123456789012:job-definition/cleanup:1',
};

/** A submitter whose client captures the serialized request and gets `response` (by default a submitted job). */
function setup(
  response: Parameters<typeof capturingClient>[1] = {
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jobArn: 'arn:aws:batch:us-east-1:123456789012:job/abc', jobName: 'x', jobId: 'job-123' }),
  },
) {
  const { client, requests } = capturingClient(BatchClient, response);
  const submitter = new BatchJobSubmitter(client, { targets: staticJobTargets({ 'tax-due': { queue: QUEUE, definitions: DEFS } }) });
  return { submitter, requests };
}

const fanoutJob: JobRequest = {
  name: 'fanout-run1',
  stage: 'fanout',
  runId: 'run1',
  pipeline: 'tax-due',
  compute: 'fargate-spot',
  arraySize: 250,
  dependsOn: ['split-job-id'],
  environment: { EXTRA: 'yes' },
};

describe('BatchJobSubmitter', () => {
  it('submits an array job as POST /v1/submitjob with size, dependency, environment, parameters and tags', async () => {
    // given a submitter whose client captures the serialized request
    const { submitter, requests } = setup();

    // when an array job is submitted
    const result = await submitter.submit(fanoutJob);

    // then the request has the documented SubmitJob shape, and the job id is returned
    assert.equal(result.jobId, 'job-123');
    assert.equal(requests.length, 1);
    const req = requests[0]!;
    assert.equal(req.method, 'POST');
    assert.equal(req.path, '/v1/submitjob');
    const body = JSON.parse(req.body);
    assert.deepEqual(body, {
      jobName: 'fanout-run1',
      jobQueue: QUEUE,
      jobDefinition: DEFS.fanout,
      arrayProperties: { size: 250 },
      dependsOn: [{ jobId: 'split-job-id' }],
      containerOverrides: {
        environment: [
          { name: 'FANOUT_RUN_ID', value: 'run1' },
          { name: 'EXTRA', value: 'yes' },
        ],
      },
      parameters: { runId: 'run1', stage: 'fanout', pipeline: 'tax-due' },
      tags: { 'batch-fanout:run': 'run1', 'batch-fanout:pipeline': 'tax-due' },
      propagateTags: true,
    });
  });

  it('submits a plain job (no arrayProperties, no dependsOn) for an array size of 1', async () => {
    // given
    const { submitter, requests } = setup();

    // when
    await submitter.submit({ ...fanoutJob, arraySize: 1, dependsOn: [] });

    // then
    const body = JSON.parse(requests[0]!.body);
    assert.equal(body.arrayProperties, undefined);
    assert.equal(body.dependsOn, undefined);
    assert.equal(body.jobDefinition, DEFS.fanout);
  });

  it('submits a plain job when no array size is given', async () => {
    // given
    const { submitter, requests } = setup();

    // when
    await submitter.submit({ ...fanoutJob, stage: 'split', arraySize: undefined, dependsOn: undefined });

    // then
    const body = JSON.parse(requests[0]!.body);
    assert.equal(body.arrayProperties, undefined);
    assert.equal(body.jobDefinition, DEFS.split);
  });

  it('refuses an array size over 10,000 without sending anything', async () => {
    // given
    const { submitter, requests } = setup();

    // when / then
    await assert.rejects(submitter.submit({ ...fanoutJob, arraySize: 10_001 }), /array size 10001/);
    assert.equal(requests.length, 0);
  });

  it('refuses an unknown pipeline with an error naming it, without sending anything', async () => {
    // given
    const { submitter, requests } = setup();

    // when / then
    await assert.rejects(
      submitter.submit({ ...fanoutJob, pipeline: 'nope' }),
      (err: unknown) => err instanceof EnvironmentError && /pipeline "nope"/.test(err.message) && /tax-due/.test(err.message),
    );
    assert.equal(requests.length, 0);
  });

  it('refuses a job name AWS Batch would reject', async () => {
    // given
    const { submitter, requests } = setup();

    // when / then
    await assert.rejects(submitter.submit({ ...fanoutJob, name: 'has space' }), /job name "has space"/);
    assert.equal(requests.length, 0);
  });

  it('reports a service error with the job and queue', async () => {
    // given a client whose service answers 400 ClientException
    const { submitter } = setup({
      statusCode: 400,
      headers: { 'content-type': 'application/json', 'x-amzn-errortype': 'ClientException' },
      body: JSON.stringify({ message: 'job queue is disabled' }),
    });

    // when / then
    await assert.rejects(submitter.submit(fanoutJob), (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.match(err.message, /SubmitJob of fanout job fanout-run1/);
      assert.match(err.message, /job queue is disabled/);
      return true;
    });
  });
});
