/**
 * Narrow acknowledgements of compliance findings (cdk-nag AwsSolutions and the cfn-guard Control
 * Tower rules): one finding id on one resource, each with the reason a reviewer reads.
 */
import { Stack, Validations } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import { flattenCfnReference } from 'cdk-nag/lib/utils/flatten-cfn-reference';
import type { IConstruct } from 'constructs';

/** Plugin name of `@cdklabs/cdk-validator-cfnguard`: its findings are acknowledged as `<name>::<rule>`. */
const CFN_GUARD_NAMESPACE = 'cdk-validator-cfnguard';

/** Acknowledges one cdk-nag finding (e.g. `AwsSolutions-IAM5[Action::s3:GetObject*]`) on one resource. */
export function acknowledgeNag(resource: IConstruct, id: string, reason: string): void {
  Validations.of(resource).acknowledge({ id, reason });
}

/** Acknowledges one cfn-guard rule (e.g. `s3_bucket_object_lock_enabled_check`) on one resource. */
export function acknowledgeGuard(resource: IConstruct, rule: string, reason: string): void {
  Validations.of(resource).acknowledge({ id: `${CFN_GUARD_NAMESPACE}::${rule}`, reason });
}

/** The CloudFormation resource of an L2 construct (acknowledgements stay on that one resource). */
export function cfnOf(construct: IConstruct): IConstruct {
  return construct.node.defaultChild ?? construct;
}

/** A wildcard in an Allow statement, as cdk-nag's IAM5 names it (`Action::s3:List*`, `Resource::<arn>/work/*`). */
export interface WildcardFinding {
  /** The IAM5 finding, without the rule id. */
  readonly finding: string;
  /** Actions of the statement the wildcard is in. */
  readonly actions: readonly string[];
}

/** Says why a wildcard is acceptable, or undefined to leave it reported. */
export type WildcardReason = (wildcard: WildcardFinding) => string | undefined;

/**
 * Acknowledges the IAM5 wildcard findings of the role's default policy, one finding at a time,
 * for those `reasonFor` explains. Runs when the app is validated, after cross-stack references
 * are resolved, so each id is exactly what cdk-nag reports (e.g. an imported bucket ARN).
 */
export function acknowledgeGrantWildcards(role: iam.IRole, reasonFor: WildcardReason): void {
  const policy = role.node.tryFindChild('DefaultPolicy')?.node.defaultChild as iam.CfnPolicy | undefined;
  if (!policy) return;
  policy.node.addValidation({
    validate: () => {
      const document = Stack.of(policy).resolve(policy.policyDocument) as { Statement?: Record<string, unknown>[] };
      // A finding id can come from several statements: acknowledge it only if each is explained.
      const byFinding = new Map<string, (string | undefined)[]>();
      for (const w of wildcardFindings(document)) byFinding.set(w.finding, [...(byFinding.get(w.finding) ?? []), reasonFor(w)]);
      for (const [finding, reasons] of byFinding) {
        if (reasons.every((r) => r !== undefined)) acknowledgeNag(policy, `AwsSolutions-IAM5[${finding}]`, reasons[0]!);
      }
      return [];
    },
  });
}

function asArray(v: unknown): unknown[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** The wildcard findings of a policy document, as cdk-nag IAM5 computes them. */
function wildcardFindings(document: { Statement?: Record<string, unknown>[] }): WildcardFinding[] {
  const out: WildcardFinding[] = [];
  for (const statement of document.Statement ?? []) {
    if (statement.Effect !== 'Allow') continue;
    const actions = asArray(statement.Action).map(String);
    for (const a of actions.filter((x) => x.includes('*'))) out.push({ finding: `Action::${a}`, actions });
    for (const r of asArray(statement.Resource)
      .map(flattenCfnReference)
      .filter((x) => x.includes('*'))) {
      out.push({ finding: `Resource::${r}`, actions });
    }
  }
  return out;
}
