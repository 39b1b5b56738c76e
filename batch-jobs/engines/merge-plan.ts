/**
 * The merge plan: the merge config resolved against the header rows of the two files that arrived
 * (which column is a key, what each output column is called and where it comes from). Both engines'
 * SQL is generated from one plan (`duckdb-sql.ts`, `spark-sql.ts`), so DuckDB and Spark merge alike.
 *
 * Inside the SQL, input columns are named by position (`c1`, `c2`...), whatever their headers hold
 * (spaces, quotes, duplicates); headers only appear as output aliases.
 */
import { normaliseHeader } from '../../runtime/config/schema';
import type { JoinType, MergeRole, MergeSpec } from '../../runtime/config/merge-schema';
import type { MergeCounts } from '../../runtime/dataset-run';
import { InputError } from '../../runtime/errors';

export type { MergeCounts };

/** One input as found: its file name (for messages) and its column names (headers, or column1...). */
export interface InputLayout {
  role: MergeRole;
  /** File name, as the person uploaded it. */
  file: string;
  /** Column names in file order. */
  columns: string[];
}

export interface PlanInput extends InputLayout {
  /** 0-based indexes of the key columns, pairwise with the other side's. */
  keys: number[];
}

export interface PlanOutputColumn {
  name: string;
  from: MergeRole;
  /** 0-based column index in that input. */
  index: number;
  /**
   * Position among the left keys, when this is a left key column: on a row with no left match
   * (right and full joins) it shows the right key instead of nothing.
   */
  leftKey?: number;
}

export interface MergePlan {
  how: JoinType;
  left: PlanInput;
  right: PlanInput;
  output: PlanOutputColumn[];
  header: boolean;
  delimiter: string;
  quote: string;
  trimKeys: boolean;
  order: 'input' | 'none';
  formulaSafe: boolean;
  /** Output field delimiter. */
  outputDelimiter: string;
}

/** Internal SQL name of a 0-based input column. */
export const col = (index: number) => `c${index + 1}`;

/** Names of a headerless file's columns. */
export function positionalNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `column${i + 1}`);
}

function describeHeaders(layout: InputLayout): string {
  const shown = layout.columns.slice(0, 20).map((c) => JSON.stringify(c));
  const more = layout.columns.length > 20 ? `, and ${layout.columns.length - 20} more` : '';
  return `${layout.columns.length} column${layout.columns.length === 1 ? '' : 's'}: ${shown.join(', ')}${more}`;
}

/** A hint when a header looks split by another delimiter than the configured one. */
function delimiterHint(layout: InputLayout, delimiter: string): string {
  if (layout.columns.length !== 1) return '';
  const only = layout.columns[0] ?? '';
  const named: Record<string, string> = { '\t': 'tab', ',': 'comma', ';': 'semicolon', '|': 'pipe' };
  for (const [d, word] of Object.entries(named)) {
    if (d !== delimiter && only.includes(d)) {
      return ` The header looks ${word}-separated, but the pipeline reads ${named[delimiter] ?? JSON.stringify(delimiter)}-separated files: save the file with that delimiter or change the pipeline's "delimiter".`;
    }
  }
  return '';
}

