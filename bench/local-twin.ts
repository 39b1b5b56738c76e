/**
 * What the twin adds to a local run (issue 12's goal: under 2 s on the demo, synth cached). Runs
 * the demo (tax-due on examples/tax-due/customers.xlsx, 2,400 rows, against the demo data source,
 * as `npm run demo` does) in a child process per run, alternately on a checkout from before the
 * twin (`--baseline DIR`) and on this one, under the same load, and prints per run: wall time, the
 * CPU-seconds of the child's whole process tree (the run, the emulators, every job process:
 * /proc/self/stat cutime + cstime of the waited-for child), the time to the first job's start, the
 * load average around it and, for the twin, its own figures (setup = synth cache lookup and
 * template reading; the IAM wait after the last job; calls checked). Then the medians and the
 * differences. A warm-up run of each checkout comes first and is not counted (it may synthesize).
 *
 *   npx tsx bench/local-twin.ts --baseline DIR [--pairs 3]
 *
 * DIR is a checkout from before the twin (e.g. `git worktree add /tmp/before <commit>` and a
 * node_modules link). The demo source's answers are seeded, but which items fail transiently
 * depends on timing: compare medians, and CPU-seconds rather than wall time on a loaded machine.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const TICKS_PER_SECOND = 100;

/** CPU-seconds of this process's waited-for children (fields 16 and 17 of /proc/self/stat). */
function childrenCpuSeconds(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  // After "pid (comm) ", field 3 is index 0: cutime is field 16, cstime field 17.
  return (Number(fields[16 - 3]) + Number(fields[17 - 3])) / TICKS_PER_SECOND;
}

interface DriveResult {
  status: string;
  durationMs: number;
  firstJobMs: number;
  twin: { setupMs: number; iamWaitMs: number; cached: boolean } | null;
  iam: { calls: number; denied: number } | null;
}

/** One demo run, in this process, with the modules of the checkout at `root`; prints a DriveResult line. */
async function drive(root: string): Promise<void> {
  const { runLocal } = (await import(join(root, 'local', 'local-run.ts'))) as typeof import('../local/local-run');
  const { startDemoDataSource, DEMO_TOKEN } = (await import(
    join(root, 'local', 'sources', 'demo-data-source.ts')
  )) as typeof import('../local/sources/demo-data-source');
  const { loadPipelinesConfig } = (await import(join(root, 'config', 'pipelines.ts'))) as typeof import('../config/pipelines');
  const { replaceOrigin } = (await import(join(root, 'runtime', 'config', 'schema.ts'))) as typeof import('../runtime/config/schema');
  const server = await startDemoDataSource({ port: 0, token: DEMO_TOKEN });
  const out = mkdtempSync(join(tmpdir(), 'bench-twin-'));
  try {
    const base = loadPipelinesConfig();
    const pipelines = base.pipelines.map((p) =>
      p.shape === 'items' && p.task.type === 'http-lookup' && p.name === 'tax-due'
        ? { ...p, task: { ...p.task, url: replaceOrigin(p.task.url, server.url) } }
        : p,
    );
    const started = Date.now();
    let firstJobMs = -1;
    const r = await runLocal({
      file: join(root, 'examples', 'tax-due', 'customers.xlsx'),
      pipeline: 'tax-due',
      config: { ...base, pipelines },
      env: { TAX_API_TOKEN: DEMO_TOKEN },
      outDir: out,
      onJob: (job) => {
        if (firstJobMs < 0 && job.state === 'RUNNING') firstJobMs = Date.now() - started;
      },
    });
    const twin = (r as { twin?: DriveResult['twin'] }).twin;
    const iam = (r as { iam?: DriveResult['iam'] }).iam;
    const result: DriveResult = {
      status: r.status,
      durationMs: r.durationMs,
      firstJobMs,
      twin: twin ? { setupMs: twin.setupMs, iamWaitMs: twin.iamWaitMs, cached: twin.cached } : null,
      iam: iam ? { calls: iam.calls, denied: iam.denied } : null,
    };
    console.log(JSON.stringify(result));
  } finally {
    await server.close();
    rmSync(out, { recursive: true, force: true });
  }
}

interface Measured extends DriveResult {
  project: string;
  wallS: number;
  cpuS: number;
  load1Before: number;
  load1After: number;
}

function measure(project: string): Measured {
  const load = loadavg()[0]!;
  const cpu = childrenCpuSeconds();
  const started = Date.now();
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, ['--import', 'tsx', self, '--drive', project], {
    cwd: project,
    encoding: 'utf8',
    env: { ...process.env, CDK_DISABLE_CLI_TELEMETRY: 'true', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  });
  const wallS = (Date.now() - started) / 1000;
  const cpuS = childrenCpuSeconds() - cpu;
  if (r.status !== 0) throw new Error(`the demo run in ${project} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const line = JSON.parse(r.stdout.trim().split('\n').pop()!) as DriveResult;
  return {
    project,
    wallS: +wallS.toFixed(2),
    cpuS: +cpuS.toFixed(2),
    load1Before: +load.toFixed(2),
    load1After: +loadavg()[0]!.toFixed(2),
    ...line,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const { values } = parseArgs({
  options: { baseline: { type: 'string' }, pairs: { type: 'string', default: '3' }, drive: { type: 'string' } },
});
if (values.drive) {
  await drive(resolve(values.drive));
  process.exit(0);
}
if (!values.baseline) throw new Error('give --baseline DIR: a checkout from before the twin, with node_modules');
const twin = resolve(fileURLToPath(import.meta.url), '..', '..');
const baseline = resolve(values.baseline);
for (const project of [baseline, twin]) console.log(JSON.stringify({ phase: 'warm-up', ...measure(project) }));
const runs: Record<'baseline' | 'twin', Measured[]> = { baseline: [], twin: [] };
for (let i = 0; i < Number(values.pairs); i++) {
  for (const [which, project] of [
    ['baseline', baseline],
    ['twin', twin],
  ] as const) {
    const m = measure(project);
    runs[which].push(m);
    console.log(JSON.stringify({ phase: `${which} ${i + 1}`, ...m }));
  }
}
const summary = (ms: Measured[]) => ({
  wallS: +median(ms.map((m) => m.wallS)).toFixed(2),
  cpuS: +median(ms.map((m) => m.cpuS)).toFixed(2),
  firstJobS: +median(ms.map((m) => m.firstJobMs / 1000)).toFixed(2),
  load1: +median(ms.map((m) => (m.load1Before + m.load1After) / 2)).toFixed(1),
});
const b = summary(runs.baseline);
const t = summary(runs.twin);
console.log(
  JSON.stringify({
    phase: 'medians',
    baseline: b,
    twin: t,
    addedCpuS: +(t.cpuS - b.cpuS).toFixed(2),
    addedWallS: +(t.wallS - b.wallS).toFixed(2),
    addedToFirstJobS: +(t.firstJobS - b.firstJobS).toFixed(2),
    twinSetupMs: median(runs.twin.map((m) => m.twin?.setupMs ?? 0)),
    twinIamWaitMs: median(runs.twin.map((m) => m.twin?.iamWaitMs ?? 0)),
  }),
);
