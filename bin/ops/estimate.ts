/**
 * `fanout estimate <file> --pipeline P`: before anything is uploaded, what a run will be and
 * cost. Reads the file locally as split does (same reader and chunker, nothing written), and
 * predicts the items, chunks, the fan-out wall time, and the AWS cost broken down (Batch compute
 * on Fargate Spot or EC2 Spot, S3 requests, DynamoDB writes, Lambda, SES), beside the same job on
 * Step Functions Distributed Map with Lambda. Prices come from one user-editable file
 * (config/prices.json: region, date, sources).
 *
 * The wall-time model (fan-out only: the children's start, then their calls):
 *   - each child calls with `concurrency` in flight; a call takes `latency`; a child is also bound
 *     by CPU (PER_ITEM_CPU_MS per item on its vCPU) and by its share of the fleet-wide rate limit;
 *   - with `concurrency: "auto"`, a refusal with Retry-After (share `t` of calls: a 429, or a 503
 *     that says when) pauses all of the child's calls to that origin for Retry-After seconds `R`,
 *     so a child whose `c` calls in flight see at least one such answer (probability
 *     q = 1 - (1 - t)^c) waits R more per round: c calls per (latency + q * R);
 *   - with a fixed concurrency `c`, c items are in flight, and an item keeps its place while it
 *     waits to retry (R after a refusal with Retry-After, else the first back-off), so a child
 *     makes c * calls-per-item calls per (calls-per-item * latency + failures-per-item * wait);
 *   - children run in waves of `parallel` (the chunks, or fewer when the queue allows fewer), and
 *     each wave pays a child's start (a container on AWS, a process locally);
 *   - transient failures (share `p`) are retried after a back-off: the chunk's last item waits for
 *     about log(n)/log(1/p) retries in a row, each the mean full-jitter delay (or Retry-After).
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { writeChunks } from '../../batch-jobs/records/chunker';
import { openRecords } from '../../batch-jobs/records/reader';
import { createTask } from '../../batch-jobs/tasks';
import { maxInFlight, type ItemsPipelineConfig } from '../../runtime/config/schema';
import type { WorkItem } from '../../runtime/model';
import { TransientError } from '../../runtime/errors';
import { PROJECT_ROOT } from '../../local/local-run';

/**
 * CPU per item of a fan-out child, ms: measured by the fan-out benchmark (bench/fanout-stage.ts,
 * 20,000 items at 256 in flight, 8% transient failures, the S3 and DynamoDB emulators in the same
 * process): 0.19-0.20 ms per item at load average 16-18, with the stage's own HTTP/1.1 pool.
 * Stated in the output.
 */
export const PER_ITEM_CPU_MS = 0.2;
export const PER_ITEM_CPU_SOURCE = 'bench/fanout-stage.ts: 0.19-0.20 ms of CPU per item at 256 in flight (20,000 items, load 16-18)';

export interface Prices {
  region: string;
  date: string;
  currency: string;
  fargate: { onDemandVcpuHour: number; onDemandGbHour: number; spotVcpuHour: number; spotGbHour: number; minimumBilledSeconds: number };
  ec2Spot: { instanceType: string; vcpus: number; spotHour: number; onDemandHour: number };
  s3: { putPer1000: number; getPer1000: number; listPer1000: number };
  dynamodb: { writeRequestUnitPerMillion: number; readRequestUnitPerMillion: number };
  lambda: { requestPerMillion: number; gbSecond: number };
  ses: { emailPer1000: number; attachmentGb: number };
  stepFunctions: { standardTransitionPer1000: number; expressRequestPerMillion: number; expressGbSecond: number };
}

export const DEFAULT_PRICES_FILE = join(PROJECT_ROOT, 'config', 'prices.json');

export async function loadPrices(file = DEFAULT_PRICES_FILE): Promise<Prices> {
  return JSON.parse(await readFile(file, 'utf8')) as Prices;
}

export interface FileShape {
  rows: number;
  items: number;
  chunks: number;
  invalidItems: number;
  /** Items of each chunk. */
  chunkItems: number[];
  bytes: number;
  /** The first items (for --sample). */
  firstItems: WorkItem[];
}

