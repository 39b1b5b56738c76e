/**
 * Names of the stacks' CloudFormation outputs that the `fanout` operating commands read
 * (`--stack <appName>`: bin/ops/target.ts). No aws-cdk-lib here, so the CLI loads it cheaply.
 */
export const STACK_OUTPUTS = {
  /** In `<appName>-data`. */
  bucket: 'PipelineBucketName',
  table: 'RunTableName',
  /** In `<appName>-compute`. */
  splitDoneTopic: 'SplitDoneTopicArn',
} as const;

export const stackNames = (appName: string) => ({ data: `${appName}-data`, compute: `${appName}-compute` });
