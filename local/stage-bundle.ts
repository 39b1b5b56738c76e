/**
 * Local runs start many short job processes, a wave of fan-out children at a time. Loading
 * TypeScript through tsx costs each one about a second, and loading the dependencies as hundreds
 * of separate CommonJS files from an ES module costs about as much again (resolution, the CommonJS
 * export scan). So a local run bundles `batch-jobs/main.ts` once with esbuild, its dependencies
 * included, split into chunks so a stage loads only what it imports (main.ts imports each stage
 * when it runs): `node <bundle> <stage>` runs the same code the container runs. Native addons stay
 * external and resolve from the project's node_modules (the bundle is written under it).
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { build } from 'esbuild';

export interface StageBundle {
  /** The bundled entry point. */
  file: string;
  remove(): Promise<void>;
}

/**
 * Packages loaded from node_modules as they are: native addons (DuckDB's bindings, ssh2's optional
 * crypto and cpu-features) and the packages that load them.
 */
const EXTERNAL = ['@duckdb/*', 'ssh2', 'cpu-features'];

/** CommonJS code bundled into an ES module still calls `require` for Node's built-ins. */
const REQUIRE_SHIM = "import { createRequire as __fanoutRequire } from 'node:module'; const require = __fanoutRequire(import.meta.url);";

export async function bundleStages(projectRoot: string): Promise<StageBundle> {
  const dir = join(projectRoot, 'node_modules', '.cache', 'batch-fanout', `stages-${process.pid}-${Date.now().toString(36)}`);
  await mkdir(dir, { recursive: true });
  await build({
    entryPoints: { main: join(projectRoot, 'batch-jobs', 'main.ts') },
    outdir: dir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: EXTERNAL,
    banner: { js: REQUIRE_SHIM },
    // Stack traces name the project's files (the runner starts node with --enable-source-maps);
    // without the dependencies' sources the maps stay small enough to load at every start.
    sourcemap: 'linked',
    sourcesContent: false,
    logLevel: 'silent',
  });
  return { file: join(dir, 'main.mjs'), remove: () => rm(dir, { recursive: true, force: true }) };
}
