import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SNSClient } from '@aws-sdk/client-sns';
import { SnsSplitDoneNotifier } from '../../../runtime/adapters/sns-notifier';
import { capturingClient } from './fixtures';

const TOPIC = 'arn:aws:sns:us-east-1:123456789012:split-done';

describe('SnsSplitDoneNotifier', () => {
  it('publishes the split-done message as a form-encoded Publish with pipeline and runId attributes', async () => {
    // given a notifier whose client captures the serialized request
    const capture = capturingClient(SNSClient, {
      headers: { 'content-type': 'text/xml' },
      body:
        '<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>m-1</MessageId></PublishResult>' +
        '<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></PublishResponse>',
    });
    const notifier = new SnsSplitDoneNotifier(capture.client, TOPIC);

    // when
    await notifier.publishSplitDone({ runId: 'run-7', pipeline: 'tax-due', chunks: 3, items: 25_000 });

    // then the request is the documented query-protocol Publish
    assert.equal(capture.requests.length, 1);
    const req = capture.requests[0]!;
    assert.equal(req.method, 'POST');
    assert.equal(req.path, '/');
    assert.match(req.headers['content-type'] ?? '', /application\/x-www-form-urlencoded/);
    const form = new URLSearchParams(req.body);
    assert.equal(form.get('Action'), 'Publish');
    assert.equal(form.get('Version'), '2010-03-31');
    assert.equal(form.get('TopicArn'), TOPIC);
    assert.deepEqual(JSON.parse(form.get('Message') ?? ''), { runId: 'run-7', pipeline: 'tax-due', chunks: 3, items: 25_000 });
    const attributes: Record<string, { type: string | null; value: string | null }> = {};
    for (let i = 1; form.has(`MessageAttributes.entry.${i}.Name`); i++) {
      attributes[form.get(`MessageAttributes.entry.${i}.Name`)!] = {
        type: form.get(`MessageAttributes.entry.${i}.Value.DataType`),
        value: form.get(`MessageAttributes.entry.${i}.Value.StringValue`),
      };
    }
    assert.deepEqual(attributes, {
      pipeline: { type: 'String', value: 'tax-due' },
      runId: { type: 'String', value: 'run-7' },
    });
  });

  it('reports a failed publish with the run and topic', async () => {
    // given a topic that does not exist
    const capture = capturingClient(SNSClient, {
      statusCode: 404,
      headers: { 'content-type': 'text/xml' },
      body:
        '<ErrorResponse><Error><Type>Sender</Type><Code>NotFound</Code><Message>Topic does not exist</Message></Error>' +
        '<RequestId>r-2</RequestId></ErrorResponse>',
    });
    const notifier = new SnsSplitDoneNotifier(capture.client, TOPIC);

    // when / then
    await assert.rejects(notifier.publishSplitDone({ runId: 'run-8', pipeline: 'tax-due', chunks: 1, items: 1 }), (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.match(err.message, /run run-8/);
      assert.match(err.message, /split-done/);
      assert.match(err.message, /Topic does not exist/);
      return true;
    });
  });
});
