/**
 * The result email of a merge: the counts (rows of each input, output rows, rows without a
 * match, keys duplicated on both sides), the first rows as a table (plain text and HTML), the
 * ignored files, where the output is and a link to it; the workbook attached when there is one.
 */
import type { DatasetPipelineConfig } from '../../runtime/config/schema';
import type { DatasetRunInfo, MergeCounts } from '../../runtime/dataset-run';
import type { MailAttachment, MailMessage } from '../../runtime/ports';
import type { RunRecord } from '../../runtime/model';

const fmt = (n: number) => n.toLocaleString('en-US');
const when = (d: Date) =>
  d
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC');
const fileOf = (key: string | undefined) => key?.split('/').pop() ?? '-';

export interface MergeMailOptions {
  run: RunRecord;
  pipeline: DatasetPipelineConfig;
  dataset: DatasetRunInfo;
  counts: MergeCounts;
  /** Output header and its first rows (at most 20). */
  preview: { header: string[]; rows: string[][] };
  /** Output objects (the file or the manifest first). */
  outputKeys: string[];
  bucket: string;
  link?: { url: string; expiresAt: Date };
  /** The workbook, when the output is small enough to attach. */
  attachment?: MailAttachment;
  /** Why there is no workbook (too many rows, or too large to attach). */
  noWorkbook?: string;
}

export const PREVIEW_ROWS = 20;

/** Columns of at most this many characters in the text table (longer values end in "..."). */
const TEXT_CELL_MAX = 40;

function cut(v: string): string {
  const one = v.replace(/[\r\n\t]+/g, ' ');
  return one.length > TEXT_CELL_MAX ? `${one.slice(0, TEXT_CELL_MAX - 3)}...` : one;
}

/** A plain-text table with a header rule, columns padded to their widest value. */
export function textTable(header: string[], rows: string[][]): string[] {
  const cells = [header, ...rows].map((r) => header.map((_, i) => cut(r[i] ?? '')));
  const widths = header.map((_, i) => Math.max(...cells.map((r) => [...r[i]!].length)));
  const line = (r: string[]) => `  ${r.map((c, i) => c + ' '.repeat(widths[i]! - [...c].length)).join(' | ')}`.trimEnd();
  return [line(cells[0]!), `  ${widths.map((w) => '-'.repeat(w)).join('-+-')}`, ...cells.slice(1).map(line)];
}

const escapeHtml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export function mergeSubject(run: RunRecord, counts: MergeCounts): string {
  return `[batch-fanout] ${run.pipeline}: batch ${run.inputName} merged - ${fmt(counts.outputRows)} rows`;
}

/** The lines of counts, shared by the text and the HTML body. */
export function countLines(o: Pick<MergeMailOptions, 'pipeline' | 'dataset' | 'counts'>): string[] {
  const { counts: c, pipeline: p, dataset: d } = o;
  const left = fileOf(d.inputs.left);
  const right = fileOf(d.inputs.right);
  const lines = [
    `  ${left} (left):  ${fmt(c.leftRows)} rows${c.leftRows === 0 ? ' (a header and no rows: valid, nothing to match)' : ''}`,
    `  ${right} (right): ${fmt(c.rightRows)} rows${c.rightRows === 0 ? ' (a header and no rows: valid, nothing to match)' : ''}`,
    `  Output rows: ${fmt(c.outputRows)} (${p.merge.how} join)`,
    `  Left rows without a match: ${fmt(c.leftUnmatched)}${c.leftEmptyKeys > 0 ? `, of which ${fmt(c.leftEmptyKeys)} with an empty key (empty keys never match)` : ''}`,
  ];
  if (p.merge.how === 'right' || p.merge.how === 'full' || c.rightUnmatched > 0) {
    lines.push(
      `  Right rows without a match: ${fmt(c.rightUnmatched)}${c.rightEmptyKeys > 0 ? `, of which ${fmt(c.rightEmptyKeys)} with an empty key` : ''}`,
    );
  }
  lines.push(
    `  Keys duplicated on both sides: ${fmt(c.keysDuplicatedBothSides)}${c.keysDuplicatedBothSides > 0 ? ' (each gives every pair of its rows)' : ''}`,
  );
  return lines;
}

export function mergeResultMail(o: MergeMailOptions): MailMessage {
  const { run, pipeline: p, dataset: d } = o;
  const keys = p.merge.keys.left.map((k, i) => `${k} = ${p.merge.keys.right[i]}`).join(', ');
  const intro = `Your batch ${d.batch} has been merged by the ${run.pipeline} pipeline (${p.merge.how} join on ${keys}, keys compared as text, engine ${p.engine}).`;
  const counts = countLines(o);
  const shown = o.preview.rows.length;
  const previewTitle =
    shown === 0
      ? 'The output has no rows.'
      : `The first ${shown === o.counts.outputRows ? `${shown} (all)` : shown} rows of ${fmt(o.counts.outputRows)}:`;
  const ignored = d.ignored.length > 0 ? [`Ignored (not an input of this pipeline): ${d.ignored.map(fileOf).join(', ')}`, ''] : [];
  const where = [
    ...(o.attachment ? [`The output is attached as a workbook (${o.attachment.filename}).`] : []),
    ...(o.noWorkbook ? [o.noWorkbook] : []),
    ...(o.link
      ? [
          `Download the output here: ${o.link.url}`,
          `(the link works until ${when(o.link.expiresAt)}; after that, ask the platform team for the file)`,
        ]
      : []),
    '',
    `Stored as: ${o.outputKeys.map((k) => `s3://${o.bucket}/${k}`).join(', ')}`,
    `Run id: ${run.runId}`,
  ];
  const text = [
    intro,
    '',
    ...counts,
    '',
    previewTitle,
    ...(shown > 0 ? textTable(o.preview.header, o.preview.rows) : []),
    '',
    ...ignored,
    ...where,
  ].join('\n');
  const th = o.preview.header
    .map((h) => `<th style="text-align:left;border-bottom:1px solid #999;padding:2px 8px">${escapeHtml(h)}</th>`)
    .join('');
  const trs = o.preview.rows
    .map((r) => `<tr>${o.preview.header.map((_, i) => `<td style="padding:2px 8px">${escapeHtml(r[i] ?? '')}</td>`).join('')}</tr>`)
    .join('\n');
  const html = [
    `<p>${escapeHtml(intro)}</p>`,
    `<pre>${escapeHtml(counts.join('\n'))}</pre>`,
    `<p>${escapeHtml(previewTitle)}</p>`,
    ...(shown > 0
      ? [`<table style="border-collapse:collapse;font-family:monospace"><thead><tr>${th}</tr></thead><tbody>\n${trs}\n</tbody></table>`]
      : []),
    ...ignored.filter((l) => l !== '').map((l) => `<p>${escapeHtml(l)}</p>`),
    `<p>${where
      .filter((l) => l !== '')
      .map((l) =>
        l.startsWith('Download the output here: ') && o.link
          ? `Download the output <a href="${escapeHtml(o.link.url)}">here</a>.`
          : escapeHtml(l),
      )
      .join('<br>')}</p>`,
  ].join('\n');
  return {
    from: run.sender,
    to: p.recipients,
    subject: mergeSubject(run, o.counts),
    text,
    html,
    attachments: o.attachment ? [o.attachment] : undefined,
  };
}
