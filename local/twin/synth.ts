/**
 * The synthesized app a local run is driven by, cached: the key is a hash of the pipelines config,
 * the deployment settings, the sources the CDK app is built from (lib/, config/, runtime/) and the
 * aws-cdk-lib version, so a repeated run with the same config pays for no synth. A miss builds the
 * app in this process (aws-cdk-lib is loaded only then), without bundling the handlers or staging
 * the job image (neither is in the templates the twin reads), and keeps the two templates.
 *
 * The data sources' origins (an http-lookup task's scheme, host and port, an osrm-match task's base
 * URL) reach AWS only inside the handler bundle and the run record, never the templates' wiring, and
 * a local run gives its handlers its own config: so the app is synthesized (and keyed) with a fixed
 * placeholder origin, and a demo or test whose data source listens on a new port each time still
 * finds the cache. Should the placeholder ever show up in the templates, that config is synthesized
 * as it is instead. Likewise an SFTP source that names no Secrets Manager secret for its key (a
 * local `fanout pull` reads the key from the environment, and does the pull itself instead of the
 * template's scheduled sftp-pull job) is synthesized with a placeholder secret name, which a
 * deployment refuses to leave out.
 */
import { createHash } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { AppConfig } from '../../runtime/config/schema';
import type { AppTemplates, CfnTemplate } from './template';

/** Source folders the CDK app is built from (lib/ and what it imports). */
const SOURCE_DIRS = ['lib', 'config', 'runtime'];

export interface SynthOptions {
  projectRoot: string;
  config: AppConfig;
  /** Deployment settings overrides, as `-c fanout=...` would give them. @default none */
  deployment?: unknown;
  /** @default <projectRoot>/node_modules/.cache/batch-fanout/twin */
  cacheDir?: string;
}

export interface SynthResult {
  templates: AppTemplates;
  key: string;
  /** True when the templates came from the cache. */
  cached: boolean;
  /** Time the synth took (0 on a hit). */
  synthMs: number;
}

async function sourceFiles(root: string, dir: string): Promise<string[]> {
  const out: string[] = [];
  let entries: Dirent[];
  try {
    entries = await readdir(join(root, dir), { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const rel = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sourceFiles(root, rel)));
    else if (e.name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

/** Stands for a data source's origin in the config the app is synthesized with (see the top of this file). */
export const PLACEHOLDER_ORIGIN = 'https://data-source.twin.invalid';

/** The config with every task's data-source origin replaced by PLACEHOLDER_ORIGIN, and a placeholder key secret for a source without one. */
export function withPlaceholderOrigins(config: AppConfig): AppConfig {
  const origin = /^https?:\/\/[^/{}?#]+/;
  return {
    ...config,
    sources: config.sources.map((s) =>
      s.privateKey.secretName ? s : { ...s, privateKey: { ...s.privateKey, secretName: `twin-local/${s.name}-key` } },
    ),
    pipelines: config.pipelines.map((p) => {
      if (p.shape !== 'items') return p;
      if (p.task.type === 'http-lookup') return { ...p, task: { ...p.task, url: p.task.url.replace(origin, PLACEHOLDER_ORIGIN) } };
      if (p.task.type === 'osrm-match') return { ...p, task: { ...p.task, baseUrl: PLACEHOLDER_ORIGIN } };
      return p;
    }),
  };
}

/** The cache key: config, deployment overrides, every source file the app is built from, the CDK version. */
export async function synthKey(opts: SynthOptions): Promise<string> {
  const h = createHash('sha256');
  h.update(JSON.stringify(opts.config));
  h.update('\0');
  h.update(JSON.stringify(opts.deployment ?? null));
  const files = (await Promise.all(SOURCE_DIRS.map((d) => sourceFiles(opts.projectRoot, d)))).flat().sort();
  const contents = await Promise.all(files.map((f) => readFile(join(opts.projectRoot, f))));
  files.forEach((f, i) => {
    h.update(`\0${f}\0`);
    h.update(contents[i]!);
  });
  const cdk = JSON.parse(await readFile(join(opts.projectRoot, 'node_modules', 'aws-cdk-lib', 'package.json'), 'utf8')) as {
    version: string;
  };
  h.update(`\0aws-cdk-lib@${cdk.version}`);
  return h.digest('hex').slice(0, 32);
}

export function defaultCacheDir(projectRoot: string): string {
  return join(projectRoot, 'node_modules', '.cache', 'batch-fanout', 'twin');
}

async function readCached(dir: string): Promise<AppTemplates | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, 'templates.json'), 'utf8')) as AppTemplates;
  } catch {
    return undefined;
  }
}

