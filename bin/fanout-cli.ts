/**
 * The `fanout` command line.
 *
 *   fanout run <file> --pipeline <name> [--config FILE.json] [--out DIR] [--json]
 *   fanout run <left file> <right file> --pipeline <merge pipeline> [--config FILE.json] [--out DIR] [--json]
 *   fanout demo [tax-due|map-match|merge|xml] [--out DIR] [--json]
 *   fanout pull <source> [--config FILE.json] [--out DIR] [--state DIR] [--json]
 *   fanout check-config [--config FILE.json]
 *   fanout status|limit|cancel|redrive|submit|estimate ...   (bin/ops/commands.ts)
 *   fanout iam-report [--pipeline P] [--config FILE.json]
 *
 * Exit codes: 0 the run completed (even with item failures), 1 the run failed, 2 usage error.
 */
import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { loadPipelinesConfig } from '../config/pipelines';
import { startOsrmTestServer } from '../local/sources/osrm-test-server';
import { DEMO_TOKEN, startDemoDataSource } from '../local/sources/demo-data-source';
import {
  ConfigError,
  findPipeline,
  loadConfigFile,
  replaceOrigin,
  type AppConfig,
  type DatasetPipelineConfig,
} from '../runtime/config/schema';
import { datasetUploads, localBatchName, mergeSummaryLines, MergeUsageError } from '../local/merge-run';
import { errorMessage } from '../runtime/errors';
import { describePull, pullLocal } from '../local/local-pull';
import { PROJECT_ROOT, runLocal, TWIN_ACCOUNT, type LocalRunOptions, type LocalRunResult } from '../local/local-run';
import { iamReport, readUsage, runtimeRoles } from '../local/twin/iam-usage';
import { synthTemplates } from '../local/twin/synth';
import { readTwinModel } from '../local/twin/template';
import { createProgressView } from './progress-view';
import { OPS_COMMANDS, OPS_USAGE } from './ops/commands';
import { OpsError } from './ops/ops-error';

export const USAGE = `Usage:
  fanout run <file> --pipeline <name> [--config FILE.json] [--out DIR] [--keep DIR] [--json]
  fanout run <left file> <right file> --pipeline <merge pipeline> [--config FILE.json] [--out DIR] [--json]
  fanout demo [tax-due|map-match|merge|xml] [--out DIR] [--json]
  fanout pull <source> [--config FILE.json] [--out DIR] [--state DIR] [--json]
  fanout check-config [--config FILE.json]
  fanout iam-report [--pipeline <name>] [--config FILE.json]

  pull          One pull of an SFTP source (docs/sftp.md) into the local intake, then the runs it
                started. --state DIR keeps what was copied between pulls.
  run           Runs a pipeline on a file, locally: embedded S3, DynamoDB and SES emulators,
                the same handlers and job stages as on AWS. No AWS account needed. A merge
                (dataset) pipeline takes its files in the order of its inputs, uploaded into one
                batch folder; the JSON line's resultFile is the merged output.
  demo          Starts the bundled demo data source and runs the example pipeline on its example file.
  check-config  Validates a pipelines config and lists its pipelines.
  iam-report    Lists each role's granted IAM actions that no local run used (least privilege,
                shown): local runs check every AWS call against the synthesized policies and keep
                what they used. --pipeline: only that pipeline's runs and the roles they use.

Options:
  --pipeline, -p  Pipeline name (the intake folder).
  --config, -c    Pipelines config as JSON (the schema of config/pipelines.ts). Default: config/pipelines.ts.
  --out, -o       Output folder. Default: ./fanout-out/<runId>/
  --keep DIR      Keep the emulators' data (and the run) in DIR, for the commands below (--local DIR).
  --json          Print one JSON line: runId, pipeline, status, items, succeeded, failed, chunks,
                  resultFile, emailFile, durationMs, iam {calls, denied}.
  --help, -h      This text.

Exit codes: 0 run completed (item failures included), 1 run failed, 2 usage error.

${OPS_USAGE}`;

class UsageError extends Error {
  override readonly name = 'UsageError';
}

interface Io {
  out: NodeJS.WriteStream;
  err: NodeJS.WriteStream;
}

