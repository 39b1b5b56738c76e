/**
 * Spark SQL of a merge plan, for EMR Serverless: the same plan as DuckDB's SQL, the same text
 * equality per key pair with empty keys excluded, the same output columns and the same row order
 * (Spark has no rowid: `monotonically_increasing_id()` over each file, which grows in file order).
 *
 * The script is a list of statements separated by `STATEMENT_SEPARATOR` lines, run one by one by
 * the PySpark runner (`spark-runner.ts`): two CSV views with an explicit all-string schema (no
 * inference, FAILFAST on a malformed row), the key statistics written as one JSON file, then the
 * join written as CSV part files with a header each.
 */
import { selectList, type SqlDialect } from './duckdb-sql';
import { col, type MergePlan, type PlanInput } from './merge-plan';

/** A line between two statements of a script (a SQL comment, so the script stays valid SQL). */
export const STATEMENT_SEPARATOR = '-- fanout:statement';

/** A Spark SQL string literal (backslash and quote escaped). */
export const sparkLit = (s: string) =>
  `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t')}'`;
/** A Spark SQL identifier (backquoted). */
export const sparkIdent = (s: string) => `\`${s.replace(/`/g, '``')}\``;

export const SPARK_DIALECT: SqlDialect = { ident: sparkIdent, lit: sparkLit, matches: (e, p) => `${e} RLIKE ${sparkLit(p)}` };

export const SPARK_VIEWS = { left: 'fanout_left', right: 'fanout_right' } as const;

export interface SparkLocations {
  /** s3:// URI of each input file. */
  left: string;
  right: string;
  /** s3:// prefix the CSV parts are written under (replaced if present). */
  output: string;
  /** s3:// prefix of the one-line JSON statistics. */
  stats: string;
}

function options(entries: Record<string, string>): string {
  return `OPTIONS (${Object.entries(entries)
    .map(([k, v]) => `${k} ${sparkLit(v)}`)
    .join(', ')})`;
}

function view(plan: MergePlan, role: 'left' | 'right', input: PlanInput, path: string): string[] {
  const schema = input.columns.map((_, i) => `${col(i)} STRING`).join(', ');
  const src = `${SPARK_VIEWS[role]}_src`;
  return [
    `CREATE TEMPORARY VIEW ${src} (${schema}) USING csv ${options({
      path,
      header: String(plan.header),
      sep: plan.delimiter,
      // Spark turns quoting off with an empty quote; RFC 4180 doubles a quote inside a quoted value.
      quote: plan.quote,
      escape: plan.quote,
      multiLine: 'true',
      mode: 'FAILFAST',
      encoding: 'UTF-8',
      enforceSchema: 'true',
      ignoreLeadingWhiteSpace: 'false',
      ignoreTrailingWhiteSpace: 'false',
    })}`,
    `CREATE TEMPORARY VIEW ${SPARK_VIEWS[role]} AS SELECT *, monotonically_increasing_id() AS fanout_rn FROM ${src}`,
  ];
}

const keyExpr = (plan: MergePlan, alias: string, index: number) =>
  plan.trimKeys ? `trim(${alias}.${col(index)})` : `${alias}.${col(index)}`;
const validKey = (plan: MergePlan, alias: string, input: PlanInput) =>
  input.keys.map((k) => `coalesce(${keyExpr(plan, alias, k)}, '') <> ''`).join(' AND ');

const JOIN_SQL = { inner: 'INNER JOIN', left: 'LEFT OUTER JOIN', right: 'RIGHT OUTER JOIN', full: 'FULL OUTER JOIN' } as const;

/** The join as a Spark SELECT. */
export function sparkJoinSql(plan: MergePlan): string {
  const on = [
    ...plan.left.keys.map((lk, i) => `${keyExpr(plan, 'l', lk)} = ${keyExpr(plan, 'r', plan.right.keys[i]!)}`),
    validKey(plan, 'l', plan.left),
  ].join(' AND ');
  const select = selectList(plan, SPARK_DIALECT);
  const order = plan.order === 'input' ? ' ORDER BY l.fanout_rn ASC NULLS LAST, r.fanout_rn ASC NULLS LAST' : '';
  return `SELECT ${select} FROM ${SPARK_VIEWS.left} l ${JOIN_SQL[plan.how]} ${SPARK_VIEWS.right} r ON ${on}${order}`;
}