/** Reads the file as split does (the same reader and chunker), keeping nothing but counts. */
export async function readFileShape(file: string, pipeline: ItemsPipelineConfig, keepItems = 0): Promise<FileShape> {
  const tmp = await mkdtemp(join(tmpdir(), 'fanout-estimate-'));
  const chunkItems: number[] = [];
  const firstItems: WorkItem[] = [];
  let bytes = 0;
  try {
    const source = await openRecords(createReadStream(file), {
      fileName: basename(file),
      columns: pipeline.input.columns,
      sheet: pipeline.input.sheet,
    });
    const result = await writeChunks(source.rows, {
      chunkSize: pipeline.chunkSize,
      maxChunks: 10_000,
      groupBy: pipeline.input.groupBy,
      tmpDir: tmp,
      writeChunk: async (n, body) => {
        bytes += body.length;
        const lines = body
          .toString('utf8')
          .split('\n')
          .filter((l) => l.length > 0);
        chunkItems[n] = lines.length;
        for (const line of lines) if (firstItems.length < keepItems) firstItems.push(JSON.parse(line) as WorkItem);
      },
    });
    return { ...result, chunkItems, bytes, firstItems };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

export interface Latency {
  /** Mean time of one call, ms. */
  meanMs: number;
  /** Share of calls that failed transiently (retried). */
  transientShare: number;
  /**
   * Share of calls refused with a Retry-After (429, or 503 with Retry-After): part of
   * `transientShare`, and each one pauses the child's calls to the origin. @default 0
   */
  pausedShare?: number;
  /** Mean Retry-After of those refusals, ms. @default 1000 */
  retryAfterMs?: number;
  /** Where the figures come from. */
  source: string;
}

/** Makes `items.length` real calls with the pipeline's task; mean time and share of failures. */
export async function sampleLatency(pipeline: ItemsPipelineConfig, items: WorkItem[], env: NodeJS.ProcessEnv): Promise<Latency> {
  const task = createTask(pipeline.task, { env, concurrency: Math.min(maxInFlight(pipeline), items.length) });
  const times: number[] = [];
  let failures = 0;
  let paused = 0;
  let retryAfterMs = 0;
  try {
    const queue = [...items];
    const worker = async () => {
      for (let item = queue.shift(); item; item = queue.shift()) {
        const started = performance.now();
        try {
          await task.run(item, { attempt: 1, signal: AbortSignal.timeout(60_000) });
        } catch (err) {
          failures++;
          if (err instanceof TransientError && err.retryAfterMs !== undefined && err.retryAfterMs > 0) {
            paused++;
            retryAfterMs += err.retryAfterMs;
          }
        }
        times.push(performance.now() - started);
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, items.length) }, worker));
  } finally {
    await task.close?.();
  }
  const meanMs = times.reduce((a, b) => a + b, 0) / Math.max(1, times.length);
  return {
    meanMs,
    transientShare: failures / Math.max(1, times.length),
    pausedShare: paused / Math.max(1, times.length),
    retryAfterMs: paused > 0 ? retryAfterMs / paused : undefined,
    source: `measured: ${times.length} real calls`,
  };
}

export interface EstimateOptions {
  latency: Latency;
  /** Children that run at once. @default - every chunk (the queue's max vCPUs allow it) */
  parallel?: number;
  /**
   * Seconds from a child's submission to its first call, paid once per wave.
   * @default - CHILD_START_SECONDS for the pipeline's compute
   */
  childStartSeconds?: number;
  /** vCPUs and memory of a fan-out child (the job definition). @default 1 vCPU, 2 GiB */
  childVcpus?: number;
  childMemoryGb?: number;
}

/**
 * A fan-out child's start on AWS, s: a Fargate task is normally 30-45 s or more from launch to
 * running (instance, network interface, image pull; AWS re:Post, "how to speed up provisioning of
 * ECS Fargate task"); on EC2 Spot a container on an instance already up starts in seconds, but the
 * compute environment scales from 0 vCPUs, so the first wave waits for instances (about 2 minutes).
 * Assumptions, stated in the output; a local run passes its own (a process start).
 */
export const CHILD_START_SECONDS = {
  'fargate-spot': { perWave: 45, firstWave: 0, source: 'assumed: a Fargate task starts in about 45 s' },
  'ec2-spot': { perWave: 10, firstWave: 120, source: 'assumed: 10 s a container, 120 s for the first instances' },
} as const;

