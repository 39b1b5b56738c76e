/**
 * What the twin adds to a local run: runs `fanout demo --json` (tax-due, 2,400 rows) in a project
 * folder as a child process, and prints its wall time, the CPU-seconds of the whole process tree
 * (the CLI and every job process: /proc/self/stat cutime + cstime of waited-for children), the
 * load average around it, and the run's own figures (duration, IAM calls). Run it on this
 * checkout and on one from before the twin (`--project DIR`) under the same load to compare.
 *
 *   npx tsx bench/local-twin.ts [--project DIR] [--runs 2]
 *
 * The first run of a config synthesizes the app (cached after): `--runs` counts the runs after a
 * warm-up run, which is reported apart.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const TICKS_PER_SECOND = 100;

/** CPU-seconds of this process's waited-for children (fields 16 and 17 of /proc/self/stat). */
function childrenCpuSeconds(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  // After "pid (comm) ", field 3 is index 0: cutime is field 16, cstime field 17.
  return (Number(fields[16 - 3]) + Number(fields[17 - 3])) / TICKS_PER_SECOND;
}

function demo(project: string): Record<string, unknown> {
  const out = mkdtempSync(join(tmpdir(), 'bench-twin-'));
  const load = loadavg()[0]!;
  const cpu = childrenCpuSeconds();
  const started = Date.now();
  const r = spawnSync(process.execPath, [join(project, 'bin', 'fanout.mjs'), 'demo', '--json', '--out', out], {
    cwd: project,
    encoding: 'utf8',
    env: { ...process.env, CDK_DISABLE_CLI_TELEMETRY: 'true', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  });
  const wallS = (Date.now() - started) / 1000;
  const cpuS = childrenCpuSeconds() - cpu;
  rmSync(out, { recursive: true, force: true });
  if (r.status !== 0) throw new Error(`demo failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const line = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
  return {
    wallS: +wallS.toFixed(1),
    cpuS: +cpuS.toFixed(1),
    load1Before: +load.toFixed(2),
    load1After: +loadavg()[0]!.toFixed(2),
    runDurationS: Number(line.durationMs) / 1000,
    status: line.status,
    iam: line.iam ?? null,
  };
}

const { values } = parseArgs({ options: { project: { type: 'string' }, runs: { type: 'string', default: '2' } } });
const project = resolve(values.project ?? '.');
console.log(JSON.stringify({ project, phase: 'warm-up (may synthesize)', ...demo(project) }));
for (let i = 0; i < Number(values.runs); i++) console.log(JSON.stringify({ project, phase: `run ${i + 1}`, ...demo(project) }));
