/**
 * The CloudFormation outputs the `fanout` operating commands read with `--stack <appName>`
 * (bin/ops/target.ts): each one exists in the stack that `stackNames` says, and points at the
 * resource the commands use (the pipeline bucket, the run table, the split-done topic).
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { Template } from 'aws-cdk-lib/assertions';
import { STACK_OUTPUTS, stackNames } from '../../lib/stack-output-names';
import { buildApp, type BuiltApp } from './fixture';

/** The logical id and type of the resource an output's `Ref` names. */
function refTarget(template: Template, output: string): { id: string; type: string } {
  const outputs = template.findOutputs(output);
  assert.equal(Object.keys(outputs).length, 1, `one output ${output}`);
  const value = Object.values(outputs)[0]!.Value as { Ref?: string };
  assert.ok(value.Ref, `output ${output} is a Ref, not ${JSON.stringify(value)}`);
  const resource = template.toJSON().Resources[value.Ref] as { Type: string } | undefined;
  assert.ok(resource, `output ${output} names a resource of its own stack`);
  return { id: value.Ref, type: resource.Type };
}

describe('GIVEN the default app WHEN it is synthesized', () => {
  let built: BuiltApp;
  before(() => {
    built = buildApp({ bundling: false });
  });

  it('THEN the stacks carry the names fanout --stack looks up', () => {
    const appName = built.stacks.data.stackName.replace(/-data$/, '');
    assert.deepEqual(stackNames(appName), { data: built.stacks.data.stackName, compute: built.stacks.compute.stackName });
  });

  it('THEN the data stack outputs the pipeline bucket and the run table', () => {
    const bucket = refTarget(built.data, STACK_OUTPUTS.bucket);
    assert.equal(bucket.type, 'AWS::S3::Bucket');
    // The pipeline bucket (versioned, with the intake/results lifecycle), not the access-log bucket.
    const props = built.data.toJSON().Resources[bucket.id].Properties;
    assert.ok(
      props.LifecycleConfiguration.Rules.some((r: { Prefix?: string }) => r.Prefix === 'intake/'),
      'the output names the bucket with the intake/ folder',
    );
    assert.equal(refTarget(built.data, STACK_OUTPUTS.table).type, 'AWS::DynamoDB::Table');
  });

  it('THEN the compute stack outputs the split-done topic', () => {
    assert.equal(refTarget(built.compute, STACK_OUTPUTS.splitDoneTopic).type, 'AWS::SNS::Topic');
  });
});