function loadConfig(path: string | undefined): AppConfig {
  return path ? loadConfigFile(path) : loadPipelinesConfig();
}

function summaryLines(r: LocalRunResult): string {
  const rel = (p?: string) => {
    if (!p) return '-';
    const r = relative(process.cwd(), p);
    return r === '' || r.startsWith('..') ? p : r;
  };
  if (r.run?.config?.shape === 'dataset' || r.status === 'WAITING_FOR_INPUTS') return `\n${mergeSummaryLines(r, rel).join('\n')}\n`;
  const lines = [
    '',
    `Run ${r.runId} (${r.pipeline}): ${r.status}`,
    `  items ${r.items}, succeeded ${r.succeeded}, failed ${r.failed}, chunks ${r.chunks}, ${(r.durationMs / 1000).toFixed(1)} s`,
  ];
  if (r.error) lines.push(`  reason: ${r.error.split('\n').join('\n          ')}`);
  lines.push(`  iam:      ${r.iam.calls} AWS calls checked against the synthesized policies, ${r.iam.denied} denied`);
  lines.push(`  workbook: ${rel(r.resultFile)}`, `  email:    ${rel(r.emailFile)}`, `  logs:     ${rel(join(r.outDir, 'jobs.log'))}`);
  return `${lines.join('\n')}\n`;
}

function jsonLine(r: LocalRunResult): string {
  return `${JSON.stringify({
    runId: r.runId,
    pipeline: r.pipeline,
    status: r.status,
    items: r.items,
    succeeded: r.succeeded,
    failed: r.failed,
    chunks: r.chunks,
    resultFile: r.resultFile ?? null,
    emailFile: r.emailFile ?? null,
    durationMs: r.durationMs,
    iam: { calls: r.iam.calls, denied: r.iam.denied },
  })}\n`;
}

async function execute(io: Io, opts: LocalRunOptions, json: boolean): Promise<number> {
  const mode = json ? 'none' : io.out.isTTY ? 'bars' : 'lines';
  const view = createProgressView(io.err.isTTY || mode !== 'bars' ? io.err : io.out, mode);
  let result: LocalRunResult;
  try {
    result = await runLocal({ ...opts, onJob: (j) => view.onJob(j), onProgress: (j, r) => view.onProgress(j, r) });
  } finally {
    view.stop();
  }
  io.out.write(json ? jsonLine(result) : summaryLines(result));
  return result.status === 'SUCCEEDED' ? 0 : 1;
}

/** A merge's batch folder (local/merge-run.ts); a file that cannot be an input is a usage error. */
function mergeUploads(pipeline: DatasetPipelineConfig, files: string[]) {
  if (pipeline.engine !== 'duckdb') {
    throw new UsageError(
      `pipeline ${pipeline.name} runs on ${pipeline.engine}, which cannot run locally (Spark needs EMR Serverless); try it with "engine": "duckdb"`,
    );
  }
  try {
    return datasetUploads(pipeline, files, localBatchName());
  } catch (err) {
    if (err instanceof MergeUsageError) throw new UsageError(err.message);
    throw err;
  }
}

async function runCommand(io: Io, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      pipeline: { type: 'string', short: 'p' },
      config: { type: 'string', short: 'c' },
      out: { type: 'string', short: 'o' },
      keep: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (!values.pipeline) throw new UsageError('--pipeline is required');
  const config = loadConfig(values.config);
  const pipeline = findPipeline(config, values.pipeline);
  if (!pipeline) {
    throw new UsageError(
      `no pipeline "${values.pipeline}" in ${values.config ?? 'config/pipelines.ts'}; known: ${config.pipelines.map((p) => p.name).join(', ')}`,
    );
  }
  const dataset = pipeline.shape === 'dataset';
  if (positionals.length === 0 || (!dataset && positionals.length !== 1)) throw new UsageError('fanout run takes exactly one file');
  for (const f of positionals) if (!existsSync(f)) throw new UsageError(`no such file: ${f}`);
  const file = positionals[0]!;
  const uploads = dataset ? mergeUploads(pipeline, positionals) : undefined;
  return execute(io, { file, uploads, pipeline: values.pipeline, config, outDir: values.out, keepDir: values.keep }, values.json ?? false);
}

