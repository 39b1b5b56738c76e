/**
 * The config of a `dataset` pipeline that merges two delimited text files on a key (the
 * data scientist's analysis.py as a pipeline). One schema for the CDK app, the intake handler, the
 * merge stage and the local CLI; `docs/merge.md` explains every field.
 */
import { z } from 'zod';

/** Join types, as in SQL and pandas.merge(how=...). */
export const JOIN_TYPES = ['inner', 'left', 'right', 'full'] as const;
export type JoinType = (typeof JOIN_TYPES)[number];

/** The two input roles of a merge. */
export const MERGE_ROLES = ['left', 'right'] as const;
export type MergeRole = (typeof MERGE_ROLES)[number];

/** A file name or a glob (`*`, `?`) matched against the file names of one batch folder. */
const inputPattern = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[^/\\]+$/, 'must be a file name or a glob of one (no "/"), e.g. x_list.txt or x_*.tsv');

/** A key or output column: a header name, or `#N` (1-based position; headerless files name columns `column1`...). */
const columnRef = z.string().min(1).max(200);

export const mergeOutputColumnSchema = z.object({
  /** Header of the output column. */
  name: z.string().min(1).max(200),
  /** Which input the value comes from. */
  from: z.enum(MERGE_ROLES),
  /** Column of that input: header name or `#N`. */
  column: columnRef,
});
export type MergeOutputColumn = z.infer<typeof mergeOutputColumnSchema>;

export const mergeSpecSchema = z
  .object({
    /** Input file per role: a file name or a glob matched in the batch folder `intake/<pipeline>/<batch>/`. */
    inputs: z.object({ left: inputPattern, right: inputPattern }),
    /** Key columns per side, compared pairwise as text (`007` is not `7`). */
    keys: z.object({ left: z.array(columnRef).min(1).max(16), right: z.array(columnRef).min(1).max(16) }),
    /** Join type. @default 'inner' (what the script's cross product and filter give) */
    how: z.enum(JOIN_TYPES).default('inner'),
    /** The first line of each file holds the column names; false names them column1, column2... @default true */
    header: z.boolean().default(true),
    /** Field delimiter of both inputs, one character. @default '\t' */
    delimiter: z.string().length(1, 'must be one character, e.g. "\\t" or ","').default('\t'),
    /** Quote character (RFC 4180 quoting, as pandas reads by default); "" reads quotes as plain text. @default '"' */
    quote: z.string().max(1).default('"'),
    /** Strip spaces around key values before comparing (values are written as they were). @default false */
    trimKeys: z.boolean().default(false),
    output: z
      .object({
        /** File name of the result, without extension: `results/<pipeline>/<batch>/<name>.csv`. @default 'merged' */
        name: z
          .string()
          .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, 'must be 1-100 letters, digits, ".", "_" or "-"')
          .default('merged'),
        /** CSV (comma) or TSV (tab), UTF-8 with a header row. @default 'csv' */
        format: z.enum(['csv', 'tsv']).default('csv'),
        /**
         * Output columns in order. @default - every left column, then every right column but the
         * right keys; a name found in both files gets the suffix of its side (pandas' rule), so two
         * files headed `ID value` give `ID_x, value_x, value_y` as the script prints.
         */
        columns: z.array(mergeOutputColumnSchema).min(1).optional(),
        /** Suffixes of names found in both files. @default ['_x', '_y'] */
        suffixes: z.tuple([z.string(), z.string()]).default(['_x', '_y']),
        /**
         * Row order: `input` is left-file order, each left row's matches in right-file order, then
         * right rows without a match (the script's order); `none` lets the engine choose (faster on
         * Spark, no global sort). @default 'input'
         */
        order: z.enum(['input', 'none']).default('input'),
        /** Prefix values that a spreadsheet would run as a formula (=, +, -, @, tab, CR) with `'`. @default false */
        formulaSafe: z.boolean().default(false),
      })
      .prefault({}),
  })
  .superRefine((m, ctx) => {
    if (m.keys.left.length !== m.keys.right.length) {
      ctx.addIssue({
        code: 'custom',
        path: ['keys'],
        message: `left and right need the same number of key columns (left has ${m.keys.left.length}, right ${m.keys.right.length})`,
      });
    }
    if (m.quote !== '' && m.quote === m.delimiter) {
      ctx.addIssue({ code: 'custom', path: ['quote'], message: 'the quote character cannot be the delimiter' });
    }
    if (m.output.columns) {
      const seen = new Set<string>();
      m.output.columns.forEach((c, i) => {
        if (seen.has(c.name))
          ctx.addIssue({ code: 'custom', path: ['output', 'columns', i, 'name'], message: `duplicate output column "${c.name}"` });
        seen.add(c.name);
      });
    }
  });
export type MergeSpec = z.infer<typeof mergeSpecSchema>;
export type MergeSpecInput = z.input<typeof mergeSpecSchema>;

/** Engines a merge runs on. */
export const MERGE_ENGINES = ['duckdb', 'emr-serverless'] as const;
export type MergeEngine = (typeof MERGE_ENGINES)[number];

/** True when `name` matches a file name or glob of `inputs` (`*` any run of characters, `?` one). */
export function matchesPattern(pattern: string, name: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
    's',
  );
  return re.test(name);
}
