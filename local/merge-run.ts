/**
 * The local run of a `dataset` (merge) pipeline: which file goes where in the batch folder, and
 * the summary the CLI prints. `fanout run x_list.txt y_list.txt --pipeline merge-xy` uploads the
 * files, in the order of the pipeline's inputs, into one new folder `intake/<pipeline>/<batch>/`;
 * the S3 events then drive the same intake handler and merge stage as on AWS.
 */
import { basename } from 'node:path';
import { matchesPattern, MERGE_ROLES } from '../runtime/config/merge-schema';
import type { DatasetPipelineConfig } from '../runtime/config/schema';
import type { LocalRunResult } from './local-run';

export class MergeUsageError extends Error {
  override readonly name = 'MergeUsageError';
}

/** A batch folder name for a local run: the time, to the second. */
export function localBatchName(now = new Date()): string {
  return `local-${now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}`;
}

/**
 * The objects to upload: the n-th file is the n-th input (left, right). A file keeps its name when
 * it matches its input's pattern, and takes the input's name when the pattern is a plain name; a
 * glob it does not match is a usage error. Fewer files than inputs upload what there is (the batch
 * then waits, and the run says for what); more is an error.
 */
export function datasetUploads(pipeline: DatasetPipelineConfig, files: string[], batch: string): Array<{ key: string; file: string }> {
  if (files.length > MERGE_ROLES.length) {
    throw new MergeUsageError(
      `pipeline ${pipeline.name} merges ${MERGE_ROLES.length} files (${MERGE_ROLES.map((r) => pipeline.merge.inputs[r]).join(', ')}), got ${files.length}`,
    );
  }
  return files.map((file, i) => {
    const role = MERGE_ROLES[i]!;
    const pattern = pipeline.merge.inputs[role];
    const name = basename(file);
    if (matchesPattern(pattern, name)) return { key: `intake/${pipeline.name}/${batch}/${name}`, file };
    if (!/[*?]/.test(pattern)) return { key: `intake/${pipeline.name}/${batch}/${pattern}`, file };
    throw new MergeUsageError(
      `${name} is the ${role} input of pipeline ${pipeline.name}, whose files must match ${pattern}; rename it or change the order`,
    );
  });
}

const fmt = (n: number | undefined) => (n ?? 0).toLocaleString('en-US');

/** The CLI's summary of a merge run. */
export function mergeSummaryLines(r: LocalRunResult, rel: (p?: string) => string): string[] {
  const d = r.run?.dataset;
  const lines = [`Run ${r.runId} (${r.pipeline}): ${r.status}`];
  if (r.status === 'WAITING_FOR_INPUTS') {
    lines.push(`  batch ${d?.batch ?? '?'} is waiting for: ${(d?.waitingFor ?? []).join(', ') || '?'}`);
    lines.push(`  upload it into ${d?.prefix ?? 'the same batch folder'} to start the merge`);
    if (d?.deadlineAt !== undefined) {
      lines.push(
        `  the batch fails at ${new Date(d.deadlineAt).toISOString().replace(/\.\d+Z$/, 'Z')} if it is still lacking an input then (fanout sweep)`,
      );
    }
    return lines;
  }
  const c = d?.counts;
  if (c) {
    const name = (k?: string) => k?.split('/').pop() ?? '?';
    lines.push(
      `  ${name(d?.inputs.left)} ${fmt(c.leftRows)} rows, ${name(d?.inputs.right)} ${fmt(c.rightRows)} rows -> ${fmt(c.outputRows)} output rows, ${(r.durationMs / 1000).toFixed(1)} s`,
      `  left rows without a match ${fmt(c.leftUnmatched)}, right rows without a match ${fmt(c.rightUnmatched)}, keys duplicated on both sides ${fmt(c.keysDuplicatedBothSides)}`,
    );
  }
  if (d && d.ignored.length > 0) lines.push(`  ignored: ${d.ignored.map((k) => k.split('/').pop()).join(', ')}`);
  if (r.error) lines.push(`  reason: ${r.error.split('\n').join('\n          ')}`);
  lines.push(`  output:   ${rel(r.resultFile)}`, `  email:    ${rel(r.emailFile)}`, `  logs:     ${rel(`${r.outDir}/jobs.log`)}`);
  return lines;
}
