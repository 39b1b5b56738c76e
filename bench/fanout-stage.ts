/**
 * The fan-out stage as a child runs it: one chunk of work items through `runFanout` (the
 * pipeline's http-lookup task, retries, result parts to S3 every 500 items, progress to the run
 * table, the fleet share read from the run table) against the demo data source, with S3 and
 * DynamoDB emulated on loopback.
 *
 *   npx tsx bench/fanout-stage.ts [--items 5000] [--concurrency 16,64,256] [--latency 50-150] [--failure-rate 0.08]
 *   npx tsx bench/fanout-stage.ts --concurrency 256 --profile prof   # a CPU profile of the stage's run alone, in prof/
 *   npx tsx bench/fanout-stage.ts --emulators in-process               # the emulators' CPU counted too
 *
 * Prints items/s, retries, failures, CPU-seconds and CPU per item (user and system) of this
 * process, peak RSS and the load average, per concurrency ("auto" too). The data source and, by
 * default, the S3 and DynamoDB emulators run in child processes, so their CPU is not counted: on
 * AWS they run elsewhere. `--emulators in-process` runs the emulators in this process, as the
 * figures before 2026-12-01 did (each part PUT and progress write then costs the emulator's side too).
 */
// Quiet the SDK's Node 20 notice before any client is made.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { runFanout } from '../batch-jobs/stages/fanout';
import { createTask } from '../batch-jobs/tasks';
import { createAwsClients } from '../runtime/adapters/clients';
import { DynamoRunTable } from '../runtime/adapters/dynamo-run-table';
import { S3ObjectStore } from '../runtime/adapters/s3-object-store';
import { SesMailer } from '../runtime/adapters/ses-mailer';
import { startEmulators, type LocalEmulators } from '../local/emulators';
import { maxInFlight } from '../runtime/config/schema';
import { silentLogger } from '../runtime/log';
import { keys, type WorkItem } from '../runtime/model';
import { toJsonl } from '../batch-jobs/records/jsonl';
import { customers, taxConfig, TOKEN } from '../test/e2e/fixtures';

/** The S3, DynamoDB and SES emulators in a child process (their CPU is not this process's). */
async function startEmulatorProcess(dataDir: string): Promise<Pick<LocalEmulators, 'env' | 'bucket' | 'table' | 'stop'>> {
  const script = fileURLToPath(new URL('./emulators-process.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script, dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const lines = createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`the emulators exited early (${code})`)));
  });
  const started = JSON.parse(first) as Pick<LocalEmulators, 'env' | 'bucket' | 'table'>;
  return {
    ...started,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The demo data source in a child process (its CPU is not this process's). */
async function startSourceProcess(latency: string, failureRate: number): Promise<{ url: string; stop(): void }> {
  const script = fileURLToPath(new URL('../local/sources/demo-data-source.ts', import.meta.url));
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', script, '--port', '0', '--json', '--latency', latency, '--failure-rate', String(failureRate), '--token', TOKEN],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`demo data source exited early (${code})`)));
  });
  return { url: (JSON.parse(first) as { url: string }).url, stop: () => child.kill('SIGTERM') };
}

const args = process.argv.slice(2);
const opt = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : fallback;
};
const items = Number(opt('items', '5000'));
const levels = opt('concurrency', '16,64,256')
  .split(',')
  .map((c) => (c === 'auto' ? ('auto' as const) : Number(c)));
const [minL, maxL] = opt('latency', '50-150').split('-').map(Number) as [number, number];
const failureRate = Number(opt('failure-rate', '0.08'));
const profileDir = opt('profile', '');
const emulatorsWhere = opt('emulators', 'child');
if (emulatorsWhere !== 'child' && emulatorsWhere !== 'in-process')
  throw new Error(`--emulators is child or in-process, got ${emulatorsWhere}`);
if (profileDir) await mkdir(profileDir, { recursive: true });

