/**
 * The emails people read: the result of a run, and the failure of one. Plain text first
 * (every client shows it), with the facts a reader needs and what to do next.
 */
import type { MailAttachment, MailMessage } from '../ports';
import type { RunRecord } from '../model';

const fmt = (n: number | undefined) => (n ?? 0).toLocaleString('en-US');

/** Control characters (C0, DEL, C1) and the Unicode line and paragraph separators. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
const NAMED_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * A name (an uploaded file's, a key's) safe to show in a subject or a line of text: every control
 * character is shown escaped, `\n` `\r` `\t` or `\u001B`, so it can neither break a header nor
 * hide in the text.
 */
export function printable(name: string): string {
  return name.replace(CONTROL, (c) => NAMED_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`);
}

/** Whether the name holds a control character that `printable` would escape. */
export function hasControlCharacters(name: string): boolean {
  CONTROL.lastIndex = 0;
  return CONTROL.test(name);
}

function when(ms: number | undefined): string {
  return ms === undefined
    ? '-'
    : new Date(ms)
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, ' UTC');
}

function duration(from: number, to: number | undefined): string {
  if (to === undefined) return '-';
  const s = Math.max(0, Math.round((to - from) / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${sec} s` : `${sec} s`;
}

export function resultSubject(run: RunRecord): string {
  const c = run.counts ?? {};
  const failed = c.failed ?? 0;
  const state = failed > 0 ? `${fmt(c.succeeded)} done, ${fmt(failed)} failed` : `all ${fmt(c.succeeded)} done`;
  return `[batch-fanout] ${run.pipeline}: ${printable(run.inputName)} - ${state}`;
}

export interface ResultMailOptions {
  run: RunRecord;
  to: string[];
  /** The workbook, when it fits the mail service's size limit. */
  attachment?: MailAttachment;
  /** A time-limited link, when it does not (or in addition). */
  link?: { url: string; expiresAt: Date };
  /** Result files by object key, for the record. */
  resultKeys: string[];
  bucket: string;
  truncatedSheets?: string[];
}

export function resultMail(o: ResultMailOptions): MailMessage {
  const { run } = o;
  const c = run.counts ?? {};
  const lines = [
    `Your file ${run.inputName} has been processed by the ${run.pipeline} pipeline.`,
    '',
    `  Rows read:        ${fmt(c.rows)}`,
    `  Work items:       ${fmt(c.items)}`,
    `  Succeeded:        ${fmt(c.succeeded)}`,
    `  Failed:           ${fmt(c.failed)}`,
    `  Retried calls:    ${fmt(c.retries)}`,
    `  Started:          ${when(run.createdAt)}`,
    `  Finished:         ${when(run.finishedAt)}`,
    `  Took:             ${duration(run.createdAt, run.finishedAt)}`,
    `  Run id:           ${run.runId}`,
    '',
  ];
  if ((c.failed ?? 0) > 0) {
    lines.push(
      `${fmt(c.failed)} item(s) could not be processed; the "Errors" sheet lists each with its row and the reason.`,
      'Fix those rows and upload them again as a new file if you need them.',
      '',
    );
  }
  lines.push(...deliveryLines(o, 'results'));
  return {
    from: run.sender,
    to: o.to,
    subject: resultSubject(run),
    text: lines.join('\n'),
    attachments: o.attachment ? [o.attachment] : undefined,
  };
}

/** How the workbook reaches the reader: attached, or a link and until when it works; where it is stored. */
function deliveryLines(o: ResultMailOptions, what: string): string[] {
  const lines: string[] = [];
  if (o.attachment) lines.push(`The ${what} are attached (${o.attachment.filename}).`);
  if (o.link) {
    lines.push(
      o.attachment ? 'You can also download them here:' : `The ${what} are too large to attach; download them here:`,
      o.link.url,
      `(the link works until ${when(o.link.expiresAt.getTime())}; after that, ask the platform team for the file ${o.resultKeys[0] ?? ''})`,
    );
  }
  if (o.truncatedSheets && o.truncatedSheets.length > 0) {
    lines.push(
      '',
      `Sheet(s) ${o.truncatedSheets.join(', ')} had more rows than Excel can show; the workbook holds the first 1,048,575 and a CSV file with every row is stored beside it.`,
    );
  }
  lines.push('', `Stored as: ${o.resultKeys.map((k) => `s3://${o.bucket}/${k}`).join(', ')}`);
  return lines;
}

export interface FailureMailOptions {
  from: string;
  to: string[];
  pipeline: string;
  inputName: string;
  runId: string;
  reason: string;
  /** What was already done (kept), if anything. */
  progress?: string;
  /** The run was stopped by `fanout cancel` (not a failure). */
  cancelled?: boolean;
}

export function failureSubject(pipeline: string, inputName: string, cancelled = false): string {
  return `[batch-fanout] ${cancelled ? 'CANCELLED' : 'FAILED'} ${pipeline}: ${printable(inputName)}`;
}

export function failureMail(o: FailureMailOptions): MailMessage {
  const lines = [
    o.cancelled
      ? `The run of the ${o.pipeline} pipeline on your file ${printable(o.inputName)} was cancelled.`
      : `Your file ${printable(o.inputName)} could not be processed by the ${o.pipeline} pipeline.`,
    '',
    o.cancelled ? 'Why:' : 'What went wrong:',
    ...o.reason.split('\n').map((l) => `  ${l}`),
    '',
  ];
  if (o.progress) lines.push(o.progress, '');
  lines.push(
    'Nothing was reported as done for this file. Once the problem is fixed, upload the file again;',
    'a new upload starts a new run.',
    '',
    `Run id: ${o.runId}`,
  );
  return { from: o.from, to: o.to, subject: failureSubject(o.pipeline, o.inputName, o.cancelled), text: lines.join('\n') };
}

export interface PartialResultMailOptions extends ResultMailOptions {
  /** Why the run failed. */
  reason: string;
  /** Items that never got an outcome. */
  notProcessed: number;
}

/** The failure email of a run whose fan-out failed, with the results of what was done. */
export function partialResultMail(o: PartialResultMailOptions): MailMessage {
  const { run } = o;
  const c = run.counts ?? {};
  const cancelled = run.status === 'CANCELLED';
  const lines = [
    cancelled
      ? `The run of the ${run.pipeline} pipeline on your file ${run.inputName} was cancelled before it finished.`
      : `Your file ${run.inputName} could not be processed completely by the ${run.pipeline} pipeline.`,
    '',
    cancelled ? 'Why:' : 'What went wrong:',
    ...o.reason.split('\n').map((l) => `  ${l}`),
    '',
    'Nothing already done is lost:',
    `  Succeeded:        ${fmt(c.succeeded)}`,
    `  Failed:           ${fmt((c.failed ?? 0) - o.notProcessed)}`,
    `  Not processed:    ${fmt(o.notProcessed)}`,
    `  Run id:           ${run.runId}`,
    '',
    'The workbook lists every row; rows that were not processed say so in the Error column.',
    'Upload those rows again (or the whole file) once the problem is fixed.',
    '',
  ];
  lines.push(...deliveryLines(o, 'partial results'));
  return {
    from: run.sender,
    to: o.to,
    subject: `${failureSubject(run.pipeline, run.inputName, cancelled)} - partial results: ${fmt(c.succeeded)} done, ${fmt(o.notProcessed)} not processed`,
    text: lines.join('\n'),
    attachments: o.attachment ? [o.attachment] : undefined,
  };
}
