/**
 * What a local run shows while it works: a progress bar per stage on a terminal, plain lines
 * (one per state change, and fan-out progress every 10%) when output goes to a file or a pipe.
 */
import cliProgress from 'cli-progress';
import type { LocalJob, ProgressMessage } from '../local/job-runner';

export interface ProgressView {
  onJob(job: LocalJob): void;
  onProgress(job: LocalJob, report: ProgressMessage): void;
  stop(): void;
}

const LABEL: Record<string, string> = { split: 'split', fanout: 'fan-out', consolidate: 'consolidate', cleanup: 'cleanup' };

export function createProgressView(out: NodeJS.WriteStream, mode: 'bars' | 'lines' | 'none'): ProgressView {
  if (mode === 'none') return { onJob: () => undefined, onProgress: () => undefined, stop: () => undefined };
  const perChild = new Map<string, Map<number, { done: number; total: number }>>();
  const totals = (job: LocalJob) => {
    const m = perChild.get(job.jobId);
    let done = 0;
    let total = 0;
    for (const v of m?.values() ?? []) {
      done += v.done;
      total += v.total;
    }
    return { done, total };
  };
  const record = (job: LocalJob, r: ProgressMessage) => {
    let m = perChild.get(job.jobId);
    if (!m) perChild.set(job.jobId, (m = new Map()));
    m.set(r.index ?? 0, { done: r.done, total: r.total });
  };

  if (mode === 'lines') {
    const lastDecile = new Map<string, number>();
    return {
      onJob(job) {
        const stage = LABEL[job.request.stage] ?? job.request.stage;
        const size = job.request.arraySize ? ` (${job.request.arraySize} children)` : '';
        if (job.state === 'RUNNING') out.write(`${stage}: running${size}\n`);
        if (job.state === 'SUCCEEDED') out.write(`${stage}: done\n`);
        if (job.state === 'FAILED') out.write(`${stage}: FAILED${job.statusReason ? ` - ${job.statusReason}` : ''}\n`);
      },
      onProgress(job, r) {
        record(job, r);
        if (job.request.stage !== 'fanout') return;
        const { done } = totals(job);
        const children = job.request.arraySize ?? 1;
        const finished = [...(perChild.get(job.jobId)?.values() ?? [])].filter((v) => v.total > 0 && v.done >= v.total).length;
        // A line per finished chunk, at most ten in all.
        const step = Math.max(1, Math.ceil(children / 10));
        if (finished > (lastDecile.get(job.jobId) ?? 0) && (finished % step === 0 || finished === children)) {
          lastDecile.set(job.jobId, finished);
          out.write(`fan-out: ${finished}/${children} chunks finished, ${done} items done\n`);
        }
      },
      stop: () => undefined,
    };
  }

  const bars = new cliProgress.MultiBar(
    {
      stream: out,
      format: ' {stage} |{bar}| {value}/{total} {unit} {status}',
      hideCursor: true,
      clearOnComplete: false,
      autopadding: true,
      barsize: 30,
    },
    cliProgress.Presets.shades_classic,
  );
  const byJob = new Map<string, cliProgress.SingleBar>();
  const barFor = (job: LocalJob) => {
    let bar = byJob.get(job.jobId);
    if (!bar) {
      const stage = (LABEL[job.request.stage] ?? job.request.stage).padEnd(11);
      bar = bars.create(job.request.arraySize ?? 1, 0, { stage, unit: job.request.arraySize ? 'chunks' : 'job', status: '' });
      byJob.set(job.jobId, bar);
    }
    return bar;
  };
  return {
    onJob(job) {
      if (job.state === 'SUBMITTED' || job.state === 'PENDING') return;
      const bar = barFor(job);
      if (job.state === 'RUNNING') bar.update({ status: 'running' });
      if (job.state === 'SUCCEEDED') {
        const items = job.request.stage === 'fanout' ? `, ${totals(job).done} items` : '';
        bar.update(bar.getTotal(), { status: `done${items}` });
      }
      if (job.state === 'FAILED') bar.update({ status: `FAILED ${job.statusReason ?? ''}`.trim() });
    },
    onProgress(job, r) {
      record(job, r);
      const bar = barFor(job);
      if (job.request.stage === 'fanout') {
        const chunksDone = [...(perChild.get(job.jobId)?.values() ?? [])].filter((v) => v.total > 0 && v.done >= v.total).length;
        const { done } = totals(job);
        bar.update(chunksDone, { status: `${done} items` });
      } else if (job.request.stage === 'consolidate' && r.total > 0) {
        bar.setTotal(r.total);
        bar.update(r.done, { unit: 'chunks' });
      }
    },
    stop: () => bars.stop(),
  };
}