const dir = await mkdtemp(join(tmpdir(), 'bench-fanout-'));
const emulators = emulatorsWhere === 'child' ? await startEmulatorProcess(dir) : await startEmulators({ dataDir: dir });
const source = await startSourceProcess(`${minL}-${maxL}`, failureRate);
const clients = createAwsClients(emulators.env);
const store = new S3ObjectStore(clients.s3, emulators.bucket);
const table = new DynamoRunTable(clients.dynamo, emulators.table);

let peak = 0;
const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 500);
console.log(
  `fan-out stage: ${items} items, data source latency ${minL}-${maxL} ms, ${failureRate * 100}% transient failures, ` +
    `emulators ${emulatorsWhere === 'child' ? 'in a child process (not counted)' : 'in this process (counted)'}`,
);
try {
  for (const concurrency of levels) {
    const config = taxConfig(source.url, {
      concurrency,
      chunkSize: Math.min(items, 10_000),
      retry: { maxAttempts: 5, baseDelayMs: 200, maxDelayMs: 5_000 },
    });
    const pipeline = config.pipelines[0]!;
    const runId = `bench-${concurrency}`;
    await table.createRun({
      runId,
      pipeline: pipeline.name,
      inputKey: 'intake/tax-due/bench.csv',
      inputName: 'bench.csv',
      status: 'FANNING_OUT',
      config: pipeline,
      sender: config.sender,
      createdAt: Date.now(),
      counts: { rows: items, items, chunks: 1 },
    });
    const work: WorkItem[] = customers(items).map((c, i) => ({
      i,
      r: [i + 2],
      d: [{ 'Customer ID': String(100000 + i), Name: c.name, 'Tax Year': 2020, Postcode: c.postcode }],
    }));
    await store.put(keys.chunk(runId, 0), toJsonl(work));
    await table.putChunks([
      { runId, chunk: 0, items, status: 'PENDING', done: 0, failed: 0, retries: 0, attempt: 0, lastPart: -1, updatedAt: 0 },
    ]);
    peak = 0;
    const profiler = profileDir ? await startProfile() : undefined;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const result = await runFanout(
      {
        runId,
        store,
        table,
        mailer: new SesMailer(clients.ses),
        notifier: { publishSplitDone: async () => undefined },
        log: silentLogger,
        env: {},
        arrayIndex: 0,
        attempt: 1,
        tmpDir: dir,
        signal: new AbortController().signal,
        resultLinkDays: 7,
      },
      { createTask: (p) => createTask(p.task, { env: { TAX_API_TOKEN: TOKEN }, concurrency: maxInFlight(p) }) },
    );
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    if (profiler) await profiler.stop(join(profileDir, `fanout-stage-${concurrency}.cpuprofile`));
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    console.log(
      `concurrency ${String(concurrency).padStart(4)}: ${(items / seconds).toFixed(0).padStart(5)} items/s  ${seconds.toFixed(1).padStart(6)} s  ` +
        `retries ${result.retries}  failed ${result.failed}  parts ${result.parts}  CPU ${cpuSeconds.toFixed(2)} s = ` +
        `${((cpuSeconds * 1000) / items).toFixed(3)} ms/item (user ${(cpu.user / 1000 / items).toFixed(3)}, system ${(cpu.system / 1000 / items).toFixed(3)})  peak RSS ${(peak / 2 ** 20).toFixed(0)} MB  load ${loadavg()[0]!.toFixed(1)}`,
    );
  }
} finally {
  clearInterval(sampler);
  source.stop();
  await emulators.stop();
  await rm(dir, { recursive: true, force: true });
}

/** A CPU profile of the stage's run alone (not the start-up), written where `stop` is told. */
async function startProfile(): Promise<{ stop(file: string): Promise<void> }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  return {
    async stop(file) {
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      await writeFile(file, JSON.stringify(profile));
      console.log(`CPU profile of the run: ${file}`);
    },
  };
}
