/**
 * Local runs start many short job processes; loading TypeScript through tsx costs each one about
 * a second. So a local run bundles `batch-jobs/main.ts` once with esbuild (dependencies stay
 * external and resolve from the project's node_modules) and starts `node <bundle> <stage>`,
 * the same code the container runs.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { build } from 'esbuild';

export interface StageBundle {
  /** The bundled entry point. */
  file: string;
  remove(): Promise<void>;
}

export async function bundleStages(projectRoot: string): Promise<StageBundle> {
  const dir = join(projectRoot, 'node_modules', '.cache', 'batch-fanout', `stages-${process.pid}-${Date.now().toString(36)}`);
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'main.mjs');
  await build({
    entryPoints: [join(projectRoot, 'batch-jobs', 'main.ts')],
    outfile: file,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: 'inline',
    logLevel: 'silent',
  });
  return { file, remove: () => rm(dir, { recursive: true, force: true }) };
}
