/** IAM wildcard acknowledgements stay narrow: a finding is acknowledged only when every statement behind it is explained. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { AwsSolutionsChecks } from 'cdk-nag';
import { acknowledgeGrantWildcards } from '../../lib/acknowledge';
import { explainWildcard } from '../../lib/compute-stack';
import { readValidationReport } from './fixture';

/** Synthesizes a role with these statements under cdk-nag; returns the findings left open. */
function synthRole(statements: iam.PolicyStatement[]): string[] {
  const outdir = mkdtempSync(join(tmpdir(), 'fanout-ack-'));
  const app = new App({ outdir, builtinCloudFormationValidation: false });
  const stack = new Stack(app, 'Test');
  const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com') });
  for (const s of statements) role.addToPolicy(s);
  acknowledgeGrantWildcards(role, explainWildcard);
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  try {
    app.synth();
  } catch {
    // the report says which findings failed synth
  }
  return readValidationReport(outdir).pluginReports.flatMap((r) => r.violations.map((v) => v.ruleName));
}

const ecrToken = new iam.PolicyStatement({ actions: ['ecr:GetAuthorizationToken'], resources: ['*'] });

describe('IAM wildcard acknowledgements', () => {
  it('acknowledge a wildcard whose statement is explained', () => {
    assert.deepEqual(synthRole([ecrToken]), []);
  });

  it('leave the same finding open when another statement behind it is not explained', () => {
    const anyObject = new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: ['*'] });
    assert.deepEqual(synthRole([ecrToken, anyObject]), ['AwsSolutions-IAM5[Resource::*]']);
  });

  it('leave a wildcard on all actions of a service open', () => {
    const open = synthRole([
      new iam.PolicyStatement({ actions: ['dynamodb:*'], resources: ['arn:aws:dynamodb:eu-west-1:123456789012:table/t'] }),
    ]);
    assert.deepEqual(open, ['AwsSolutions-IAM5[Action::dynamodb:*]']);
  });
});