export interface Estimate {
  file: { rows: number; items: number; chunks: number; invalidItems: number; bytes: number };
  pipeline: { name: string; concurrency: number; rateLimitPerSecond: number | null; chunkSize: number; compute: string };
  latency: Latency;
  perItemCpuMs: number;
  perItemCpuSource: string;
  fanout: {
    parallelChildren: number;
    callsPerSecond: number;
    boundBy: 'latency' | 'cpu' | 'rate limit';
    wallSeconds: number;
    tailSeconds: number;
    childSeconds: number;
    /** Each wave's start (the first wave's extra in `firstStartSeconds`). */
    startSeconds: number;
    firstStartSeconds: number;
    startSource: string;
    /** Calls per child and second once started, with the Retry-After pauses counted. */
    perChildCallsPerSecond: number;
  };
  cost: {
    prices: { region: string; date: string; currency: string };
    batch: { compute: number; s3: number; dynamodb: number; lambda: number; ses: number; total: number; computeKind: string };
    stepFunctions: {
      transitions: number;
      express: number;
      lambda: number;
      s3: number;
      total: number;
      batchSize: number;
      lambdaSeconds: number;
    };
  };
}

const round = (n: number, d = 4) => Math.round(n * 10 ** d) / 10 ** d;

export function estimate(shape: FileShape, pipeline: ItemsPipelineConfig, prices: Prices, opts: EstimateOptions): Estimate {
  const { latency } = opts;
  const latencyS = Math.max(0.001, latency.meanMs / 1000);
  const p = Math.min(0.9, Math.max(0, latency.transientShare));
  // Calls per item: the first, and retries of transient failures (geometric). Rates are calls/s.
  const callsPerItem = 1 / (1 - p);
  const parallel = Math.max(1, Math.min(shape.chunks, opts.parallel ?? shape.chunks));
  const inFlight = maxInFlight(pipeline);
  const t = Math.min(p, Math.max(0, latency.pausedShare ?? 0));
  const pauseS = (latency.retryAfterMs ?? 1000) / 1000;
  let byLatency: number;
  if (pipeline.concurrency === 'auto') {
    // A refusal with Retry-After holds every call to the origin (the source guard).
    const pausedRound = t > 0 ? (1 - (1 - t) ** inFlight) * pauseS : 0;
    byLatency = inFlight / (latencyS + pausedRound);
  } else {
    // A fixed number of items in flight: an item keeps its place while it waits to retry (its
    // Retry-After when refused with one, else the first back-off), so waits take places from calls.
    const firstBackoffS = Math.min(pipeline.retry.maxDelayMs, pipeline.retry.baseDelayMs) / 2 / 1000;
    const waitS = p > 0 ? (t / p) * pauseS + (1 - t / p) * firstBackoffS : 0;
    const itemSeconds = callsPerItem * latencyS + (callsPerItem - 1) * waitS;
    byLatency = (inFlight * callsPerItem) / itemSeconds;
  }
  const byCpu = 1000 / PER_ITEM_CPU_MS;
  const byRate = pipeline.rateLimitPerSecond ? pipeline.rateLimitPerSecond / parallel : Number.POSITIVE_INFINITY;
  const perChild = Math.min(byLatency, byCpu, byRate);
  const boundBy = perChild === byRate ? 'rate limit' : perChild === byCpu ? 'cpu' : 'latency';
  // Back-off: mean full-jitter delay of the k-th retry, base * 2^(k-1) / 2, capped.
  const retryDelayS = (k: number) => Math.min(pipeline.retry.maxDelayMs, pipeline.retry.baseDelayMs * 2 ** (k - 1)) / 2 / 1000;
  const maxChunk = Math.max(...shape.chunkItems, 1);
  const streak = p > 0 ? Math.min(pipeline.retry.maxAttempts - 1, Math.max(1, Math.round(Math.log(maxChunk) / Math.log(1 / p)))) : 0;
  let tail = 0;
  for (let k = 1; k <= streak; k++) tail += retryDelayS(k) + latencyS;
  const start =
    opts.childStartSeconds !== undefined
      ? { perWave: opts.childStartSeconds, firstWave: 0, source: 'given' }
      : CHILD_START_SECONDS[pipeline.compute];
  // Waves of `parallel` children; each chunk takes its start, items * calls / rate, and the tail.
  const sizes = [...shape.chunkItems].sort((a, b) => b - a);
  let wall = start.firstWave;
  let childSeconds = 0;
  for (let w = 0; w < sizes.length; w += parallel) {
    const wave = sizes.slice(w, w + parallel);
    const times = wave.map((n) => start.perWave + (n * callsPerItem) / perChild + tail + latencyS);
    wall += Math.max(...times);
    childSeconds += times.reduce((a, b) => a + b, 0);
  }
  const items = shape.items;

  // --- cost on AWS Batch ---
  const vcpus = opts.childVcpus ?? 1;
  const memGb = opts.childMemoryGb ?? 2;
  const minS = prices.fargate.minimumBilledSeconds;
  const fargateTask = (seconds: number, v: number, gb: number) =>
    (Math.max(seconds, minS) / 3600) * (v * prices.fargate.spotVcpuHour + gb * prices.fargate.spotGbHour);
  // split, consolidate and cleanup: one task each, about rows/50k and rows/20k seconds, 1 minute at least.
  const splitS = 30 + shape.rows / 50_000;
  const consolidateS = 30 + shape.rows / 20_000;
  let compute: number;
  let computeKind: string;
  if (pipeline.compute === 'ec2-spot') {
    const vcpuHour = prices.ec2Spot.spotHour / prices.ec2Spot.vcpus;
    compute = ((childSeconds * vcpus + splitS * 2 + consolidateS * 2 + 30 * 0.25) / 3600) * vcpuHour;
    computeKind = `EC2 Spot ${prices.ec2Spot.instanceType} (${prices.ec2Spot.spotHour}/h for ${prices.ec2Spot.vcpus} vCPUs), per vCPU-second used`;
  } else {
    compute =
      shape.chunkItems.reduce((sum, n) => sum + fargateTask((n * callsPerItem) / perChild + tail, vcpus, memGb), 0) +
      fargateTask(splitS, 2, 4) +
      fargateTask(consolidateS, 2, 8) +
      fargateTask(30, 0.25, 0.5);
    computeKind = `Fargate Spot (${prices.fargate.spotVcpuHour}/vCPU-h, ${prices.fargate.spotGbHour}/GB-h, ${minS} s minimum per task)`;
  }
  // S3: chunk files, result parts (every 500 items or 5 s per child), the workbook, the outcomes
  // archive; reads of chunks (fan-out, consolidate), parts (consolidate), the input; listings.
  const parts = shape.chunkItems.reduce((s, n) => s + Math.max(Math.ceil(n / 500), Math.ceil((n * callsPerItem) / perChild / 5)), 0);
  const puts = shape.chunks + parts + 3 + Math.ceil(shape.bytes / (8 * 1024 * 1024));
  const gets = shape.chunks * 2 + parts + 1;
  const lists = shape.chunks * 2 + Math.ceil(parts / 1000) + 1;
  const s3 = (puts / 1000) * prices.s3.putPer1000 + (gets / 1000) * prices.s3.getPer1000 + (lists / 1000) * prices.s3.listPer1000;
  // DynamoDB: run record (about 15 writes), each chunk put, RUNNING, DONE, one update per part,
  // deleted by cleanup; reads: the run by each child at start and for live limits every 2 s.
  const wcu = 15 + shape.chunks * 4 + parts;
  const rcu = shape.chunks * 3 + childSeconds / 2;
  const dynamodb = (wcu / 1e6) * prices.dynamodb.writeRequestUnitPerMillion + (rcu / 1e6) * prices.dynamodb.readRequestUnitPerMillion;
  // Lambda: on-intake and on-split-done, about a second each at 256 MB.
  const lambda = (2 / 1e6) * prices.lambda.requestPerMillion + 2 * 0.25 * prices.lambda.gbSecond;
  // SES: one email; the workbook attached (about 60 bytes a row zipped).
  const ses = prices.ses.emailPer1000 / 1000 + ((shape.rows * 60) / 1e9) * prices.ses.attachmentGb;
  const batchTotal = compute + s3 + dynamodb + lambda + ses;

  // --- the same on Step Functions Distributed Map + Lambda (Express children, ItemBatcher) ---
  // A batch of B items per child workflow, each a Lambda that makes the calls with the pipeline's
  // concurrency; 1,024 MB Lambdas; a Lambda waits for its calls (billed while waiting).
  const batchSize = Math.max(1, Math.min(pipeline.chunkSize, 1000));
  const children = Math.ceil(items / batchSize);
  const lambdaSeconds = (batchSize * callsPerItem) / Math.min(byLatency, byCpu * 2) + tail + 0.1;
  const transitions = children + 10; // one per child workflow started, plus the parent's own states
  const sfnTransitions = (transitions / 1000) * prices.stepFunctions.standardTransitionPer1000;
  const express =
    (children / 1e6) * prices.stepFunctions.expressRequestPerMillion +
    children * lambdaSeconds * 0.064 * prices.stepFunctions.expressGbSecond;
  const sfnLambda = (children / 1e6) * prices.lambda.requestPerMillion + children * lambdaSeconds * 1.0 * prices.lambda.gbSecond;
  const sfnS3 = ((children + 2) / 1000) * prices.s3.putPer1000 + ((children + 1) / 1000) * prices.s3.getPer1000;
  const sfnTotal = sfnTransitions + express + sfnLambda + sfnS3;

  return {
    file: { rows: shape.rows, items, chunks: shape.chunks, invalidItems: shape.invalidItems, bytes: shape.bytes },
    pipeline: {
      name: pipeline.name,
      concurrency: maxInFlight(pipeline),
      rateLimitPerSecond: pipeline.rateLimitPerSecond ?? null,
      chunkSize: pipeline.chunkSize,
      compute: pipeline.compute,
    },
    latency,
    perItemCpuMs: PER_ITEM_CPU_MS,
    perItemCpuSource: PER_ITEM_CPU_SOURCE,
    fanout: {
      parallelChildren: parallel,
      callsPerSecond: round(Math.min(perChild * parallel, pipeline.rateLimitPerSecond ?? Number.POSITIVE_INFINITY), 1),
      boundBy,
      wallSeconds: round(wall, 1),
      tailSeconds: round(tail, 2),
      childSeconds: round(childSeconds, 1),
      startSeconds: start.perWave,
      firstStartSeconds: start.firstWave,
      startSource: start.source,
      perChildCallsPerSecond: round(perChild, 1),
    },
    cost: {
      prices: { region: prices.region, date: prices.date, currency: prices.currency },
      batch: {
        compute: round(compute),
        s3: round(s3),
        dynamodb: round(dynamodb),
        lambda: round(lambda, 6),
        ses: round(ses, 6),
        total: round(batchTotal),
        computeKind,
      },
      stepFunctions: {
        transitions: round(sfnTransitions),
        express: round(express),
        lambda: round(sfnLambda),
        s3: round(sfnS3),
        total: round(sfnTotal),
        batchSize,
        lambdaSeconds: round(lambdaSeconds, 2),
      },
    },
  };
}

