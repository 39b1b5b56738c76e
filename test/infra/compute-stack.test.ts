/**
 * The compute stack's own choices: Spot capacity and queues, job definitions and their retry
 * strategies, the triggers of the handlers, least-privilege grants, encryption, alarms.
 * The app is built once (three pipelines: Fargate with a credential, EC2 Spot, OSRM matching), with
 * deployment settings that differ from every default (fixture.ts nonDefaultDeployment), so each
 * value found in the template was put there by the stack.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { before, describe, it } from 'node:test';
import { Capture, Match, type Template } from 'aws-cdk-lib/assertions';
import type { AppConfigInput } from '../../runtime/config/schema';
import { NON_RETRYABLE_EXIT_CODES } from '../../runtime/errors';
import { buildApp, nonDefaultDeployment as settings, osrmOn, projectRoot, tripsPipeline, twoPipelines, type BuiltApp } from './fixture';

const threePipelines: AppConfigInput = { ...twoPipelines, pipelines: [...twoPipelines.pipelines, tripsPipeline] };

/** Logical ids of the resources of one type whose id starts with a prefix. */
function idsOf(template: Template, type: string, prefix: string): string[] {
  return Object.keys(template.findResources(type)).filter((id) => id.startsWith(prefix));
}

function jobDefinition(template: Template, pipeline: string, stage: string): Record<string, any> {
  const id = idsOf(template, 'AWS::Batch::JobDefinition', `Pipeline${pipeline.replace(/-/g, '')}${stage}Definition`)[0];
  assert.ok(id, `job definition of ${pipeline}/${stage}`);
  return template.findResources('AWS::Batch::JobDefinition')[id]!.Properties as Record<string, any>;
}

/** Statements of the default policy of a role whose logical id starts with `rolePrefix`. */
function statementsOf(template: Template, rolePrefix: string): Record<string, any>[] {
  const policies = template.findResources('AWS::IAM::Policy');
  const out: Record<string, any>[] = [];
  for (const [id, p] of Object.entries(policies)) {
    if (id.startsWith(`${rolePrefix}DefaultPolicy`)) out.push(...(p.Properties.PolicyDocument.Statement as Record<string, any>[]));
  }
  assert.ok(out.length > 0, `policy of ${rolePrefix}`);
  return out;
}

