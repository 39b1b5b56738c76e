/**
 * `fanout pull <source>` on one machine: one pull of an SFTP source into the emulated intake
 * folder, then the runs it started, as `fanout run` does for an upload. The private key comes
 * from the source's environment variable. With a state folder, the pull ledger is kept between
 * pulls (`<state>/ledger-<source>.json`): a second pull of an unchanged folder copies nothing.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runPull, type PullResult } from '../batch-jobs/sftp/pull';
import { SftpSession } from '../batch-jobs/sftp/sftp-session';
import { DynamoSourceLedger } from '../runtime/adapters/dynamo-source-ledger';
import { findPipeline, type AppConfig } from '../runtime/config/schema';
import { requireEnv } from '../runtime/env';
import { silentLogger } from '../runtime/log';
import type { PulledFileRecord } from '../runtime/ports';
import { runLocal, type LocalRunResult } from './local-run';

export interface LocalPullOptions {
  source: string;
  config: AppConfig;
  outDir?: string;
  /** Folder that keeps the pull ledger between pulls. @default - none: every pull starts afresh */
  stateDir?: string;
  env?: Record<string, string | undefined>;
}

export interface LocalPullResult {
  pull: PullResult;
  /** The run the pull started (the first, for an items pipeline); absent when it copied nothing. */
  run?: LocalRunResult;
}

export async function pullLocal(opts: LocalPullOptions): Promise<LocalPullResult> {
  const source = opts.config.sources.find((s) => s.name === opts.source);
  if (!source) {
    throw new Error(`no source "${opts.source}" in the config; known: ${opts.config.sources.map((s) => s.name).join(', ') || '(none)'}`);
  }
  const pipeline = findPipeline(opts.config, source.pipeline)!;
  const privateKey = requireEnv(opts.env ?? process.env, source.privateKey.env, `the private key of SFTP source ${source.name}`);
  const stateFile = opts.stateDir ? join(opts.stateDir, `ledger-${source.name}.json`) : undefined;
  let pull: PullResult | undefined;
  const feed = async (ports: Parameters<NonNullable<Parameters<typeof runLocal>[0]['feed']>>[0]) => {
    const ledger = new DynamoSourceLedger(ports.clients.dynamo, ports.table);
    if (stateFile) {
      const saved = await readFile(stateFile, 'utf8').then(
        (t) => JSON.parse(t) as PulledFileRecord[],
        () => [],
      );
      await ledger.restore(saved);
    }
    const session = await SftpSession.connect({ ...source, privateKey, label: source.name });
    try {
      pull = await runPull(source, pipeline.shape, session, { store: ports.store, ledger, log: silentLogger });
    } finally {
      session.close();
    }
    if (stateFile) {
      await mkdir(opts.stateDir!, { recursive: true });
      await writeFile(stateFile, JSON.stringify(await ledger.list(source.name), null, 1));
    }
  };
  try {
    const run = await runLocal({
      file: `sftp://${source.host}${source.folder}`,
      pipeline: pipeline.name,
      config: opts.config,
      outDir: opts.outDir,
      feed,
    });
    return { pull: pull!, run };
  } catch (err) {
    // A pull that copied nothing starts no run: that is its answer, not a failure.
    if (pull && pull.copied.length === 0) return { pull };
    throw err;
  }
}

/** What a person reads after a pull. */
export function describePull(r: LocalPullResult): string {
  const p = r.pull;
  const lines = [`Pull ${p.pullId} of ${p.source} into ${p.pipeline}: listed ${p.listed}, copied ${p.copied.length}`];
  if (p.copied.length === 0) lines.push('  nothing new to copy: every matching file was copied before and is unchanged, or too young');
  if (p.unchanged.length > 0) lines.push(`  unchanged since an earlier pull: ${p.unchanged.length}`);
  if (p.tooYoung.length > 0) lines.push(`  too young (left for the next pull): ${p.tooYoung.join(', ')}`);
  for (const f of p.failed) lines.push(`  failed: ${f.path}: ${f.error}`);
  return `${lines.join('\n')}\n`;
}