/** A bundled example: a local stand-in for its outside service, and the run to make against it. */
interface Demo {
  start(): Promise<{ url: string; close(): Promise<void> }>;
  describe(url: string): string;
  run(url: string): Omit<LocalRunOptions, 'outDir'>;
}

const DEMOS: Record<string, Demo> = {
  'tax-due': {
    start: () => startDemoDataSource({ port: 0, token: DEMO_TOKEN }),
    describe: (url) => `demo data source on ${url} (slow and flaky on purpose)`,
    run: (url) => {
      const base = loadPipelinesConfig();
      const pipelines = base.pipelines.map((p) =>
        p.name === 'tax-due' && p.shape === 'items' && p.task.type === 'http-lookup'
          ? { ...p, task: { ...p.task, url: replaceOrigin(p.task.url, url) } }
          : p,
      );
      return {
        file: join(PROJECT_ROOT, 'examples', 'tax-due', 'customers.xlsx'),
        pipeline: 'tax-due',
        config: { ...base, pipelines },
        env: { TAX_API_TOKEN: DEMO_TOKEN },
      };
    },
  },
  merge: {
    start: async () => ({ url: '', close: async () => undefined }),
    describe: () => 'merging examples/merge/x_list.txt and y_list.txt as analysis.py does (inner join on ID)',
    run: () => {
      const config = loadConfigFile(join(PROJECT_ROOT, 'examples', 'merge', 'pipelines.json'));
      const files = ['x_list.txt', 'y_list.txt'].map((f) => join(PROJECT_ROOT, 'examples', 'merge', f));
      const pipeline = findPipeline(config, 'merge-xy');
      if (pipeline?.shape !== 'dataset') throw new Error('examples/merge/pipelines.json declares no dataset pipeline merge-xy');
      return { file: files[0]!, uploads: mergeUploads(pipeline, files), pipeline: 'merge-xy', config };
    },
  },
  xml: {
    start: async () => ({ url: '', close: async () => undefined }),
    describe: () => 'converting examples/xml/batch.zip (order-10044.xml is malformed on purpose)',
    run: () => ({
      file: join(PROJECT_ROOT, 'examples', 'xml', 'batch.zip'),
      pipeline: 'xml-json',
      config: loadConfigFile(join(PROJECT_ROOT, 'examples', 'xml', 'pipelines.json')),
    }),
  },
  'map-match': {
    start: () => startOsrmTestServer({ port: 0 }),
    describe: (url) => `OSRM test server on ${url}`,
    run: (url) => ({
      file: join(PROJECT_ROOT, 'examples', 'map-match', 'gps-points.csv'),
      pipeline: 'map-match',
      config: loadConfigFile(join(PROJECT_ROOT, 'examples', 'map-match', 'pipelines.json')),
      env: { FANOUT_OSRM_BASE_URL: url },
    }),
  },
};

async function demoCommand(io: Io, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { out: { type: 'string', short: 'o' }, json: { type: 'boolean', default: false } },
  });
  const which = positionals[0] ?? 'tax-due';
  const json = values.json ?? false;
  const demo = DEMOS[which];
  if (!demo) throw new UsageError(`unknown demo "${which}"; choose ${Object.keys(DEMOS).join(' or ')}`);
  const server = await demo.start();
  try {
    if (!json) io.err.write(`${demo.describe(server.url)}\n`);
    return await execute(io, { ...demo.run(server.url), outDir: values.out }, json);
  } finally {
    await server.close();
  }
}

