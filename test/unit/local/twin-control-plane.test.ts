/**
 * The twin's control plane (local/twin/control-plane.ts) through the real SDK clients, as the
 * handlers, stages and operating commands call it: SSM GetParameter answers a missing parameter as
 * SSM does (the SDK raises ParameterNotFound, and the job-targets reader names the parameter),
 * Batch TerminateJob and CancelJob reach the runner and an unknown job is Batch's ClientException,
 * and SNS Publish reaches the topic's subscriber only.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BatchClient, CancelJobCommand, TerminateJobCommand } from '@aws-sdk/client-batch';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { SsmJobTargets } from '../../../runtime/adapters/ssm-job-targets';
import { startControlPlane, type ControlPlane } from '../../../local/twin/control-plane';
import type { TwinModel } from '../../../local/twin/template';

const TOPIC = 'arn:aws:sns:us-east-1:123456789012:SplitDoneTopic';
const LAMBDA = 'arn:aws:lambda:us-east-1:123456789012:function:OnSplitDone';
const targets = JSON.stringify({ queue: 'arn:q', definitions: { split: 'arn:d' } });

/** The parts of a model the control plane reads. */
const model = {
  names: { account: '123456789012', region: 'us-east-1', bucket: 'b', table: 't' },
  parameters: new Map([['/app/job-targets/tax-due', targets]]),
  queues: new Map(),
  jobDefinitions: new Map(),
  topics: new Map([[TOPIC, { arn: TOPIC }]]),
  subscriptions: [{ topicArn: TOPIC, protocol: 'lambda', endpoint: LAMBDA }],
} as unknown as TwinModel;

const stopped: Array<[string, string, string]> = [];
const delivered: Array<{ functionArn: string; message: string }> = [];
let plane: ControlPlane;
const config = () => ({ endpoint: plane.url, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });

before(async () => {
  plane = await startControlPlane(model, {
    submitJob: async () => ({ jobId: 'job-1' }),
    terminateJob: (jobId, reason) => jobId === 'job-1' && stopped.push(['TerminateJob', jobId, reason]) > 0,
    cancelJob: (jobId, reason) => jobId === 'job-1' && stopped.push(['CancelJob', jobId, reason]) > 0,
    deliverSns: (functionArn, m) => delivered.push({ functionArn, message: m.message }),
  });
});
after(() => plane.stop());

describe('the twin control plane', () => {
  it('answers GetParameter with the synthesized value, and a missing parameter with ParameterNotFound', async () => {
    const ssm = new SSMClient({ ...config(), maxAttempts: 1 });
    const got = await ssm.send(new GetParameterCommand({ Name: '/app/job-targets/tax-due' }));
    assert.equal(got.Parameter?.Value, targets);
    await assert.rejects(ssm.send(new GetParameterCommand({ Name: '/app/job-targets/nope' })), (err: Error) => {
      assert.equal(err.name, 'ParameterNotFound');
      return true;
    });
    // and the handlers' reader says which pipeline is not deployed
    await assert.rejects(new SsmJobTargets(ssm, '/app/job-targets/').forPipeline('nope'), /no SSM parameter \/app\/job-targets\/nope/);
  });

  it('terminates and cancels jobs for the operator, and refuses an unknown job as Batch does', async () => {
    const batch = new BatchClient({ ...config(), maxAttempts: 1 });
    await batch.send(new TerminateJobCommand({ jobId: 'job-1', reason: 'fanout cancel' }));
    await batch.send(new CancelJobCommand({ jobId: 'job-1', reason: 'fanout cancel' }));
    assert.deepEqual(stopped, [
      ['TerminateJob', 'job-1', 'fanout cancel'],
      ['CancelJob', 'job-1', 'fanout cancel'],
    ]);
    await assert.rejects(batch.send(new TerminateJobCommand({ jobId: 'job-2', reason: 'x' })), (err: Error) => {
      assert.equal(err.name, 'ClientException');
      assert.match(err.message, /Job job-2 not found/);
      return true;
    });
  });

  it("delivers a Publish to the topic's subscribed Lambda, and refuses a topic the app does not have", async () => {
    const sns = new SNSClient({ ...config(), maxAttempts: 1 });
    const out = await sns.send(new PublishCommand({ TopicArn: TOPIC, Message: '{"runId":"r"}' }));
    assert.ok(out.MessageId);
    assert.deepEqual(delivered, [{ functionArn: LAMBDA, message: '{"runId":"r"}' }]);
    await assert.rejects(sns.send(new PublishCommand({ TopicArn: `${TOPIC}-other`, Message: 'x' })), (err: Error) => {
      assert.equal(err.name, 'NotFoundException');
      return true;
    });
  });
});