const money = (n: number, c: string) => `${c === 'USD' ? '$' : `${c} `}${n < 0.01 ? n.toFixed(4) : n.toFixed(2)}`;

export function estimateText(e: Estimate, pricesFile: string): string {
  const c = e.cost.prices.currency;
  const b = e.cost.batch;
  const s = e.cost.stepFunctions;
  return [
    `Estimate for ${e.pipeline.name}:`,
    `  file: ${e.file.rows.toLocaleString('en-US')} rows, ${e.file.items.toLocaleString('en-US')} items (${e.file.invalidItems} with bad cells), ${e.file.chunks} chunk(s) of up to ${e.pipeline.chunkSize}`,
    `  calls: ${e.latency.meanMs.toFixed(0)} ms each, ${(e.latency.transientShare * 100).toFixed(1)}% retried, ${((e.latency.pausedShare ?? 0) * 100).toFixed(1)}% refused with Retry-After ${((e.latency.retryAfterMs ?? 1000) / 1000).toFixed(1)} s (${e.latency.source})`,
    `  per-item CPU: ${e.perItemCpuMs} ms (${e.perItemCpuSource})`,
    `  fan-out: ${e.fanout.parallelChildren} children at once, ${e.pipeline.concurrency} in flight each, rate limit ${e.pipeline.rateLimitPerSecond ?? 'none'}`,
    `    about ${e.fanout.callsPerSecond.toLocaleString('en-US')} calls/s (${e.fanout.perChildCallsPerSecond} per child, bound by ${e.fanout.boundBy}); wall time about ${e.fanout.wallSeconds} s`,
    `    (a child's start ${e.fanout.startSeconds} s a wave${e.fanout.firstStartSeconds ? `, ${e.fanout.firstStartSeconds} s more for the first` : ''}: ${e.fanout.startSource}; retry tail ${e.fanout.tailSeconds} s)`,
    `  cost on AWS Batch (${e.pipeline.compute}), prices ${e.cost.prices.region} as of ${e.cost.prices.date} from ${pricesFile}:`,
    `    compute ${money(b.compute, c)}  S3 requests ${money(b.s3, c)}  DynamoDB ${money(b.dynamodb, c)}  Lambda ${money(b.lambda, c)}  SES ${money(b.ses, c)}  = ${money(b.total, c)}`,
    `    (${b.computeKind})`,
    `  the same on Step Functions Distributed Map + Lambda (ItemBatcher of ${s.batchSize}, Express children, ${s.lambdaSeconds} s per 1 GB Lambda):`,
    `    transitions ${money(s.transitions, c)}  Express ${money(s.express, c)}  Lambda ${money(s.lambda, c)}  S3 ${money(s.s3, c)}  = ${money(s.total, c)}`,
    '',
  ].join('\n');
}
