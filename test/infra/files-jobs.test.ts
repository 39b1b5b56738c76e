/**
 * A files pipeline's infrastructure: GIVEN the app with the example xml-json pipeline beside the
 * default items pipelines, WHEN synthesized with cdk-nag and cfn-guard, THEN the stack's own choices
 * arrive: on-intake hears every object of the pipeline's folder (a .zip or .txt starts a run, anything
 * else gets its rejection email), the pipeline has the four job definitions the handlers submit for a
 * files run (split runs list, consolidate runs summary), its fan-out runs with a role of the files
 * pipelines that reads intake/xml-json/ and writes results/xml-json/ only, the handlers may submit
 * exactly those stages, and no finding is left open.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { pipelinesConfig } from '../../config/pipelines';
import type { AppConfigInput } from '../../runtime/config/schema';
import { buildApp, openFindings, type BuiltApp } from './fixture';

const withFiles: AppConfigInput = {
  ...pipelinesConfig,
  pipelines: [
    ...pipelinesConfig.pipelines,
    { shape: 'files', name: 'xml-json', task: { type: 'xml-to-json' }, recipients: ['integration-team@example.com'] },
  ],
};

type Resource = { Properties: Record<string, any> };
type Statement = { Action: string | string[]; Resource: unknown; Effect: string };

/** The statements of the policies attached to roles whose logical id starts with `rolePrefix`. */
function statementsOf(built: BuiltApp, rolePrefix: string): Statement[] {
  const policies = Object.values(built.compute.findResources('AWS::IAM::Policy') as Record<string, Resource>).filter((p) =>
    (p.Properties.Roles as { Ref: string }[]).some((r) => r.Ref?.startsWith(rolePrefix)),
  );
  assert.ok(policies.length > 0, `a policy of ${rolePrefix}`);
  return policies.flatMap((p) => p.Properties.PolicyDocument.Statement as Statement[]);
}