/** Builds and synthesizes the app (no bundling, no asset staging) and returns its two templates. */
async function synthesize(opts: SynthOptions): Promise<AppTemplates> {
  const [{ App }, { buildFanoutApp, FANOUT_APP_CONTEXT }, { loadDeploymentConfig }] = await Promise.all([
    import('aws-cdk-lib'),
    import('../../lib/fanout-app'),
    import('../../config/deployment'),
  ]);
  const outdir = await mkdtemp(join(opts.projectRoot, 'node_modules', '.cache', 'batch-fanout', 'synth-'));
  try {
    const app = new App({
      outdir,
      context: {
        ...FANOUT_APP_CONTEXT,
        'aws:cdk:bundling-stacks': [],
        'aws:cdk:disable-asset-staging': true,
        'aws:cdk:enable-path-metadata': true,
      },
      builtinCloudFormationValidation: false,
    });
    const stacks = buildFanoutApp(app, {
      pipelines: opts.config,
      // Environment-agnostic: the twin resolves AWS::Region and AWS::AccountId to its own.
      deployment: loadDeploymentConfig(opts.deployment, {}),
      projectRoot: opts.projectRoot,
    });
    const assembly = app.synth();
    const template = (name: string) => assembly.getStackByName(name).template as CfnTemplate;
    return {
      data: { stackName: stacks.data.stackName, template: template(stacks.data.stackName) },
      compute: { stackName: stacks.compute.stackName, template: template(stacks.compute.stackName) },
    };
  } finally {
    await rm(outdir, { recursive: true, force: true });
  }
}

/** The app's templates for this config: from the cache, or synthesized and cached. */
export async function synthTemplates(opts: SynthOptions): Promise<SynthResult> {
  const placeheld = { ...opts, config: withPlaceholderOrigins(opts.config) };
  const result = await synthCached(placeheld);
  if (!JSON.stringify(result.templates).includes(new URL(PLACEHOLDER_ORIGIN).host)) return result;
  // The origin reached the wiring after all: this config's own templates.
  return synthCached(opts);
}

async function synthCached(opts: SynthOptions): Promise<SynthResult> {
  const cacheDir = opts.cacheDir ?? defaultCacheDir(opts.projectRoot);
  const key = await synthKey(opts);
  const dir = join(cacheDir, key);
  const cached = await readCached(dir);
  if (cached) return { templates: cached, key, cached: true, synthMs: 0 };
  const started = Date.now();
  await mkdir(join(opts.projectRoot, 'node_modules', '.cache', 'batch-fanout'), { recursive: true });
  const templates = await synthesize(opts);
  // Written under a temporary name and renamed: a concurrent run reads a whole entry or none.
  await mkdir(cacheDir, { recursive: true });
  const tmp = await mkdtemp(join(cacheDir, `.${key}-`));
  await writeFile(join(tmp, 'templates.json'), JSON.stringify(templates));
  await rename(tmp, dir).catch(async () => {
    // Another run cached the same key first: theirs is as good as ours.
    await rm(tmp, { recursive: true, force: true });
  });
  return { templates, key, cached: false, synthMs: Date.now() - started };
}

/** For messages: where the cache is, relative to the project. */
export function describeCache(projectRoot: string, key: string): string {
  return relative(projectRoot, join(defaultCacheDir(projectRoot), key));
}
