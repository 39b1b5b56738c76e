/**
 * How close `fanout estimate` comes to a real run: estimates the demo file (examples/tax-due/
 * customers.xlsx) at the demo source's latency (50-150 ms, mean 100), failure rate (8%) and the
 * local runner's parallel children, then runs the demo locally and measures the fan-out wall time
 * (first fan-out child started to last one stopped, child process start included) and prints both,
 * their ratio (goal: within 30%), CPU-seconds of this process and the load average.
 *
 *   npx tsx bench/estimate-vs-demo.ts [--runs 1]
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { loadPipelinesConfig } from '../config/pipelines';
import { requireShape, replaceOrigin } from '../runtime/config/schema';
import { DEMO_TOKEN, startDemoDataSource } from '../local/sources/demo-data-source';
import { PROJECT_ROOT, runLocal } from '../local/local-run';
import { estimate, loadPrices, readFileShape } from '../bin/ops/estimate';

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1] || 1) || 1;
const file = join(PROJECT_ROOT, 'examples', 'tax-due', 'customers.xlsx');
const base = loadPipelinesConfig();
const parallel = Math.max(2, availableParallelism() * 2); // the local runner's default
const pipeline = requireShape(base.pipelines.find((p) => p.name === 'tax-due')!, 'items');

const shape = await readFileShape(file, pipeline);
const predicted = estimate(shape, pipeline, await loadPrices(), {
  latency: { meanMs: 100, transientShare: 0.08, source: 'the demo source: 50-150 ms, 8% transient' },
  parallel,
});
console.log(
  `estimate: ${predicted.file.items} items, ${predicted.file.chunks} chunks, ${parallel} children at once, ` +
    `${pipeline.concurrency} in flight each: fan-out wall ${predicted.fanout.wallSeconds} s (bound by ${predicted.fanout.boundBy}, retry tail ${predicted.fanout.tailSeconds} s)`,
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