const actionsOf = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);
/** Bucket prefixes (`intake/xml-json/*`) a statement's resources name. */
const prefixesOf = (s: Statement) => JSON.stringify(s.Resource).match(/(intake|work|results)\/[^"]*/g) ?? [];

/** Logical id of the job definition of `stage` of the xml-json pipeline. */
function definitionId(built: BuiltApp, stage: string): string {
  const ids = Object.keys(built.compute.findResources('AWS::Batch::JobDefinition')).filter(
    (id) => id.startsWith('FilesPipelinexmljson') && id.includes(`${stage[0]!.toUpperCase()}${stage.slice(1)}Definition`),
  );
  assert.equal(ids.length, 1, `one ${stage} definition of xml-json: ${ids.join(', ')}`);
  return ids[0]!;
}

describe('files pipelines: infrastructure', () => {
  let built: BuiltApp;
  before(() => {
    built = buildApp({ pipelines: withFiles, complianceChecks: true, bundling: false });
  });

  it('leaves no cdk-nag or cfn-guard finding open', () => {
    assert.deepEqual(openFindings(built), []);
  });

  it('notifies on-intake of every object under intake/ (so intake/xml-json/ too): no suffix filter, so a wrong upload gets its email', () => {
    const [notifications] = Object.values(built.compute.findResources('Custom::S3BucketNotifications') as Record<string, Resource>);
    const configs = notifications!.Properties.NotificationConfiguration.LambdaFunctionConfigurations as {
      Filter: { Key: { FilterRules: { Name: string; Value: string }[] } };
    }[];
    // One notification for every pipeline's folder, whatever the file name (an unknown folder gets its email too).
    assert.equal(configs.length, 1);
    assert.deepEqual(configs[0]!.Filter.Key.FilterRules, [{ Name: 'prefix', Value: 'intake/' }]);
  });

  it('gives the pipeline the four job definitions of a files run, on its Fargate Spot queue, logging under its name', () => {
    for (const stage of ['split', 'fanout', 'consolidate', 'cleanup']) {
      const props = built.compute.toJSON().Resources[definitionId(built, stage)].Properties;
      assert.deepEqual(props.ContainerProperties.Command, [stage]);
      assert.deepEqual(props.PlatformCapabilities, ['FARGATE']);
      assert.equal(props.ContainerProperties.LogConfiguration.Options['awslogs-stream-prefix'], 'xml-json');
    }
  });

  it('runs the files fan-out with the files fan-out role, the other stages with the shared stage roles', () => {
    const role = (stage: string) =>
      JSON.stringify(built.compute.toJSON().Resources[definitionId(built, stage)].Properties.ContainerProperties.JobRoleArn);
    assert.match(role('fanout'), /FilesFanoutJobRole/);
    assert.match(role('split'), /"SplitJobRole/);
    assert.match(role('consolidate'), /"ConsolidateJobRole/);
    assert.match(role('cleanup'), /"CleanupJobRole/);
  });

  it("lets the files fan-out read only the pipeline's intake folder and work/, and write only work/ and results/xml-json/", () => {
    const statements = statementsOf(built, 'FilesFanoutJobRole');
    const reads = statements.filter((s) => actionsOf(s).includes('s3:GetObject*')).flatMap(prefixesOf);
    const writes = statements.filter((s) => actionsOf(s).includes('s3:PutObject')).flatMap(prefixesOf);
    assert.deepEqual([...new Set(reads)].sort(), ['intake/xml-json/*', 'work/*']);
    assert.deepEqual([...new Set(writes)].sort(), ['results/xml-json/*', 'work/*']);
    assert.ok(!statements.some((s) => actionsOf(s).some((a) => a.startsWith('s3:DeleteObject'))), 'no delete');
  });

  it('keeps the items fan-out out of intake/ and results/', () => {
    const prefixes = statementsOf(built, 'FanoutJobRole').flatMap(prefixesOf);
    assert.ok(prefixes.length > 0);
    for (const p of prefixes) assert.match(p, /^work\//);
  });

  it('lets on-intake submit its list (split definition), on-split-done the rest of the chain, on-job-failed summary and cleanup', () => {
    const submittable = (handler: string) =>
      statementsOf(built, handler)
        .filter((s) => actionsOf(s).includes('batch:SubmitJob'))
        .map((s) => JSON.stringify(s.Resource))
        .join(' ');
    const ref = (stage: string) => `"Ref":"${definitionId(built, stage)}"`;
    assert.ok(submittable('OnIntake').includes(ref('split')));
    assert.ok(!submittable('OnIntake').includes(ref('fanout')));
    for (const stage of ['fanout', 'consolidate', 'cleanup']) assert.ok(submittable('OnSplitDone').includes(ref(stage)), stage);
    for (const stage of ['consolidate', 'cleanup']) assert.ok(submittable('OnJobFailed').includes(ref(stage)), stage);
  });

  it("tells the handlers the pipeline's queue and its four job definitions in its job-targets parameter", () => {
    const functions = Object.values(built.compute.findResources('AWS::Lambda::Function') as Record<string, Resource>).filter(
      (f) => f.Properties.Environment?.Variables?.FANOUT_JOB_TARGETS_PREFIX !== undefined,
    );
    assert.equal(functions.length, 3);
    const prefix = functions[0]!.Properties.Environment.Variables.FANOUT_JOB_TARGETS_PREFIX as string;
    const parameters = Object.entries(built.compute.findResources('AWS::SSM::Parameter') as Record<string, Resource>);
    const found = parameters.find(([, p]) => p.Properties.Name === `${prefix}xml-json`);
    assert.ok(found, `a parameter ${prefix}xml-json among ${parameters.map(([, p]) => p.Properties.Name).join(', ')}`);
    // {"queue":"<ref>","definitions":{"split":"<ref>","fanout":"<ref>",...}}, in the Fn::Join's parts
    const value = JSON.stringify(found[1].Properties.Value);
    assert.match(value, /\\"queue\\":\\""/);
    for (const stage of ['split', 'fanout', 'consolidate', 'cleanup']) assert.ok(value.includes(definitionId(built, stage)), stage);
    // and each handler may read it
    const [parameterId] = found;
    const policies = Object.values(built.compute.findResources('AWS::IAM::Policy') as Record<string, Resource>);
    const readers = policies.filter((p) => {
      const text = JSON.stringify(p.Properties.PolicyDocument);
      return text.includes('ssm:GetParameter') && text.includes(parameterId);
    });
    assert.equal(readers.length, 3, 'on-intake, on-split-done and on-job-failed');
  });
});