/** The .ts files under `dir`, recursively. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Module specifiers a TypeScript file imports or re-exports, statically or dynamically (type-only imports included). */
function importsOf(source: string): string[] {
  const specs = [
    ...source.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s+(['"])([^'"]+)\1/gms),
    ...source.matchAll(/^\s*import\s+(['"])([^'"]+)\1/gm),
    ...source.matchAll(/\bimport\(\s*(['"])([^'"]+)\1\s*\)/g),
  ].map((m) => m[2]!);
  return [...new Set(specs)];
}

const actionsOf = (s: Record<string, any>): string[] => (Array.isArray(s.Action) ? s.Action : [s.Action]);
const resourcesText = (s: Record<string, any>): string => JSON.stringify(s.Resource);

describe('compute stack', () => {
  let built: BuiltApp;
  let t: Template;

  before(() => {
    built = buildApp({
      pipelines: threePipelines,
      deployment: { ...settings, osrm: osrmOn, operatorEmail: 'ops@example.com' },
    });
    t = built.compute;
  });

  describe('capacity', () => {
    it('runs a Fargate Spot compute environment with max vCPUs from config', () => {
      t.hasResourceProperties('AWS::Batch::ComputeEnvironment', {
        Type: 'managed',
        ComputeResources: Match.objectLike({ Type: 'FARGATE_SPOT', MaxvCpus: 96 }),
      });
    });

    it('runs an EC2 Spot compute environment of the configured instance types and vCPUs, price-capacity optimised', () => {
      t.hasResourceProperties('AWS::Batch::ComputeEnvironment', {
        ComputeResources: Match.objectLike({
          Type: 'SPOT',
          AllocationStrategy: 'SPOT_PRICE_CAPACITY_OPTIMIZED',
          InstanceTypes: ['c6i.32xlarge', 'c5.24xlarge'],
          MinvCpus: 72,
          MaxvCpus: 576,
        }),
      });
    });

    it('gives each compute environment its own job queue', () => {
      t.resourceCountIs('AWS::Batch::JobQueue', 2);
      for (const ce of ['BatchFargateSpot', 'BatchEc2Spot']) {
        const ceId = idsOf(t, 'AWS::Batch::ComputeEnvironment', ce)[0]!;
        t.hasResourceProperties('AWS::Batch::JobQueue', {
          ComputeEnvironmentOrder: [{ ComputeEnvironment: { 'Fn::GetAtt': [ceId, 'ComputeEnvironmentArn'] }, Order: 1 }],
        });
      }
    });

    it('requires IMDSv2 with a hop limit of 1 on the EC2 instances', () => {
      t.hasResourceProperties('AWS::EC2::LaunchTemplate', {
        LaunchTemplateData: Match.objectLike({ MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1 } }),
      });
    });

    it('adds S3 and DynamoDB gateway endpoints to the VPC', () => {
      for (const service of ['s3', 'dynamodb']) {
        t.hasResourceProperties('AWS::EC2::VPCEndpoint', {
          VpcEndpointType: 'Gateway',
          ServiceName: { 'Fn::Join': ['', Match.arrayWith([`.${service}`])] },
        });
      }
    });

    it('runs the jobs in private subnets without public IPs', () => {
      const def = jobDefinition(t, 'tax-due', 'Fanout');
      assert.deepEqual(def.ContainerProperties.NetworkConfiguration, { AssignPublicIp: 'DISABLED' });
      const ce = t.findResources('AWS::Batch::ComputeEnvironment');
      const fargate = Object.entries(ce).find(([id]) => id.startsWith('BatchFargateSpot'))![1];
      const subnets = JSON.stringify(fargate.Properties.ComputeResources.Subnets);
      assert.match(subnets, /jobsSubnet/);
      assert.doesNotMatch(subnets, /publicSubnet/);
    });
  });

  describe('job image', () => {
    it('is a Docker image asset built at deploy time from batch-jobs/Dockerfile for x86_64', () => {
      const manifest = JSON.parse(readFileSync(join(built.outdir, 'batch-fanout-compute.assets.json'), 'utf8'));
      const images = Object.values(manifest.dockerImages) as { source: { directory: string; dockerFile: string; platform: string } }[];
      assert.equal(images.length, 1);
      assert.equal(images[0]!.source.dockerFile, 'batch-jobs/Dockerfile');
      assert.equal(images[0]!.source.platform, 'linux/amd64');
    });

    it('builds both Dockerfile stages on the Node major the handlers run on', () => {
      const runtimes = new Set(Object.values(t.findResources('AWS::Lambda::Function')).map((f) => f.Properties.Runtime as string));
      const handlerMajors = [...runtimes].filter((r) => /^nodejs\d+\.x$/.test(r)).map((r) => /\d+/.exec(r)![0]);
      assert.equal(handlerMajors.length, 1, `one Node runtime among the handlers (${[...runtimes].join(', ')})`);
      const dockerfile = readFileSync(join(projectRoot, 'batch-jobs', 'Dockerfile'), 'utf8');
      const bases = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]);
      const node = `public.ecr.aws/docker/library/node:${handlerMajors[0]}-bookworm-slim`;
      assert.deepEqual(bases, [node, node]);
    });

    it('has a build context of the runtime, the job stages and the manifests only', () => {
      const manifest = JSON.parse(readFileSync(join(built.outdir, 'batch-fanout-compute.assets.json'), 'utf8'));
      const [image] = Object.values(manifest.dockerImages) as { source: { directory: string } }[];
      const context = join(built.outdir, image!.source.directory);
      const top = readdirSync(context)
        .filter((f) => f !== '.dockerignore')
        .sort();
      assert.deepEqual(top, ['batch-jobs', 'config', 'package-lock.json', 'package.json', 'runtime', 'tsconfig.json']);
    });

    it('holds only code whose imports resolve inside the image, to Node built-ins or production dependencies', () => {
      // Given the staged build context (what the Dockerfile COPYs: runtime/, batch-jobs/, config/)
      const manifest = JSON.parse(readFileSync(join(built.outdir, 'batch-fanout-compute.assets.json'), 'utf8'));
      const [image] = Object.values(manifest.dockerImages) as { source: { directory: string } }[];
      const context = join(built.outdir, image!.source.directory);
      const pkg = JSON.parse(readFileSync(join(context, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
      const files = sourceFiles(context);
      assert.ok(
        files.some((f) => f.endsWith(join('batch-jobs', 'main.ts'))),
        'the job entry point is in the context',
      );
      // When every import of every file is resolved
      const problems: string[] = [];
      for (const file of files) {
        for (const spec of importsOf(readFileSync(file, 'utf8'))) {
          const where = `${relative(context, file)} imports "${spec}"`;
          if (spec.startsWith('.')) {
            const target = resolve(dirname(file), spec);
            if (
              !target.startsWith(context + sep) ||
              ![target, `${target}.ts`, join(target, 'index.ts')].some((p) => existsSync(p) && statSync(p).isFile())
            ) {
              problems.push(`${where}: not in the image`);
            }
          } else if (!spec.startsWith('node:') && !builtinModules.includes(spec)) {
            const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
            if (!(name in pkg.dependencies)) problems.push(`${where}: not a production dependency (npm ci --omit=dev leaves it out)`);
          }
        }
      }
      // Then none reaches dev-only code (local/, test/, devDependencies) or a file left out
      assert.deepEqual(problems, []);
    });
  });

  describe('job definitions', () => {
    it('retries a Fargate Spot interruption and other failures, and exits at once on bad input or config', () => {
      const def = jobDefinition(t, 'tax-due', 'Fanout');
      assert.deepEqual(def.PlatformCapabilities, ['FARGATE']);
      assert.deepEqual(def.RetryStrategy, {
        Attempts: 7,
        EvaluateOnExit: [
          { Action: 'RETRY', OnStatusReason: 'Your Spot Task was interrupted*' },
          ...NON_RETRYABLE_EXIT_CODES.map((code) => ({ Action: 'EXIT', OnExitCode: String(code) })),
          { Action: 'RETRY', OnExitCode: '*' },
        ],
      });
    });

    it('retries an EC2 Spot reclaim on the EC2 queue definitions', () => {
      const def = jobDefinition(t, 'heavy-lookup', 'Fanout');
      assert.deepEqual(def.PlatformCapabilities, ['EC2']);
      assert.deepEqual(def.RetryStrategy.EvaluateOnExit[0], { Action: 'RETRY', OnStatusReason: 'Host EC2*' });
    });

    it('sizes, times and retries each stage from config, with the stage as the command', () => {
      const split = jobDefinition(t, 'tax-due', 'Split');
      assert.deepEqual(split.ContainerProperties.Command, ['split']);
      assert.deepEqual(split.Timeout, { AttemptDurationSeconds: 95 * 60 });
      assert.equal(split.RetryStrategy.Attempts, 4);
      assert.deepEqual(split.ContainerProperties.ResourceRequirements, [
        { Type: 'MEMORY', Value: '12288' },
        { Type: 'VCPU', Value: '4' },
      ]);
      const cleanup = jobDefinition(t, 'tax-due', 'Cleanup');
      assert.deepEqual(cleanup.ContainerProperties.Command, ['cleanup']);
      assert.deepEqual(cleanup.Timeout, { AttemptDurationSeconds: 20 * 60 });
      assert.equal(cleanup.RetryStrategy.Attempts, 2);
      assert.deepEqual(cleanup.ContainerProperties.ResourceRequirements, [
        { Type: 'MEMORY', Value: '1024' },
        { Type: 'VCPU', Value: '0.5' },
      ]);
    });

    it("keeps Node's heap at 75 % of the container's memory, so V8 stays inside the container", () => {
      // Given split's 12288 MiB (the fixture's settings)
      const env = jobDefinition(t, 'tax-due', 'Split').ContainerProperties.Environment as { Name: string; Value: string }[];
      assert.deepEqual(
        env.find((e) => e.Name === 'NODE_OPTIONS'),
        { Name: 'NODE_OPTIONS', Value: '--max-old-space-size=9216' },
      );
    });

    it("tells each fan-out how many children its queue can run at once, to share the fleet's rate limit", () => {
      const maxChildren = (pipeline: string) =>
        (jobDefinition(t, pipeline, 'Fanout').ContainerProperties.Environment as { Name: string; Value: string }[]).find(
          (e) => e.Name === 'FANOUT_MAX_CHILDREN',
        )?.Value;
      // Fargate Spot 96 vCPUs, EC2 Spot 576 vCPUs; a fan-out child takes 2 vCPUs.
      assert.equal(maxChildren('tax-due'), '48');
      assert.equal(maxChildren('heavy-lookup'), '288');
    });

    it('sets no FANOUT_TEST_ hook variable (local job runner only) on any job definition', () => {
      const definitions = Object.values(t.findResources('AWS::Batch::JobDefinition'));
      assert.equal(definitions.length, threePipelines.pipelines.length * 4, 'four stages per pipeline');
      const names = definitions.flatMap((d) => (d.Properties.ContainerProperties.Environment as { Name: string }[]).map((e) => e.Name));
      assert.ok(names.includes('FANOUT_BUCKET'), 'the environments were read');
      assert.deepEqual(
        names.filter((n) => n.startsWith('FANOUT_TEST_')),
        [],
      );
    });

    it('rounds fractional vCPUs up to whole vCPUs on EC2', () => {
      // Given cleanup's 0.5 vCPU, which Fargate takes as it is (above)
      const cleanup = jobDefinition(t, 'heavy-lookup', 'Cleanup');
      assert.deepEqual(cleanup.ContainerProperties.ResourceRequirements, [
        { Type: 'MEMORY', Value: '1024' },
        { Type: 'VCPU', Value: '1' },
      ]);
    });

    it("hands the pipeline's credential to its fan-out only, as a Secrets Manager secret", () => {
      const fanout = jobDefinition(t, 'tax-due', 'Fanout');
      assert.equal(fanout.ContainerProperties.Secrets.length, 1);
      assert.equal(fanout.ContainerProperties.Secrets[0].Name, 'TAX_API_TOKEN');
      assert.match(JSON.stringify(fanout.ContainerProperties.Secrets[0].ValueFrom), /:secret:batch-fanout\/tax-due\/api-token/);
      assert.ok(!fanout.ContainerProperties.Environment.some((e: any) => e.Name === 'TAX_API_TOKEN'));
      const withSecrets = Object.values(t.findResources('AWS::Batch::JobDefinition')).filter(
        (r) => r.Properties.ContainerProperties.Secrets,
      );
      assert.equal(withSecrets.length, 1);
    });

    it('lets only the tax-due fan-out execution role read that secret', () => {
      const readers = Object.entries(t.findResources('AWS::IAM::Policy')).filter(([, p]) =>
        JSON.stringify(p.Properties.PolicyDocument).includes('secretsmanager:GetSecretValue'),
      );
      assert.deepEqual(
        readers.map(([id]) => id.replace(/DefaultPolicy.*/, '')),
        ['PipelinetaxdueFanoutExecutionRole'],
      );
    });

    it('tells the split job where to announce and every job where the bucket and table are', () => {
      const split = jobDefinition(t, 'tax-due', 'Split');
      const names = split.ContainerProperties.Environment.map((e: any) => e.Name);
      assert.ok(['FANOUT_BUCKET', 'FANOUT_TABLE', 'FANOUT_SPLIT_DONE_TOPIC_ARN'].every((n) => names.includes(n)));
      const fanout = jobDefinition(t, 'tax-due', 'Fanout');
      assert.ok(!fanout.ContainerProperties.Environment.some((e: any) => e.Name === 'FANOUT_SPLIT_DONE_TOPIC_ARN'));
    });

    it('logs each stage to its own encrypted log group kept for the configured days', () => {
      const logGroup = new Capture();
      const def = jobDefinition(t, 'tax-due', 'Consolidate');
      assert.equal(def.ContainerProperties.LogConfiguration.LogDriver, 'awslogs');
      t.hasResourceProperties('AWS::Batch::JobDefinition', {
        ContainerProperties: Match.objectLike({
          Command: ['consolidate'],
          LogConfiguration: Match.objectLike({ Options: Match.objectLike({ 'awslogs-group': { Ref: logGroup } }) }),
        }),
      });
      assert.match(logGroup.asString(), /^ConsolidateJobLogs/);
      const group = t.findResources('AWS::Logs::LogGroup')[logGroup.asString()]!;
      assert.equal(group.Properties.RetentionInDays, 180);
      assert.match(JSON.stringify(group.Properties.KmsKeyId), /AppKey/);
    });

    it('tells consolidate how long a result link is valid, from config', () => {
      const env = jobDefinition(t, 'tax-due', 'Consolidate').ContainerProperties.Environment as { Name: string; Value: string }[];
      assert.deepEqual(
        env.find((e) => e.Name === 'FANOUT_RESULT_LINK_DAYS'),
        { Name: 'FANOUT_RESULT_LINK_DAYS', Value: '3' },
      );
    });

    it('sets the managed OSRM URL on the fan-out of osrm-match pipelines only', () => {
      const env = (p: string) => jobDefinition(t, p, 'Fanout').ContainerProperties.Environment as { Name: string; Value: unknown }[];
      const url = env('trips').find((e) => e.Name === 'FANOUT_OSRM_BASE_URL');
      assert.match(JSON.stringify(url?.Value), /OsrmLoadBalancer[0-9A-F]+","DNSName"/);
      assert.equal(
        env('tax-due').find((e) => e.Name === 'FANOUT_OSRM_BASE_URL'),
        undefined,
      );
    });

    it("serves the configured extract, matching up to the osrm-match pipeline's maxPoints", () => {
      const [task] = idsOf(t, 'AWS::ECS::TaskDefinition', 'OsrmTask').map((id) => t.findResources('AWS::ECS::TaskDefinition')[id]!);
      const containers = JSON.stringify(task?.Properties.ContainerDefinitions);
      assert.match(containers, /osrm\/region\.tar/);
      assert.match(containers, /--max-matching-size 100\b/);
    });
  });

  describe('events', () => {
    it('notifies on-intake of every upload under intake/, so unknown folders and file types get their email', () => {
      const onIntake = idsOf(t, 'AWS::Lambda::Function', 'OnIntakeFunction')[0]!;
      const notifications = Object.values(t.findResources('Custom::S3BucketNotifications'));
      assert.equal(notifications.length, 1);
      const configs = notifications[0]!.Properties.NotificationConfiguration.LambdaFunctionConfigurations as any[];
      assert.deepEqual(configs, [
        {
          Events: ['s3:ObjectCreated:*'],
          Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: 'intake/' }] } },
          LambdaFunctionArn: { 'Fn::GetAtt': [onIntake, 'Arn'] },
        },
      ]);
    });

    it('encrypts the split-done topic with the app key and refuses publishing without TLS', () => {
      const topic = idsOf(t, 'AWS::SNS::Topic', 'SplitDoneTopic')[0]!;
      t.hasResourceProperties('AWS::SNS::Topic', {
        KmsMasterKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^AppKey'), 'Arn'] },
        DisplayName: 'batch-fanout split done',
      });
      t.hasResourceProperties('AWS::SNS::TopicPolicy', {
        Topics: [{ Ref: topic }],
        PolicyDocument: {
          Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]),
        },
      });
    });

    it('subscribes on-split-done to the topic with its dead-letter queue', () => {
      t.hasResourceProperties('AWS::SNS::Subscription', {
        Protocol: 'lambda',
        Endpoint: { 'Fn::GetAtt': [Match.stringLikeRegexp('^OnSplitDoneFunction'), 'Arn'] },
        RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^OnSplitDoneDeadLetters'), 'Arn'] } },
      });
    });

    it("routes FAILED Batch job events of this app's queues, and only those, to on-job-failed", () => {
      const queues = idsOf(t, 'AWS::Batch::JobQueue', 'Batch').sort();
      const rule = Object.values(t.findResources('AWS::Events::Rule'))[0]!;
      const pattern = rule.Properties.EventPattern;
      assert.deepEqual(pattern.source, ['aws.batch']);
      assert.deepEqual(pattern['detail-type'], ['Batch Job State Change']);
      assert.deepEqual(pattern.detail.status, ['FAILED']);
      assert.deepEqual(pattern.detail.jobQueue.map((q: any) => q['Fn::GetAtt'][0]).sort(), queues);
      assert.match(JSON.stringify(rule.Properties.Targets[0].Arn), /OnJobFailedFunction/);
      assert.match(JSON.stringify(rule.Properties.Targets[0].DeadLetterConfig), /OnJobFailedDeadLetters/);
    });
  });

  describe('handlers', () => {
    it('run on Node.js 22 with JSON logs in their own log group and a dead-letter queue', () => {
      for (const name of ['OnIntake', 'OnSplitDone', 'OnJobFailed']) {
        t.hasResourceProperties('AWS::Lambda::Function', {
          Runtime: 'nodejs22.x',
          Handler: 'index.handler',
          LoggingConfig: {
            LogFormat: 'JSON',
            ApplicationLogLevel: 'INFO',
            SystemLogLevel: 'WARN',
            LogGroup: { Ref: Match.stringLikeRegexp(`^${name}Logs`) },
          },
          DeadLetterConfig: { TargetArn: { 'Fn::GetAtt': [Match.stringLikeRegexp(`^${name}DeadLetters`), 'Arn'] } },
        });
      }
    });

    it('are traced by X-Ray when tracing is on', () => {
      for (const name of ['OnIntake', 'OnSplitDone', 'OnJobFailed']) {
        t.hasResourceProperties('AWS::Lambda::Function', {
          FunctionName: Match.absent(),
          Handler: 'index.handler',
          LoggingConfig: Match.objectLike({ LogGroup: { Ref: Match.stringLikeRegexp(`^${name}Logs`) } }),
          TracingConfig: { Mode: 'Active' },
        });
      }
    });

    it('inline the pipelines config in the bundle, not in the 4 KB environment', () => {
      const fn = Object.entries(t.findResources('AWS::Lambda::Function')).find(([id]) => id.startsWith('OnIntakeFunction'))![1];
      assert.equal(fn.Properties.Environment.Variables.FANOUT_CONFIG, undefined);
      const assetHash = (fn.Properties.Code.S3Key as string).replace(/\.zip$/, '');
      const bundle = readFileSync(join(built.outdir, `asset.${assetHash}`, 'index.mjs'), 'utf8');
      const firstLine = bundle.slice(0, bundle.indexOf('\n'));
      assert.match(firstLine, /process\.env\.FANOUT_CONFIG \?\?= /);
      assert.match(firstLine, /heavy-lookup/);
    });

    it('load from their bundles with the inlined config and the environment the stack gives them', () => {
      const handlers = Object.entries(t.findResources('AWS::Lambda::Function')).filter(([i]) => /^On[A-Za-z]+Function/.test(i));
      assert.deepEqual(handlers.map(([id]) => id.replace(/Function.*/, '')).sort(), ['OnIntake', 'OnJobFailed', 'OnSplitDone']);
      for (const [id, fn] of handlers) {
        const assetHash = (fn.Properties.Code.S3Key as string).replace(/\.zip$/, '');
        const bundle = join(built.outdir, `asset.${assetHash}`, 'index.mjs');
        const names = Object.keys(fn.Properties.Environment.Variables as Record<string, unknown>);
        const env: Record<string, string> = { PATH: process.env.PATH ?? '', AWS_REGION: 'eu-west-1' };
        for (const name of names) env[name] = '{}';
        Object.assign(env, { FANOUT_BUCKET: 'bucket', FANOUT_TABLE: 'table', FANOUT_RUN_TTL_DAYS: '90', NODE_OPTIONS: '' });
        const run = spawnSync(
          process.execPath,
          [
            '--input-type=module',
            '-e',
            `const m = await import(${JSON.stringify(`file://${bundle}`)}); if (typeof m.handler !== 'function') process.exit(3);`,
          ],
          {
            env,
            encoding: 'utf8',
          },
        );
        assert.equal(run.status, 0, `${id}: ${run.stderr}`);
      }
    });

    it("find each pipeline's job queue and job definitions in one SSM parameter per pipeline, not in their environment", () => {
      // given the app with three pipelines
      const fn = Object.entries(t.findResources('AWS::Lambda::Function')).find(([id]) => id.startsWith('OnSplitDoneFunction'))![1];
      const vars = fn.Properties.Environment.Variables;

      // then the handlers get only the parameter prefix
      assert.equal(vars.FANOUT_JOB_QUEUES, undefined);
      assert.equal(vars.FANOUT_JOB_DEFINITIONS, undefined);
      assert.deepEqual(vars.FANOUT_JOB_TARGETS_PREFIX, '/batch-fanout-compute/job-targets/');
      assert.equal(vars.FANOUT_RUN_TTL_DAYS, '45');
      // and the parameter of heavy-lookup names its EC2 queue and its four definitions
      const params = t.findResources('AWS::SSM::Parameter');
      const heavy = Object.values(params).find((p) => p.Properties.Name === '/batch-fanout-compute/job-targets/heavy-lookup');
      assert.ok(
        heavy,
        `parameters: ${Object.values(params)
          .map((p) => p.Properties.Name)
          .join(', ')}`,
      );
      const value = JSON.stringify(heavy.Properties.Value);
      assert.match(value, /queue.*BatchEc2SpotQueue/);
      for (const stage of ['Split', 'Fanout', 'Consolidate', 'Cleanup'])
        assert.match(value, new RegExp(`Pipelineheavylookup${stage}Definition`));
      // and each handler may read exactly these parameters (GetParameter only)
      for (const role of ['OnIntakeRole', 'OnSplitDoneRole', 'OnJobFailedRole']) {
        const reads = statementsOf(t, role).filter((s) => actionsOf(s).some((a) => a.startsWith('ssm:')));
        assert.deepEqual([...new Set(reads.flatMap(actionsOf))], ['ssm:GetParameter'], role);
        assert.equal(reads.flatMap((s) => [s.Resource].flat()).length, threePipelines.pipelines.length, role);
      }
    });

    it('let on-job-failed submit only consolidate (partial results) and cleanup', () => {
      const submits = statementsOf(t, 'OnJobFailedRole').filter((s) => actionsOf(s).includes('batch:SubmitJob'));
      const text = submits.map(resourcesText).join(' ');
      for (const stage of ['Consolidate', 'Cleanup']) assert.match(text, new RegExp(`Pipelinetaxdue${stage}Definition`));
      assert.doesNotMatch(text, /SplitDefinition|FanoutDefinition/);
      assert.doesNotMatch(text, /"\*"/);
    });

    it("let on-split-done submit only fan-out, consolidate and cleanup, to this app's queues", () => {
      const submits = statementsOf(t, 'OnSplitDoneRole').filter((s) => actionsOf(s).includes('batch:SubmitJob'));
      const text = submits.map(resourcesText).join(' ');
      for (const stage of ['Fanout', 'Consolidate', 'Cleanup']) assert.match(text, new RegExp(`PipelinetaxdueP?${stage}Definition`));
      assert.doesNotMatch(text, /SplitDefinition/);
      assert.doesNotMatch(text, /"\*"/);
    });

    it('let on-intake read uploads under intake/ only, and submit only split', () => {
      const statements = statementsOf(t, 'OnIntakeRole');
      const s3Reads = statements.filter((s) => actionsOf(s).includes('s3:GetObject*'));
      assert.equal(s3Reads.length, 1);
      assert.match(resourcesText(s3Reads[0]!), /\/intake\/\*/);
      assert.ok(!statements.some((s) => actionsOf(s).some((a) => a.startsWith('s3:Put') || a.startsWith('s3:Delete'))));
      const submits = statements
        .filter((s) => actionsOf(s).includes('batch:SubmitJob'))
        .map(resourcesText)
        .join(' ');
      assert.doesNotMatch(submits, /FanoutDefinition|ConsolidateDefinition|CleanupDefinition/);
    });

    it('let handlers tag jobs with the run and pipeline tag keys only', () => {
      const tag = statementsOf(t, 'OnJobFailedRole').find((s) => actionsOf(s).includes('batch:TagResource'))!;
      assert.deepEqual(tag.Condition, { 'ForAllValues:StringEquals': { 'aws:TagKeys': ['batch-fanout:run', 'batch-fanout:pipeline'] } });
    });
  });

  describe('job grants', () => {
    it("let consolidate write results/ and history/ (every item's outcome) but never work/", () => {
      const puts = statementsOf(t, 'ConsolidateJobRole').filter((s) => actionsOf(s).some((a) => a.startsWith('s3:PutObject')));
      const written = puts.map(resourcesText).join(' ');
      assert.match(written, /\/results\/\*/);
      assert.match(written, /\/history\/\*/);
      assert.doesNotMatch(written, /\/work\//);
    });

    it('let only cleanup delete, and only under work/', () => {
      for (const role of ['SplitJobRole', 'FanoutJobRole', 'ConsolidateJobRole']) {
        assert.ok(!statementsOf(t, role).some((s) => actionsOf(s).some((a) => a.startsWith('s3:DeleteObject'))), role);
      }
      const deletes = statementsOf(t, 'CleanupJobRole').filter((s) => actionsOf(s).includes('s3:DeleteObject*'));
      assert.equal(deletes.length, 1);
      assert.match(resourcesText(deletes[0]!), /\/work\/\*"/);
    });

    it('let split publish to the split-done topic and nothing else publish', () => {
      const publishers = Object.entries(t.findResources('AWS::IAM::Policy')).filter(([, p]) =>
        JSON.stringify(p.Properties.PolicyDocument).includes('sns:Publish'),
      );
      assert.deepEqual(
        publishers.map(([id]) => id.replace(/DefaultPolicy.*/, '')),
        ['SplitJobRole'],
      );
    });

    it('allow sending mail only from the SES sender identity', () => {
      const sends = statementsOf(t, 'ConsolidateJobRole').filter((s) => actionsOf(s).includes('ses:SendEmail'));
      assert.equal(sends.length, 1);
      assert.match(resourcesText(sends[0]!), /:identity\/",\{"Ref":"SenderIdentity[0-9A-F]+"\}\]/);
      t.hasResourceProperties('AWS::SES::EmailIdentity', { EmailIdentity: 'batch-fanout@example.com' });
    });
  });

  describe("removalPolicy 'destroy'", () => {
    it('deletes the app key and every log group with the stack', () => {
      const kept = (type: string) =>
        Object.entries(t.findResources(type))
          .filter(([, r]) => r.DeletionPolicy !== 'Delete' || r.UpdateReplacePolicy !== 'Delete')
          .map(([id]) => id);
      assert.ok(Object.keys(t.findResources('AWS::Logs::LogGroup')).length >= 4 + 3, 'the job and handler log groups');
      assert.deepEqual(kept('AWS::Logs::LogGroup'), []);
      t.resourceCountIs('AWS::KMS::Key', 1);
      assert.deepEqual(kept('AWS::KMS::Key'), []);
    });
  });

  describe('observability', () => {
    it('alarms on the first dead-lettered event of each handler, notifying the operator topic', () => {
      const operatorTopic = idsOf(t, 'AWS::SNS::Topic', 'ObservabilityOperatorTopic')[0]!;
      for (const name of ['OnIntake', 'OnSplitDone', 'OnJobFailed']) {
        t.hasResourceProperties('AWS::CloudWatch::Alarm', {
          MetricName: 'ApproximateNumberOfMessagesVisible',
          Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [Match.stringLikeRegexp(`^${name}DeadLetters`), 'QueueName'] } }],
          Threshold: 1,
          ComparisonOperator: 'GreaterThanOrEqualToThreshold',
          AlarmActions: [{ Ref: operatorTopic }],
        });
      }
    });

    it('alarms on failed jobs of this app, counted by the failed-job rule', () => {
      t.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/Events',
        MetricName: 'TriggeredRules',
        Dimensions: [{ Name: 'RuleName', Value: { Ref: Match.stringLikeRegexp('^FailedJobsRule') } }],
        AlarmActions: [{ Ref: Match.stringLikeRegexp('^ObservabilityOperatorTopic') }],
      });
    });

    it('encrypts the operator topic and subscribes the operator address', () => {
      t.hasResourceProperties('AWS::SNS::Topic', {
        DisplayName: 'batch-fanout operator alarms',
        KmsMasterKeyId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^AppKey'), 'Arn'] },
      });
      t.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'ops@example.com' });
    });

    it('lets CloudWatch alarms use the app key to publish to the encrypted operator topic', () => {
      t.hasResourceProperties('AWS::KMS::Key', {
        EnableKeyRotation: true,
        KeyPolicy: {
          Statement: Match.arrayWith([
            Match.objectLike({ Principal: { Service: 'cloudwatch.amazonaws.com' }, Action: ['kms:Decrypt', 'kms:GenerateDataKey*'] }),
          ]),
        },
      });
    });

    it('derives run and item metrics from the structured logs and charts them on one dashboard', () => {
      t.hasResourceProperties('AWS::Logs::MetricFilter', {
        FilterPattern: '{ $.message = "fan-out progress" }',
        MetricTransformations: [Match.objectLike({ MetricNamespace: 'BatchFanout', MetricName: 'ItemsDone', MetricValue: '$.done' })],
      });
      t.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
      const body = JSON.stringify(Object.values(t.findResources('AWS::CloudWatch::Dashboard'))[0]!.Properties.DashboardBody);
      for (const title of ['Runs', 'Items per minute', 'Fan-out retries', 'Job failures']) assert.ok(body.includes(title), title);
    });
  });
});
