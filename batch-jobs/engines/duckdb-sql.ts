/**
 * DuckDB SQL of a merge plan: load both files into tables (their `rowid` keeps file order), one
 * key-statistics query (rows, matches, duplicated keys: the counts of the email, and the output's
 * size before it is written), and one COPY of the join to CSV/TSV. Every column is read as text,
 * with the delimiter, quote and header given (no sniffing), in strict mode: a ragged row is an
 * error that names its line.
 */
import { col, type MergePlan, type PlanInput } from './merge-plan';

/** A SQL string literal. */
export const lit = (s: string) => `'${s.replace(/'/g, "''")}'`;
/** A quoted SQL identifier. */
export const ident = (s: string) => `"${s.replace(/"/g, '""')}"`;

export const TABLES = { left: 'fanout_left', right: 'fanout_right' } as const;

/** Neutralises values a spreadsheet would run as formulas (same regex text works in DuckDB and Spark). */
export const FORMULA_START_REGEX = '^[-=+@\\t\\r]';

function readCsv(plan: MergePlan, input: PlanInput, path: string): string {
  const columns = input.columns.map((_, i) => `${lit(col(i))}: 'VARCHAR'`).join(', ');
  return (
    `read_csv(${lit(path)}, delim=${lit(plan.delimiter)}, quote=${lit(plan.quote)}, escape=${lit(plan.quote)}, ` +
    `header=${plan.header}, columns={${columns}}, auto_detect=false, strict_mode=true, null_padding=false, encoding='utf-8')`
  );
}

/** Loads one input into its table. */
export function loadSql(plan: MergePlan, role: 'left' | 'right', path: string): string {
  return `CREATE TABLE ${TABLES[role]} AS SELECT * FROM ${readCsv(plan, plan[role], path)}`;
}

const keyExpr = (plan: MergePlan, alias: string, index: number) =>
  plan.trimKeys ? `trim(${alias}.${col(index)})` : `${alias}.${col(index)}`;

/** True when every key column of the row holds a value (empty keys never match). */
function validKey(plan: MergePlan, alias: string, input: PlanInput): string {
  return input.keys.map((k) => `coalesce(${keyExpr(plan, alias, k)}, '') <> ''`).join(' AND ');
}

/** The ON condition, shared in spirit with Spark's (text equality per key pair, empty keys excluded). */
export function joinCondition(plan: MergePlan, l = 'l', r = 'r'): string {
  const pairs = plan.left.keys.map((lk, i) => `${keyExpr(plan, l, lk)} = ${keyExpr(plan, r, plan.right.keys[i]!)}`);
  return [...pairs, validKey(plan, l, plan.left)].join(' AND ');
}

/**
 * One row: left_rows, right_rows, matched_pairs, left_unmatched, right_unmatched,
 * keys_duplicated_both_sides, left_empty_keys, right_empty_keys (all BIGINT).
 */
export function statsSql(plan: MergePlan): string {
  const keyCols = (alias: string, input: PlanInput) => input.keys.map((k, i) => `${keyExpr(plan, alias, k)} AS k${i}`).join(', ');
  const on = plan.left.keys.map((_, i) => `lk.k${i} = rk.k${i}`).join(' AND ');
  return `WITH
  lk AS (SELECT ${keyCols('t', plan.left)}, count(*) AS n FROM ${TABLES.left} t WHERE ${validKey(plan, 't', plan.left)} GROUP BY ALL),
  rk AS (SELECT ${keyCols('t', plan.right)}, count(*) AS n FROM ${TABLES.right} t WHERE ${validKey(plan, 't', plan.right)} GROUP BY ALL),
  j AS (SELECT lk.n AS ln, rk.n AS rn FROM lk FULL JOIN rk ON ${on}),
  lc AS (SELECT count(*) AS rows, count(*) FILTER (WHERE NOT (${validKey(plan, 't', plan.left)})) AS empty FROM ${TABLES.left} t),
  rc AS (SELECT count(*) AS rows, count(*) FILTER (WHERE NOT (${validKey(plan, 't', plan.right)})) AS empty FROM ${TABLES.right} t)
SELECT
  (SELECT rows FROM lc)::BIGINT AS left_rows,
  (SELECT rows FROM rc)::BIGINT AS right_rows,
  coalesce(sum(ln * rn), 0)::BIGINT AS matched_pairs,
  (coalesce(sum(ln) FILTER (WHERE rn IS NULL), 0) + (SELECT empty FROM lc))::BIGINT AS left_unmatched,
  (coalesce(sum(rn) FILTER (WHERE ln IS NULL), 0) + (SELECT empty FROM rc))::BIGINT AS right_unmatched,
  (count(*) FILTER (WHERE ln > 1 AND rn > 1))::BIGINT AS keys_duplicated_both_sides,
  (SELECT empty FROM lc)::BIGINT AS left_empty_keys,
  (SELECT empty FROM rc)::BIGINT AS right_empty_keys
FROM j`;
}

const JOIN_SQL = { inner: 'INNER JOIN', left: 'LEFT JOIN', right: 'RIGHT JOIN', full: 'FULL JOIN' } as const;

/** What differs between the SQL dialects in a select list. */
export interface SqlDialect {
  ident: (name: string) => string;
  lit: (text: string) => string;
  /** A boolean expression: `expr` matches the regular expression `pattern`. */
  matches: (expr: string, pattern: string) => string;
}

export const DUCKDB_DIALECT: SqlDialect = { ident, lit, matches: (e, p) => `regexp_matches(${e}, ${lit(p)})` };

/** The output columns of the join (tables aliased l and r), named as the plan says. */
export function selectList(plan: MergePlan, d: SqlDialect): string {
  return plan.output
    .map((c) => {
      const alias = c.from === 'left' ? 'l' : 'r';
      let expr = `${alias}.${col(c.index)}`;
      if (c.leftKey !== undefined && (plan.how === 'right' || plan.how === 'full')) {
        expr = `coalesce(${expr}, r.${col(plan.right.keys[c.leftKey]!)})`;
      }
      if (plan.formulaSafe) expr = `CASE WHEN ${d.matches(expr, FORMULA_START_REGEX)} THEN ${d.lit("'")} || ${expr} ELSE ${expr} END`;
      return `${expr} AS ${d.ident(c.name)}`;
    })
    .join(', ');
}

/** The join itself (a SELECT over the loaded tables), in the plan's row order. */
export function joinSql(plan: MergePlan): string {
  const order = plan.order === 'input' ? ' ORDER BY l.rowid NULLS LAST, r.rowid NULLS LAST' : '';
  return `SELECT ${selectList(plan, DUCKDB_DIALECT)} FROM ${TABLES.left} l ${JOIN_SQL[plan.how]} ${TABLES.right} r ON ${joinCondition(plan)}${order}`;
}

/** COPY of the join to a delimited file with a header row; its result is the number of rows written. */
export function copySql(plan: MergePlan, outPath: string): string {
  return `COPY (${joinSql(plan)}) TO ${lit(outPath)} (FORMAT csv, HEADER true, DELIMITER ${lit(plan.outputDelimiter)}, QUOTE '"', ESCAPE '"')`;
}
