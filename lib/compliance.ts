/**
 * Compliance checks run over the whole app at synth: cdk-nag's AwsSolutions pack and the
 * cfn-guard Control Tower rules. Findings are acknowledged one by one next to the resources
 * they concern (lib/acknowledge.ts); anything else fails synth.
 */
import { Validations, type App } from 'aws-cdk-lib';
import { CfnGuardValidator } from '@cdklabs/cdk-validator-cfnguard';
import { AwsSolutionsChecks } from 'cdk-nag';

export function addComplianceChecks(app: App): void {
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app), new CfnGuardValidator({ maxBuffer: 64 * 1024 * 1024 }));
}
