/**
 * cdk-nag (AwsSolutions) and cfn-guard (Control Tower rules) over the whole app as deployed
 * (config/pipelines.ts, default deployment settings): no finding left unacknowledged, and every
 * acknowledgement is narrow (one finding id on one CloudFormation resource) with a reason.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { acknowledgements, buildApp, openFindings, readValidationReport, type BuiltApp, type ValidationReport } from './fixture';

describe('compliance of the whole app', () => {
  let built: BuiltApp;
  let report: ValidationReport;

  before(() => {
    // Given the app as bin/app.ts builds it, with both checkers registered
    // When it is synthesized (synth throws with the report when a finding is left open)
    built = buildApp({ complianceChecks: true });
    report = readValidationReport(built.outdir);
  });

  it('leaves no cdk-nag or cfn-guard finding unacknowledged', () => {
    assert.deepEqual(openFindings(built), []);
  });

  it('ran the cfn-guard Control Tower rules and recorded what was acknowledged', () => {
    const guard = report.pluginReports.find((r) => r.pluginName === 'cdk-validator-cfnguard');
    assert.ok(guard, 'the cfn-guard plugin reported');
    const suppressed = guard.suppressedViolations ?? [];
    assert.ok(suppressed.length > 0, 'the acknowledged cfn-guard findings are in the report');
    for (const v of suppressed) {
      assert.ok(v.reason.length > 0 && v.violatingConstructs.length >= 1, `${v.ruleName}: a reason and the constructs it covers`);
    }
  });

  it('acknowledges each finding on one CloudFormation resource with a reason a reviewer can check', () => {
    const acks = acknowledgements(built.app);
    assert.ok(acks.length > 0);
    for (const ack of acks) {
      assert.ok(ack.isCfnResource, `${ack.id} is acknowledged on ${ack.path}, which is not a single CloudFormation resource`);
      assert.doesNotMatch(ack.id, /^(AwsSolutions-IAM5|AwsSolutions::AwsSolutions-IAM5)$/, `${ack.id} at ${ack.path} is not one finding`);
      assert.ok(ack.reason.length >= 40, `the reason for ${ack.id} at ${ack.path} is too short: "${ack.reason}"`);
    }
  });

  it('acknowledges no service-wide wildcard action, and "Resource::*" only for the ECR token of execution roles', () => {
    const acks = acknowledgements(built.app).filter((a) => a.id.includes('IAM5'));
    assert.ok(acks.length > 0);
    for (const ack of acks) {
      assert.doesNotMatch(ack.id, /Action::[a-z0-9-]+:\*\]$/, `${ack.id} at ${ack.path}`);
      if (ack.id.endsWith('[Resource::*]')) assert.match(ack.path, /ExecutionRole\/DefaultPolicy\/Resource$/);
    }
  });
});
