/**
 * Builds the CDK app for the infrastructure tests, from given configs, once per test file
 * (NodejsFunction bundling runs esbuild for real; the job image is only staged, never built).
 * CDK's own CloudFormation validation (a WASM engine started once per process) runs only with
 * the compliance checks, where its findings count too.
 */
import assert from 'node:assert/strict';
import { App, Stack, Validations } from 'aws-cdk-lib';
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
  /** Synthesize without account and region. @default false: region eu-west-1 */
  readonly environmentAgnostic?: boolean;
}

/**
 * A bare stack for a construct test: no environment, nothing in it. Its app leaves CDK's WASM
 * CloudFormation validation off (it starts an engine per process and checks nothing these tests assert).
 */
export function bareStack(): Stack {
  return new Stack(new App({ builtinCloudFormationValidation: false }));
}

/** Builds and synthesizes the app in a fresh temp directory (region pinned, account agnostic). */
export function buildApp(options: BuildOptions = {}): BuiltApp {
  const outdir = mkdtempSync(join(tmpdir(), 'fanout-infra-'));
  const skipBundling = options.bundling === false ? { 'aws:cdk:bundling-stacks': [] } : {};
  const app = new App({
    outdir,
    context: { ...FANOUT_APP_CONTEXT, ...skipBundling },
    builtinCloudFormationValidation: options.complianceChecks === true,
  });
  const stacks = buildFanoutApp(app, {
    pipelines: parseAppConfig(options.pipelines ?? pipelinesConfig, 'test pipelines'),
    deployment: loadDeploymentConfig(options.deployment, options.environmentAgnostic ? {} : { region: 'eu-west-1' }),
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

/** An osrm-match pipeline (default maxPoints), for the managed OSRM server tests. */
export const tripsPipeline: AppConfigInput['pipelines'][number] = {
  name: 'trips',
  task: {
    type: 'osrm-match',
    baseUrl: 'http://127.0.0.1:5000',
    columns: { tripId: 'Trip', timestamp: 'Time', latitude: 'Lat', longitude: 'Lon' },
  },
  input: {
    columns: [{ name: 'Trip' }, { name: 'Time' }, { name: 'Lat', type: 'number' }, { name: 'Lon', type: 'number' }],
    groupBy: 'Trip',
  },
  recipients: ['trips@example.com'],
};

/** The managed OSRM server on a prepared archive. */
export const osrmOn = { enabled: true, extractKey: 'osrm/region.tar' };

/**
 * Deployment settings that differ from the defaults (config/deployment.ts) and from CDK's own, so
 * a test that finds them in the template shows the stack's wiring of the setting, not a default
 * (test/infra/deployment-config.test.ts checks that each differs).
 */
export const nonDefaultDeployment = {
  compute: { fargateSpotMaxVcpus: 96, ec2SpotMaxVcpus: 576, ec2SpotMinVcpus: 72, ec2InstanceTypes: ['c6i.32xlarge', 'c5.24xlarge'] },
  jobs: {
    split: { vcpus: 4, memoryMiB: 12_288, timeoutMinutes: 95, attempts: 4 },
    fanout: { vcpus: 2, memoryMiB: 6144, timeoutMinutes: 240, attempts: 7 },
    consolidate: { vcpus: 4, memoryMiB: 16_384, timeoutMinutes: 150, attempts: 2 },
    cleanup: { vcpus: 0.5, memoryMiB: 1024, timeoutMinutes: 20, attempts: 2 },
  },
  retention: { logDays: 180, runRecordDays: 45 },
  resultLinkDays: 3,
  removalPolicy: 'destroy',
  tracing: true,
} satisfies DeploymentInput;

/** Subnets (logical ids) of the one resource of `type` whose logical id starts with `prefix`. */
export function subnetsOf(t: Template, type: string, prefix: string, path: (props: Record<string, any>) => unknown): string {
  const [resource] = Object.entries(t.findResources(type)).filter(([id]) => id.startsWith(prefix));
  assert.ok(resource, `${prefix} (${type})`);
  return JSON.stringify(path(resource[1].Properties as Record<string, any>));
}

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

/** The validation report synth writes to `outdir` when validation plugins ran. */
export interface ValidationReport {
  readonly pluginReports: {
    readonly pluginName: string;
    readonly violations: { readonly ruleName: string; readonly violatingConstructs: { readonly constructPath: string }[] }[];
    readonly suppressedViolations?: {
      readonly ruleName: string;
      readonly reason: string;
      readonly violatingConstructs: { readonly constructPath: string }[];
    }[];
  }[];
}

export function readValidationReport(outdir: string): ValidationReport {
  return JSON.parse(readFileSync(join(outdir, 'validation-report.json'), 'utf8')) as ValidationReport;
}

/** Compliance findings left open in the synthesized app (`complianceChecks: true`), as "plugin rule at path". */
export function openFindings(built: BuiltApp): string[] {
  const report = readValidationReport(built.outdir);
  return report.pluginReports.flatMap((r) =>
    r.violations.flatMap((v) => v.violatingConstructs.map((c) => `${r.pluginName} ${v.ruleName} at ${c.constructPath}`)),
  );
}
