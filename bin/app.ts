/**
 * The CDK app: reads the pipelines config and the deployment settings once, validates both
 * (bad config fails synth naming the field), and builds the data and compute stacks.
 *
 *   npx cdk synth | deploy | destroy   (see docs/infrastructure.md)
 *
 * Context: `-c fanout='{"operatorEmail":"ops@example.com"}'` overrides deployment settings;
 * `-c fanout:checks=false` skips the cdk-nag and cfn-guard checks (on by default);
 * `-c fanout:pipelines=FILE.json` deploys the pipelines (and sources) of FILE.json instead of config/pipelines.ts.
 */
import { App } from 'aws-cdk-lib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DeploymentConfigError, loadDeploymentConfig } from '../config/deployment';
import { loadPipelinesConfig } from '../config/pipelines';
import { ConfigError, loadConfigFile } from '../runtime/config/schema';
import { addComplianceChecks } from '../lib/compliance';
import { buildFanoutApp, FANOUT_APP_CONTEXT } from '../lib/fanout-app';

const projectRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const app = new App({ context: FANOUT_APP_CONTEXT });

function contextObject(key: string): unknown {
  const raw: unknown = app.node.tryGetContext(key);
  if (typeof raw !== 'string') return raw;
  try {
    return JSON.parse(raw);
  } catch (err) {
    throw new Error(`context "${key}" must be a JSON object: ${err instanceof Error ? err.message : String(err)}`);
  }
}

try {
  const pipelinesFile: unknown = app.node.tryGetContext('fanout:pipelines');
  const pipelines = typeof pipelinesFile === 'string' ? loadConfigFile(pipelinesFile) : loadPipelinesConfig();
  const deployment = loadDeploymentConfig(contextObject('fanout'), {
    account: process.env.CDK_DEFAULT_ACCOUNT,
    region: process.env.CDK_DEFAULT_REGION,
  });
  buildFanoutApp(app, { pipelines, deployment, projectRoot });
} catch (err) {
  // A config problem is the user's to fix: say what, without a stack trace.
  if (err instanceof ConfigError || err instanceof DeploymentConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
  throw err;
}
if (String(app.node.tryGetContext('fanout:checks') ?? 'true') !== 'false') addComplianceChecks(app);
