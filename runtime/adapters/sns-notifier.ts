/**
 * SplitDoneNotifier on Amazon SNS (SDK v3 Publish): the message is the JSON of SplitDoneMessage,
 * with `pipeline` and `runId` as message attributes (for subscription filter policies).
 */
import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import type { SplitDoneMessage, SplitDoneNotifier } from '../ports';
import { failedCallMessage } from './sdk-errors';

export class SnsSplitDoneNotifier implements SplitDoneNotifier {
  constructor(
    private readonly client: SNSClient,
    private readonly topicArn: string,
  ) {}

  async publishSplitDone(message: SplitDoneMessage): Promise<void> {
    try {
      await this.client.send(
        new PublishCommand({
          TopicArn: this.topicArn,
          Message: JSON.stringify(message),
          MessageAttributes: {
            pipeline: { DataType: 'String', StringValue: message.pipeline },
            runId: { DataType: 'String', StringValue: message.runId },
          },
        }),
      );
    } catch (err) {
      throw new Error(failedCallMessage(`SNS Publish of split-done for run ${message.runId} to ${this.topicArn}`, err), { cause: err });
    }
  }
}