/** Resolves a column reference (`#N` or a header, matched exactly, then case- and space-insensitively). */
export function resolveColumn(layout: InputLayout, ref: string, what: string, delimiter: string): number {
  const positional = /^#(\d+)$/.exec(ref);
  if (positional) {
    const n = Number(positional[1]);
    if (n >= 1 && n <= layout.columns.length) return n - 1;
    throw new InputError(
      `${layout.file} (${layout.role} input): ${what} "${ref}" asks for column ${n}, but the file has ${describeHeaders(layout)}.${delimiterHint(layout, delimiter)}`,
      { file: layout.file, row: 1 },
    );
  }
  const exact = layout.columns.indexOf(ref);
  if (exact >= 0) {
    if (layout.columns.indexOf(ref, exact + 1) >= 0) {
      throw new InputError(
        `${layout.file} (${layout.role} input): the header row names "${ref}" twice; rename one, or refer to the ${what} by position (#N).`,
        {
          file: layout.file,
          row: 1,
          column: ref,
        },
      );
    }
    return exact;
  }
  const wanted = normaliseHeader(ref);
  const loose = layout.columns.flatMap((c, i) => (normaliseHeader(c) === wanted ? [i] : []));
  if (loose.length === 1) return loose[0]!;
  throw new InputError(
    `${layout.file} (${layout.role} input): ${what} "${ref}" is missing; row 1 (the header row) has ${describeHeaders(layout)}.${delimiterHint(layout, delimiter)}` +
      ' Rename the column in the file or change the pipeline config.',
    { file: layout.file, row: 1, column: ref },
  );
}

/** Gives repeated output names `.1`, `.2`... (as pandas does for repeated headers). */
function uniqueNames(names: string[]): string[] {
  const seen = new Map<string, number>();
  return names.map((n) => {
    const k = seen.get(n);
    seen.set(n, (k ?? 0) + 1);
    if (k === undefined) return n;
    let candidate = `${n}.${k}`;
    while (names.includes(candidate)) candidate = `${candidate}.${k}`;
    return candidate;
  });
}

/** The plan for two inputs of this spec; throws InputError naming file, row and column when a column is missing. */
export function planMerge(spec: MergeSpec, left: InputLayout, right: InputLayout): MergePlan {
  const d = spec.delimiter;
  const leftKeys = spec.keys.left.map((k) => resolveColumn(left, k, 'key column', d));
  const rightKeys = spec.keys.right.map((k) => resolveColumn(right, k, 'key column', d));
  const keyPosition = new Map(leftKeys.map((index, i) => [index, i] as const));
  let output: PlanOutputColumn[];
  if (spec.output.columns) {
    output = spec.output.columns.map((c) => {
      const layout = c.from === 'left' ? left : right;
      const index = resolveColumn(layout, c.column, `output column "${c.name}" takes column`, d);
      return { name: c.name, from: c.from, index, leftKey: c.from === 'left' ? keyPosition.get(index) : undefined };
    });
  } else {
    const [sx, sy] = spec.output.suffixes;
    const leftNames = new Set(left.columns);
    const rightNames = new Set(right.columns);
    const dropped = new Set(rightKeys);
    const cols: PlanOutputColumn[] = [
      ...left.columns.map((name, index) => ({
        name: rightNames.has(name) ? `${name}${sx}` : name,
        from: 'left' as const,
        index,
        leftKey: keyPosition.get(index),
      })),
      ...right.columns.flatMap((name, index) =>
        dropped.has(index) ? [] : [{ name: leftNames.has(name) ? `${name}${sy}` : name, from: 'right' as const, index }],
      ),
    ];
    const names = uniqueNames(cols.map((c) => c.name));
    output = cols.map((c, i) => ({ ...c, name: names[i]! }));
  }
  return {
    how: spec.how,
    left: { ...left, keys: leftKeys },
    right: { ...right, keys: rightKeys },
    output,
    header: spec.header,
    delimiter: spec.delimiter,
    quote: spec.quote,
    trimKeys: spec.trimKeys,
    order: spec.output.order,
    formulaSafe: spec.output.formulaSafe,
    outputDelimiter: spec.output.format === 'tsv' ? '\t' : ',',
  };
}

/** Rows the join writes, from the key statistics: every matched pair, plus the unmatched rows the join type keeps. */
export function expectedOutputRows(how: JoinType, matchedPairs: number, leftUnmatched: number, rightUnmatched: number): number {
  return matchedPairs + (how === 'left' || how === 'full' ? leftUnmatched : 0) + (how === 'right' || how === 'full' ? rightUnmatched : 0);
}