/** The key statistics, one row (the same columns as DuckDB's `statsSql`). */
export function sparkStatsSql(plan: MergePlan): string {
  const keyCols = (input: PlanInput) => input.keys.map((k, i) => `${keyExpr(plan, 't', k)} AS k${i}`).join(', ');
  const groupBy = plan.left.keys.map((_, i) => `k${i}`).join(', ');
  const on = plan.left.keys.map((_, i) => `lk.k${i} = rk.k${i}`).join(' AND ');
  return `WITH
  lk AS (SELECT ${groupBy}, count(*) AS n FROM (SELECT ${keyCols(plan.left)} FROM ${SPARK_VIEWS.left} t WHERE ${validKey(plan, 't', plan.left)}) GROUP BY ${groupBy}),
  rk AS (SELECT ${groupBy}, count(*) AS n FROM (SELECT ${keyCols(plan.right)} FROM ${SPARK_VIEWS.right} t WHERE ${validKey(plan, 't', plan.right)}) GROUP BY ${groupBy}),
  j AS (SELECT lk.n AS ln, rk.n AS rn FROM lk FULL OUTER JOIN rk ON ${on}),
  lc AS (SELECT count(*) AS n, count_if(NOT (${validKey(plan, 't', plan.left)})) AS empty FROM ${SPARK_VIEWS.left} t),
  rc AS (SELECT count(*) AS n, count_if(NOT (${validKey(plan, 't', plan.right)})) AS empty FROM ${SPARK_VIEWS.right} t),
  s AS (SELECT coalesce(sum(ln * rn), 0) AS matched_pairs,
               coalesce(sum(CASE WHEN rn IS NULL THEN ln END), 0) AS left_unkeyed,
               coalesce(sum(CASE WHEN ln IS NULL THEN rn END), 0) AS right_unkeyed,
               count_if(ln > 1 AND rn > 1) AS keys_duplicated_both_sides FROM j)
SELECT CAST(lc.n AS BIGINT) AS left_rows, CAST(rc.n AS BIGINT) AS right_rows, CAST(s.matched_pairs AS BIGINT) AS matched_pairs,
  CAST(s.left_unkeyed + lc.empty AS BIGINT) AS left_unmatched, CAST(s.right_unkeyed + rc.empty AS BIGINT) AS right_unmatched,
  CAST(s.keys_duplicated_both_sides AS BIGINT) AS keys_duplicated_both_sides,
  CAST(lc.empty AS BIGINT) AS left_empty_keys, CAST(rc.empty AS BIGINT) AS right_empty_keys
FROM lc CROSS JOIN rc CROSS JOIN s`;
}

/** The whole script: views, statistics (one JSON file), the join (CSV parts with a header each). */
export function sparkMergeScript(plan: MergePlan, at: SparkLocations): string {
  const statements = [
    ...view(plan, 'left', plan.left, at.left),
    ...view(plan, 'right', plan.right, at.right),
    `INSERT OVERWRITE DIRECTORY ${sparkLit(at.stats)} USING json SELECT /*+ COALESCE(1) */ * FROM (${sparkStatsSql(plan)})`,
    `INSERT OVERWRITE DIRECTORY ${sparkLit(at.output)} USING csv ${options({
      header: 'true',
      sep: plan.outputDelimiter,
      quote: '"',
      escape: '"',
      // Empty values stay empty (Spark would write "" for an empty string and nothing for null).
      emptyValue: '',
      nullValue: '',
      encoding: 'UTF-8',
    })} ${sparkJoinSql(plan)}`,
  ];
  return `${statements.join(`\n${STATEMENT_SEPARATOR}\n`)}\n`;
}
