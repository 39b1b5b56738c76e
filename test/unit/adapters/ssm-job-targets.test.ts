import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SSMClient } from '@aws-sdk/client-ssm';
import { SsmJobTargets } from '../../../runtime/adapters/ssm-job-targets';
import { EnvironmentError } from '../../../runtime/errors';
import { capturingClient } from './fixtures';

const TARGETS = {
  queue: 'arn:aws:batch:eu-west-1:123456789012:job-queue/q',
  definitions: { split: 'arn:aws:batch:eu-west-1:123456789012:job-definition/s:1' },
};

function ssmAnswering(value: string) {
  return capturingClient(SSMClient, {
    headers: { 'content-type': 'application/x-amz-json-1.1' },
    body: JSON.stringify({ Parameter: { Name: '/app/job-targets/tax-due', Type: 'String', Value: value, Version: 1 } }),
  });
}

describe('SsmJobTargets', () => {
  it("reads a pipeline's parameter with GetParameter (JSON 1.1) once, and answers later lookups from memory", async () => {
    // given a client answering with the pipeline's targets
    const { client, requests } = ssmAnswering(JSON.stringify(TARGETS));
    const targets = new SsmJobTargets(client, '/app/job-targets/');

    // when the pipeline is looked up twice
    const first = await targets.forPipeline('tax-due');
    const second = await targets.forPipeline('tax-due');

    // then one documented GetParameter request was sent, for <prefix><pipeline>
    assert.deepEqual(first, TARGETS);
    assert.deepEqual(second, TARGETS);
    assert.equal(requests.length, 1);
    assert.equal(requests[0]!.headers['x-amz-target'], 'AmazonSSM.GetParameter');
    assert.deepEqual(JSON.parse(requests[0]!.body), { Name: '/app/job-targets/tax-due' });
  });

  it('names the parameter when its value is not the targets JSON', async () => {
    const { client } = ssmAnswering('{"queue": 5}');
    await assert.rejects(
      new SsmJobTargets(client, '/app/job-targets/').forPipeline('tax-due'),
      (err: unknown) => err instanceof EnvironmentError && /SSM parameter \/app\/job-targets\/tax-due must be/.test(err.message),
    );
  });

  it('says which pipeline is not deployed when the parameter does not exist, and asks again next time', async () => {
    const { client, requests } = capturingClient(SSMClient, {
      statusCode: 400,
      headers: { 'content-type': 'application/x-amz-json-1.1' },
      body: JSON.stringify({ __type: 'ParameterNotFound', message: 'not found' }),
    });
    const targets = new SsmJobTargets(client, '/app/job-targets/');
    await assert.rejects(targets.forPipeline('nope'), /no SSM parameter \/app\/job-targets\/nope: pipeline "nope" is not deployed/);
    await assert.rejects(targets.forPipeline('nope'));
    assert.equal(requests.length, 2);
  });
});
