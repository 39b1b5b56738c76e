/**
 * on-intake: an object was created under `intake/<pipeline>/`. Checks the pipeline and the file
 * type, opens the run (the run id is derived from the object, so a duplicated S3 event opens
 * nothing twice) and submits the split job.
 */
import { createHash } from 'node:crypto';
import { findPipeline } from '../../runtime/config/schema';
import { errorMessage } from '../../runtime/errors';
import { describeProblems, quote, s3EventSchema } from '../../runtime/events';
import { once, openRun } from '../../runtime/lifecycle';
import { LOG_EVENTS } from '../../runtime/log';
import { hasControlCharacters, printable } from '../../runtime/mail/messages';
import type { RunRecord } from '../../runtime/model';
import { failRun } from '../../runtime/run/fail-run';
import { handleDatasetObject } from './merge-intake';
import { filesIntake } from './files-intake';
import { nowOf, submitChain, type HandlerDeps } from '../../runtime/run/deps';

/** An S3 ObjectCreated notification, key already URL-decoded. */
export interface ObjectCreated {
  bucket: string;
  key: string;
  size?: number;
  eTag?: string;
  versionId?: string;
  sequencer?: string;
  /** ISO 8601 time of the event. */
  eventTime: string;
}

export type IntakeOutcome =
  | { action: 'ignored'; why: string }
  | { action: 'started'; runId: string; jobId: string }
  | { action: 'duplicate'; runId: string }
  | { action: 'rejected'; runId: string; reason: string }
  | { action: 'waiting'; runId: string; lacking: string[] };

/** S3 event keys are URL-encoded with "+" for spaces. */
export function decodeS3Key(key: string): string {
  return decodeURIComponent(key.replace(/\+/g, ' '));
}

export const SUPPORTED_EXTENSIONS = ['.xlsx', '.csv', '.tsv'] as const;

/** Deterministic run id: the event time and a hash of the object's identity. */
export function runIdFor(ev: ObjectCreated): string {
  const t = new Date(ev.eventTime);
  const stamp = Number.isNaN(t.getTime())
    ? 'unknown'
    : t
        .toISOString()
        .replace(/[-:]/g, '')
        .replace(/\.\d+Z$/, 'Z');
  const identity = [ev.bucket, ev.key, ev.versionId ?? '', ev.eTag ?? '', ev.sequencer ?? ''].join('\n');
  return `${stamp}-${createHash('sha256').update(identity).digest('hex').slice(0, 10)}`;
}

function rejectionFor(name: string): string | undefined {
  const ext = /\.[^./]+$/.exec(name)?.[0]?.toLowerCase() ?? '';
  if ((SUPPORTED_EXTENSIONS as readonly string[]).includes(ext)) return undefined;
  if (ext === '.xls') {
    return `${name} is an Excel 97-2003 workbook (.xls), which is not supported. Open it in Excel, choose File > Save As > Excel Workbook (.xlsx), and upload the .xlsx file.`;
  }
  if (ext === '') {
    return `${name} has no file extension. Upload an Excel workbook (.xlsx) or a CSV/TSV file (.csv, .tsv) named accordingly.`;
  }
  return `${name} is a ${ext} file, which this pipeline cannot read. Upload an Excel workbook (.xlsx) or a CSV/TSV file (.csv, .tsv).`;
}

/**
 * The Lambda's event: an S3 notification of one or more created objects (none for S3's test
 * event). A malformed event is logged with what was wrong and dropped.
 */
export async function handleS3Event(deps: HandlerDeps, event: unknown): Promise<IntakeOutcome[]> {
  const parsed = s3EventSchema.safeParse(event);
  if (!parsed.success) {
    const problems = describeProblems(parsed.error);
    deps.log.error('dropped a malformed S3 event', { problems, event: quote(event) });
    return [{ action: 'ignored', why: `not an S3 notification: ${problems.join('; ')}` }];
  }
  const outcomes: IntakeOutcome[] = [];
  for (const record of parsed.data.Records ?? []) {
    outcomes.push(
      await handleObjectCreated(deps, {
        bucket: record.s3.bucket.name,
        key: decodeS3Key(record.s3.object.key),
        size: record.s3.object.size,
        eTag: record.s3.object.eTag,
        versionId: record.s3.object.versionId,
        sequencer: record.s3.object.sequencer,
        eventTime: record.eventTime,
      }),
    );
  }
  return outcomes;
}

