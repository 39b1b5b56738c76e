/**
 * How close `fanout estimate` comes to a real run: estimates the demo file (examples/tax-due/
 * customers.xlsx) at the demo source's latency (50-150 ms, mean 100), failure rate (8%, of which
 * 30% are 429s with Retry-After: 1, so 2.4% of calls pause the child's calls for 1 s), the local
 * runner's parallel children and a wave's start (measured here: as many copies of the stage bundle
 * as the runner starts at once, each given a stage name it refuses, so it loads everything and
 * exits; the median of 3 waves), then runs the
 * demo locally and measures the fan-out wall time
 * (first fan-out child started to last one stopped, child process start included) and prints both,
 * their ratio (goal: within 30%), CPU-seconds of this process and the load average.
 *
 *   npx tsx bench/estimate-vs-demo.ts [--runs 1]
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { spawn } from 'node:child_process';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { loadPipelinesConfig } from '../config/pipelines';
import { requireShape, replaceOrigin } from '../runtime/config/schema';
import { DEMO_TOKEN, startDemoDataSource } from '../local/sources/demo-data-source';
import { PROJECT_ROOT, runLocal } from '../local/local-run';
import { estimate, loadPrices, readFileShape } from '../bin/ops/estimate';
import { bundleStages } from '../local/stage-bundle';

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1] || 1) || 1;
const file = join(PROJECT_ROOT, 'examples', 'tax-due', 'customers.xlsx');
const base = loadPipelinesConfig();
const parallel = Math.max(2, availableParallelism() * 2); // the local runner's default
const pipeline = requireShape(base.pipelines.find((p) => p.name === 'tax-due')!, 'items');

/** Seconds from spawning a wave of `n` local children at once to their having loaded the stage code (median of 3). */
async function localWaveStartSeconds(n: number): Promise<number> {
  const bundle = await bundleStages(PROJECT_ROOT);
  const one = () =>
    new Promise<void>((resolve) =>
      spawn(process.execPath, ['--enable-source-maps', bundle.file, 'start-probe'], { stdio: 'ignore' }).on('close', () => resolve()),
    );
  try {
    const times: number[] = [];
    for (let k = 0; k < 3; k++) {
      const t0 = performance.now();
      await Promise.all(Array.from({ length: n }, one));
      times.push((performance.now() - t0) / 1000);
    }
    return times.sort((a, b) => a - b)[1]!;
  } finally {
    await bundle.remove();
  }
}

const shape = await readFileShape(file, pipeline);
const childStartSeconds = Math.round((await localWaveStartSeconds(Math.min(parallel, shape.chunks))) * 100) / 100;
const predicted = estimate(shape, pipeline, await loadPrices(), {
  latency: {
    meanMs: 100,
    transientShare: 0.08,
    pausedShare: 0.08 * 0.3,
    retryAfterMs: 1000,
    source: 'the demo source: 50-150 ms, 8% transient, 2.4% 429 with Retry-After 1 s',
  },
  parallel,
  childStartSeconds,
});
console.log(
  `estimate: ${predicted.file.items} items, ${predicted.file.chunks} chunks, ${parallel} children at once, ` +
    `${pipeline.concurrency} in flight each, a wave's start ${childStartSeconds} s (measured, load ${loadavg()[0]!.toFixed(2)}): ` +
    `fan-out wall ${predicted.fanout.wallSeconds} s (${predicted.fanout.perChildCallsPerSecond} calls/s a child, bound by ${predicted.fanout.boundBy}, retry tail ${predicted.fanout.tailSeconds} s)`,
);

for (let r = 0; r < runs; r++) {
  const source = await startDemoDataSource({ port: 0, token: DEMO_TOKEN });
  const cpu = process.cpuUsage();
  const load = loadavg()[0]!.toFixed(2);
  try {
    const pipelines = base.pipelines.map((p) =>
      p.name === 'tax-due' && p.shape === 'items' && p.task.type === 'http-lookup'
        ? { ...p, task: { ...p.task, url: replaceOrigin(p.task.url, source.url) } }
        : p,
    );
    const result = await runLocal({
      file,
      pipeline: 'tax-due',
      config: { ...base, pipelines },
      env: { TAX_API_TOKEN: DEMO_TOKEN },
      maxParallel: parallel,
    });
    const attempts = result.jobs.filter((j) => j.request.stage === 'fanout').flatMap((j) => j.attempts);
    const wall = (Math.max(...attempts.map((a) => a.stoppedAt)) - Math.min(...attempts.map((a) => a.startedAt))) / 1000;
    const t0 = Math.min(...attempts.map((a) => a.startedAt));
    console.log(
      `  children (start..stop s from the first start): ${attempts
        .map((a) => `#${a.index ?? 0} ${((a.startedAt - t0) / 1000).toFixed(1)}..${((a.stoppedAt - t0) / 1000).toFixed(1)}`)
        .join(', ')}`,
    );
    const used = process.cpuUsage(cpu);
    const ratio = predicted.fanout.wallSeconds / wall;
    console.log(
      `run ${r + 1}: ${result.status}, fan-out wall ${wall.toFixed(1)} s measured vs ${predicted.fanout.wallSeconds} s estimated: ` +
        `estimate/measured ${ratio.toFixed(2)} (${Math.abs(1 - ratio) <= 0.3 ? 'within' : 'outside'} 30%); ` +
        `this process ${((used.user + used.system) / 1e6).toFixed(1)} CPU-s; load average ${load} -> ${loadavg()[0]!.toFixed(2)}`,
    );
  } finally {
    await source.close();
  }
}
