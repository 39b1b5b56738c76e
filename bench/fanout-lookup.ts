/**
 * Fan-out throughput of the `tax-due` lookup against the demo data source, by concurrency.
 *
 *   npx tsx bench/fanout-lookup.ts [--items 5000] [--concurrency 8,32,64,128,256]
 *     [--latency 50-150] [--failure-rate 0.08] [--max-seconds-per-run 300]
 *
 * The data source runs in a child process on 127.0.0.1 (so its CPU and memory are not counted
 * here); this process runs the pipeline's own task (createTask: undici, keep-alive) under
 * runWithRetry with the pipeline's retry policy, driven by forEachConcurrent, as a fan-out child
 * does (without result parts and the run table). Prints, per concurrency: items/s, retries, item
 * failures, sockets the server accepted, CPU time, and peak RSS sampled during the run.
 * Each run is bounded by --max-seconds-per-run (then aborted and reported incomplete).
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createTask } from '../batch-jobs/tasks/index';
import { loadPipelinesConfig } from '../config/pipelines';
import { flagValue } from '../examples/cli';
import { customerRows } from '../examples/tax-due/make-customers';
import type { WorkItem } from '../runtime/model';
import { forEachConcurrent } from '../runtime/pool';
import { runWithRetry } from '../runtime/retry';

const args = process.argv.slice(2);
const arg = (flag: string, fallback: string) => flagValue(args, flag, fallback);
const ITEMS = Number(arg('--items', '5000'));
const CONCURRENCIES = arg('--concurrency', '8,32,64,128,256').split(',').map(Number);
const LATENCY = arg('--latency', '50-150');
const FAILURE_RATE = arg('--failure-rate', '0.08');
const MAX_SECONDS = Number(arg('--max-seconds-per-run', '300'));

interface ServerStats {
  requests: number;
  ok: number;
  connections: number;
  maxInFlight: number;
  unavailable: number;
  throttled: number;
  resets: number;
}

async function startSourceProcess(): Promise<{ url: string; token: string; stop(): void }> {
  const script = fileURLToPath(new URL('../local/sources/demo-data-source.ts', import.meta.url));
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', script, '--port', '0', '--json', '--latency', LATENCY, '--failure-rate', FAILURE_RATE, '--seed', '42'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`demo data source exited early (${code})`)));
  });
  const { url, token } = JSON.parse(first) as { url: string; token: string };
  return { url, token, stop: () => child.kill('SIGTERM') };
}

async function serverStats(url: string): Promise<ServerStats> {
  const res = await fetch(`${url}/__stats`);
  return (await res.json()) as ServerStats;
}

function makeItems(count: number): WorkItem[] {
  return customerRows(count).map(([id, name, year, postcode], i) => ({
    i,
    r: [i + 2],
    d: [
      {
        'Customer ID': id.trim(),
        Name: name.trim(),
        'Tax Year': typeof year === 'string' && /^\d+\s*$/.test(year) ? Number(year) : year,
        Postcode: postcode,
      },
    ],
  }));
}

async function main(): Promise<void> {
  const pipeline = loadPipelinesConfig().pipelines.find((p) => p.name === 'tax-due');
  if (pipeline?.shape !== 'items' || pipeline.task.type !== 'http-lookup')
    throw new Error('pipeline tax-due (http-lookup) not found in config/pipelines.ts');
  const source = await startSourceProcess();
  const taskConfig = { ...pipeline.task, url: pipeline.task.url.replace(/^https?:\/\/[^/]+/, source.url) };
  const items = makeItems(ITEMS);
  console.log(
    `fan-out lookup: ${ITEMS} items, latency ${LATENCY} ms, transient failure rate ${FAILURE_RATE}, ` +
      `retry ${JSON.stringify(pipeline.retry)}, node ${process.version}`,
  );
  console.log('concurrency  items/s  seconds  retries  failed  sockets  server-max-in-flight  cpu-ms/item  peak-rss-MB');
  const results: Record<string, unknown>[] = [];
  try {
    for (const concurrency of CONCURRENCIES) {
      const task = createTask(taskConfig, { env: { [taskConfig.credential!.env]: source.token }, concurrency });
      const before = await serverStats(source.url);
      const controller = new AbortController();
      const deadline = setTimeout(() => controller.abort(new Error('run took too long')), MAX_SECONDS * 1000);
      let retries = 0;
      let failed = 0;
      let done = 0;
      let peakRss = process.memoryUsage.rss();
      const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 20);
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      let incomplete = false;
      try {
        await forEachConcurrent(items, concurrency, async (item) => {
          const out = await runWithRetry((attempt) => task.run(item, { attempt, signal: controller.signal }), pipeline.retry, {
            signal: controller.signal,
            onRetry: () => retries++,
          });
          done++;
          if (!out.ok) failed++;
        });
      } catch (err) {
        incomplete = true;
        console.error(`concurrency ${concurrency}: stopped after ${done} items: ${err instanceof Error ? err.message : String(err)}`);
      }
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      clearInterval(sampler);
      clearTimeout(deadline);
      peakRss = Math.max(peakRss, process.memoryUsage.rss());
      await task.close?.();
      const after = await serverStats(source.url);
      const row = {
        concurrency,
        items: done,
        itemsPerSecond: Math.round(done / seconds),
        seconds: Number(seconds.toFixed(1)),
        retries,
        failed,
        sockets: after.connections - before.connections,
        serverMaxInFlight: after.maxInFlight,
        cpuMsPerItem: Number(((cpu.user + cpu.system) / 1000 / Math.max(1, done)).toFixed(3)),
        peakRssMB: Math.round(peakRss / 2 ** 20),
        incomplete,
      };
      results.push(row);
      console.log(
        [
          String(concurrency).padStart(11),
          String(row.itemsPerSecond).padStart(8),
          String(row.seconds).padStart(8),
          String(retries).padStart(8),
          String(failed).padStart(7),
          String(row.sockets).padStart(8),
          String(row.serverMaxInFlight).padStart(21),
          row.cpuMsPerItem.toFixed(3).padStart(12),
          String(row.peakRssMB).padStart(12),
        ].join(' ') + (incomplete ? '  (incomplete)' : ''),
      );
    }
  } finally {
    source.stop();
  }
  console.log(JSON.stringify({ bench: 'fanout-lookup', items: ITEMS, latencyMs: LATENCY, failureRate: Number(FAILURE_RATE), results }));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