export async function handleObjectCreated(deps: HandlerDeps, ev: ObjectCreated): Promise<IntakeOutcome> {
  // `s`: a name may hold line breaks (an S3 key can hold any character); such an upload must fail visibly.
  const m = /^intake\/([^/]+)\/(.+)$/s.exec(ev.key);
  if (!m) return { action: 'ignored', why: `${ev.key} is not under intake/<pipeline>/` };
  if (ev.key.endsWith('/')) return { action: 'ignored', why: `${ev.key} is a folder marker` };
  const [, folder, rest] = m as unknown as [string, string, string];
  const inputName = rest.split('/').pop() ?? rest;
  const runId = runIdFor(ev);
  const now = nowOf(deps);
  const log = deps.log.child({ runId, pipeline: folder, key: ev.key });
  const pipeline = findPipeline(deps.config, folder);
  // A dataset pipeline gathers its inputs in a batch folder first (lambda/handlers/merge-intake.ts).
  if (pipeline?.shape === 'dataset') return handleDatasetObject(deps, ev, pipeline);
  const expiresAt = Math.floor(now / 1000) + deps.config.runRetentionDays * 86_400;

  if (!pipeline) {
    const known = deps.config.pipelines.map((p) => `intake/${p.name}/`).join(', ');
    const reason = `The file was uploaded to intake/${printable(folder)}/, but there is no pipeline named "${printable(folder)}". Upload it to one of: ${known}.`;
    log.warn('upload to an unknown pipeline folder', { known });
    // A failed run record keeps the history; operators (if configured) get the email.
    const created = await openRun(deps.table, {
      runId,
      pipeline: folder,
      inputKey: ev.key,
      inputName,
      status: 'FAILED',
      sender: deps.config.sender,
      createdAt: now,
      finishedAt: now,
      error: reason,
      expiresAt,
    });
    if (!created) return { action: 'duplicate', runId };
    const run = (await deps.table.getRun(runId))!;
    await failRun(deps, run, { reason, cleanup: false, recipients: deps.config.operatorRecipients });
    return { action: 'rejected', runId, reason };
  }

  // A file pulled into a files pipeline's source folder is one of a batch: its pull's manifest starts the run.
  const files = pipeline.shape === 'files' ? filesIntake(deps.config, pipeline.name, ev.key) : undefined;
  if (files?.ignore) return { action: 'ignored', why: files.ignore };

  const run: RunRecord & { status: 'STARTED' } = {
    runId,
    pipeline: pipeline.name,
    inputKey: ev.key,
    inputName,
    status: 'STARTED',
    config: pipeline,
    sender: deps.config.sender,
    createdAt: now,
    expiresAt,
  };
  const created = await openRun(deps.table, run);
  if (!created) {
    const existing = await deps.table.getRun(runId);
    if (existing?.steps?.split !== undefined || existing?.steps?.list !== undefined || existing?.status !== 'STARTED') {
      log.info('duplicate intake event; run exists already', { status: existing?.status });
      return { action: 'duplicate', runId };
    }
    // The run was opened but split was never submitted (an earlier attempt failed): carry on.
  }

  const rejection = hasControlCharacters(ev.key)
    ? `The file name "${printable(rest)}" holds control characters (line breaks, tabs or others, shown escaped here), which cannot be used safely in file names, email subjects and result names. Rename the file without them and upload it again.`
    : files
      ? files.rejection
      : rejectionFor(inputName);
  if (rejection) {
    await failRun(deps, run, { reason: rejection, cleanup: false });
    return { action: 'rejected', runId, reason: rejection };
  }

  // A files run starts with list, run by the split job definition.
  const first = files ? ({ step: 'list', stage: 'split', label: 'list' } as const) : ({ step: 'split', stage: 'split' } as const);
  const split = await once(deps.table, runId, first.step, 'submitting', async () => {
    try {
      const [jobId] = await submitChain(deps, { ...run, config: pipeline }, [first]);
      return jobId!;
    } catch (err) {
      log.error('could not submit split; the event will be retried', { error: errorMessage(err) });
      throw err;
    }
  });
  if (!split.claimed) return { action: 'duplicate', runId };
  log.info(LOG_EVENTS.runOpened, { jobId: split.value, size: ev.size });
  return { action: 'started', runId, jobId: split.value };
}