async function pullCommand(io: Io, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      out: { type: 'string', short: 'o' },
      state: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 1) throw new UsageError('fanout pull takes exactly one source name');
  const config = loadConfig(values.config);
  if (!config.sources.some((s) => s.name === positionals[0])) {
    throw new UsageError(
      `no source "${positionals[0]}" in ${values.config ?? 'config/pipelines.ts'}; known: ${config.sources.map((s) => s.name).join(', ') || '(none)'}`,
    );
  }
  const r = await pullLocal({ source: positionals[0]!, config, outDir: values.out, stateDir: values.state });
  if (values.json) {
    io.out.write(
      `${JSON.stringify({ pullId: r.pull.pullId, source: r.pull.source, listed: r.pull.listed, copied: r.pull.copied.length, unchanged: r.pull.unchanged.length, tooYoung: r.pull.tooYoung.length, failed: r.pull.failed.length, runId: r.run?.runId ?? null, status: r.run?.status ?? null, resultFile: r.run?.resultFile ?? null, emailFile: r.run?.emailFile ?? null })}\n`,
    );
  } else {
    io.out.write(describePull(r));
    if (r.run) io.out.write(summaryLines(r.run));
  }
  return r.pull.failed.length > 0 || (r.run && r.run.status !== 'SUCCEEDED') ? 1 : 0;
}

async function iamReportCommand(io: Io, args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { pipeline: { type: 'string', short: 'p' }, config: { type: 'string', short: 'c' } } });
  const config = loadConfig(values.config);
  if (values.pipeline && !findPipeline(config, values.pipeline))
    throw new UsageError(`no pipeline "${values.pipeline}"; known: ${config.pipelines.map((p) => p.name).join(', ')}`);
  const { templates } = await synthTemplates({ projectRoot: PROJECT_ROOT, config });
  const model = readTwinModel(templates, { account: TWIN_ACCOUNT, region: 'us-east-1', bucket: 'pipeline-bucket', table: 'run-table' });
  const usage = await readUsage(PROJECT_ROOT);
  const roles = runtimeRoles(model, values.pipeline);
  const report = await iamReport(model, usage, roles, values.pipeline);
  const ran = Object.values(usage).some((byPipeline) =>
    Object.keys(byPipeline).some((p) => values.pipeline === undefined || p === values.pipeline),
  );
  if (!ran)
    io.err.write(
      `fanout: no local run${values.pipeline ? ` of ${values.pipeline}` : ''} has been recorded yet: every granted action is listed as unused\n`,
    );
  for (const r of report) {
    io.out.write(
      `${r.path.replace(/\/Resource$/, '')} (${r.role}): ${r.granted.length} granted, ${r.unused.length} unused by local runs\n`,
    );
    for (const a of r.unused) io.out.write(`  ${a}\n`);
  }
  return 0;
}

function checkConfigCommand(io: Io, args: string[]): number {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } } });
  const config = loadConfig(values.config);
  for (const p of config.pipelines) {
    if (p.shape !== 'items') {
      io.out.write(`${p.name}: ${p.shape} pipeline, compute ${p.compute}\n`);
      continue;
    }
    io.out.write(
      `${p.name}: ${p.task.type}, ${p.input.columns.length} input columns${p.input.groupBy ? `, grouped by ${p.input.groupBy}` : ''}, chunks of ${p.chunkSize}, ${p.concurrency === 'auto' ? `up to ${p.maxConcurrency} in flight (auto)` : `${p.concurrency} in flight`}, compute ${p.compute}\n`,
    );
  }
  return 0;
}

export async function main(argv: string[], io: Io = { out: process.stdout, err: process.stderr }): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      io.out.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    }
    if (rest.includes('--help') || rest.includes('-h')) {
      io.out.write(`${USAGE}\n`);
      return 0;
    }
    switch (command) {
      case 'run':
        return await runCommand(io, rest);
      case 'demo':
        return await demoCommand(io, rest);
      case 'pull':
        return await pullCommand(io, rest);
      case 'check-config':
        return checkConfigCommand(io, rest);
      case 'iam-report':
        return await iamReportCommand(io, rest);
      default:
        if (Object.hasOwn(OPS_COMMANDS, command)) return await OPS_COMMANDS[command]!(io, rest);
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    if (err instanceof UsageError || (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))) {
      io.err.write(`fanout: ${err.message}\n\n${USAGE}\n`);
      return 2;
    }
    if (err instanceof OpsError) {
      io.err.write(`fanout: ${err.message}\n`);
      return err.exitCode;
    }
    if (err instanceof ConfigError) {
      io.err.write(`fanout: ${err.message}\n`);
      return 2;
    }
    io.err.write(`fanout: ${errorMessage(err)}\n`);
    return 1;
  }
}
