/**
 * Builds the CDK app for the infrastructure tests, from given configs, once per test file
 * (NodejsFunction bundling runs esbuild for real; the job image is only staged, never built).
 */
import { App, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDeploymentConfig, type DeploymentInput } from '../../config/deployment';
import { parseAppConfig, type AppConfigInput } from '../../runtime/config/schema';
import { pipelinesConfig } from '../../config/pipelines';
import { buildFanoutApp, FANOUT_APP_CONTEXT, type FanoutStacks } from '../../lib/fanout-app';
import { addComplianceChecks } from '../../lib/compliance';

export const projectRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface BuiltApp {
  readonly app: App;
  readonly stacks: FanoutStacks;
  readonly outdir: string;
  readonly data: Template;
  readonly compute: Template;
}

export interface BuildOptions {
  readonly pipelines?: AppConfigInput;
  readonly deployment?: DeploymentInput;
  /** Add cdk-nag and cfn-guard before synth. @default false */
  readonly complianceChecks?: boolean;
  /** Bundle the handlers with esbuild (off when a test looks at no handler code). @default true */
  readonly bundling?: boolean;
}

/** Builds and synthesizes the app in a fresh temp directory (region pinned, account agnostic). */
export function buildApp(options: BuildOptions = {}): BuiltApp {
  const outdir = mkdtempSync(join(tmpdir(), 'fanout-infra-'));
  const skipBundling = options.bundling === false ? { 'aws:cdk:bundling-stacks': [] } : {};
  const app = new App({ outdir, context: { ...FANOUT_APP_CONTEXT, ...skipBundling } });
  const stacks = buildFanoutApp(app, {
    pipelines: parseAppConfig(options.pipelines ?? pipelinesConfig, 'test pipelines'),
    deployment: loadDeploymentConfig(options.deployment, { region: 'eu-west-1' }),
    projectRoot,
  });
  if (options.complianceChecks) addComplianceChecks(app);
  app.synth();
  return {
    app,
    stacks,
    outdir,
    data: Template.fromStack(stacks.data),
    compute: Template.fromStack(stacks.compute),
  };
}

/** The default pipeline plus an EC2 Spot pipeline without a credential, for the compute tests. */
export const twoPipelines: AppConfigInput = {
  ...pipelinesConfig,
  pipelines: [
    ...pipelinesConfig.pipelines,
    {
      name: 'heavy-lookup',
      task: {
        type: 'http-lookup',
        url: 'https://api.example.com/things/{Thing}',
        results: [{ column: 'Value', path: 'value' }],
      },
      input: { columns: [{ name: 'Thing' }] },
      compute: 'ec2-spot',
      recipients: ['heavy-team@example.com'],
    },
  ],
};

/**
 * Acknowledgements this app records on the construct tree (CDK's own, such as the literal-AZ
 * warning it silences on every stack, are left out).
 */
export function acknowledgements(app: App): { path: string; isCfnResource: boolean; id: string; reason: string }[] {
  const out: { path: string; isCfnResource: boolean; id: string; reason: string }[] = [];
  for (const c of app.node.findAll()) {
    for (const entry of c.node.metadata) {
      if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
      for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
        if (id.startsWith('CloudFormation-Validate::')) continue;
        out.push({ path: c.node.path, isCfnResource: 'cfnResourceType' in c, id, reason });
      }
    }
  }
  return out;
}

/** Compliance findings left open in the synthesized app (`complianceChecks: true`), as "plugin rule at path". */
export function openFindings(built: BuiltApp): string[] {
  const report = JSON.parse(readFileSync(join(built.outdir, 'validation-report.json'), 'utf8')) as {
    pluginReports: { pluginName: string; violations: { ruleName: string; violatingConstructs: { constructPath: string }[] }[] }[];
  };
  return report.pluginReports.flatMap((r) =>
    r.violations.flatMap((v) => v.violatingConstructs.map((c) => `${r.pluginName} ${v.ruleName} at ${c.constructPath}`)),
  );
}
