/**
 * DuckDB SQL of a merge plan. Each input is read with every column as text, the delimiter, quote
 * and header given (no sniffing), in strict mode (a ragged row is an error that names its line).
 * The merge engine joins the files once into a table (joinedTableSql: each row with the numbers of
 * its input rows, counted in file order as they are read, and its left key), reads the key
 * statistics from it (joinedStatsSql: rows, matched pairs, unmatched rows, empty keys, keys
 * duplicated on both sides: the counts of the email, and the output's size before it is written),
 * then writes it with one COPY to CSV/TSV (copyJoinedSql, sorted for input order; its result is
 * the number of rows written). statsSql and copySql do the same in one query each, over tables
 * loaded with loadSql or over the files (tests and the benchmark compare the two).
 *
 * Empty keys never match: the join compares `nullif(left key, '')` with the right key, so a NULL
 * meets nothing and the join stays a hash join for every join type (a one-sided "key <> ''" in the
 * ON clause of an outer join turned it into a nested-loop join, O(left x right)).
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

/** Loads one input into its table (its result is the number of rows loaded). */
export function loadSql(plan: MergePlan, role: 'left' | 'right', path: string): string {
  return `CREATE TABLE ${TABLES[role]} AS SELECT * FROM ${readCsv(plan, plan[role], path)}`;
}

/** Where the SQL reads each input from: the loaded tables, or the files themselves. */
export type MergeSources = { kind: 'tables' } | { kind: 'files'; left: string; right: string };

function source(plan: MergePlan, role: 'left' | 'right', from: MergeSources): string {
  return from.kind === 'tables' ? TABLES[role] : readCsv(plan, plan[role], from[role]);
}

const keyExpr = (plan: MergePlan, alias: string, index: number) =>
  plan.trimKeys ? `trim(${alias}.${col(index)})` : `${alias}.${col(index)}`;

/**
 * The ON condition, shared in spirit with Spark's: text equality per key pair; an empty left key
 * becomes NULL and matches nothing (an empty right key then has no partner either).
 */
export function joinCondition(plan: MergePlan, l = 'l', r = 'r'): string {
  return plan.left.keys.map((lk, i) => `nullif(${keyExpr(plan, l, lk)}, '') = ${keyExpr(plan, r, plan.right.keys[i]!)}`).join(' AND ');
}

/**
 * A source with a row identity `__fanout_row__`: a table's rowid, or a file's row number, counted
 * as it is read (a streaming window: DuckDB reads the file in one thread, in order, so with
 * insertion order preserved the number is the row's place in the file).
 */
function numbered(plan: MergePlan, role: 'left' | 'right', from: MergeSources): string {
  return from.kind === 'tables'
    ? `(SELECT rowid AS __fanout_row__, * FROM ${TABLES[role]})`
    : `(SELECT row_number() OVER () AS __fanout_row__, * FROM ${source(plan, role, from)})`;
}

/**
 * One row: left_rows, right_rows, matched_pairs, left_unmatched, right_unmatched,
 * keys_duplicated_both_sides, left_empty_keys, right_empty_keys (all BIGINT). A row's key is empty
 * when any of its key columns is.
 *
 * Derived from the inner join of the keys alone, not from the keys of every row: the matched rows
 * are grouped by left row (rc: the right rows it matches), then by key (lc: the left rows of the
 * key; every left row of a key matches the same rc right rows), so the aggregates hold only
 * matched rows and keys. Per key lc × rc pairs; the rows of each side counted by a plain scan; the
 * unmatched rows are the rest (an empty key never matches). An aggregate over the keys of all rows
 * of both inputs gave the same counts at about twice the CPU (a hash table of every distinct key).
 */
export function statsSql(plan: MergePlan, from: MergeSources = { kind: 'tables' }): string {
  const matched =
    `SELECT l.__fanout_row__ AS lr, ${plan.left.keys.map((k, i) => `${keyExpr(plan, 'l', k)} AS k${i}`).join(', ')}\n` +
    `  FROM ${numbered(plan, 'left', from)} l JOIN ${numbered(plan, 'right', from)} r ON ${joinCondition(plan)}`;
  return statsOfMatches(plan, matched, from);
}

/**
 * The same statistics from the join kept in its table (JOINED: its rowid and key columns), so
 * that an ordered merge joins once: the matched rows are the ones with both rowids.
 */
export function joinedStatsSql(plan: MergePlan, from: MergeSources = { kind: 'tables' }): string {
  const keys = plan.left.keys.map((_, i) => `${JOINED_KEY(i)} AS k${i}`).join(', ');
  return statsOfMatches(
    plan,
    `SELECT ${JOINED.left} AS lr, ${keys} FROM ${JOINED.table} WHERE ${JOINED.left} IS NOT NULL AND ${JOINED.right} IS NOT NULL`,
    from,
  );
}

/** The statistics from the matched pairs (`matched`: columns lr, a left row's identity, and its keys k0...). */
function statsOfMatches(plan: MergePlan, matched: string, from: MergeSources): string {
  const ks = plan.left.keys.map((_, i) => `k${i}`);
  const empty = (input: PlanInput) => input.keys.map((k) => `coalesce(${keyExpr(plan, 't', k)}, '') = ''`).join(' OR ');
  const counted = (role: 'left' | 'right') =>
    `(SELECT count(*) AS n, count(*) FILTER (WHERE ${empty(plan[role])}) AS e FROM ${source(plan, role, from)} t)`;
  return `WITH j AS (
  ${matched}
), per_left_row AS (
  SELECT lr, ${ks.map((k) => `any_value(${k}) AS ${k}`).join(', ')}, count(*) AS rc FROM j GROUP BY lr
), per_key AS (
  SELECT count(*) AS lc, any_value(rc) AS rc FROM per_left_row GROUP BY ${ks.join(', ')}
), m AS (
  SELECT coalesce(sum(lc * rc), 0) AS pairs, coalesce(sum(lc), 0) AS lm, coalesce(sum(rc), 0) AS rm,
    count(*) FILTER (WHERE lc > 1 AND rc > 1) AS dup
  FROM per_key
)
SELECT
  lt.n::BIGINT AS left_rows,
  rt.n::BIGINT AS right_rows,
  m.pairs::BIGINT AS matched_pairs,
  (lt.n - m.lm)::BIGINT AS left_unmatched,
  (rt.n - m.rm)::BIGINT AS right_unmatched,
  m.dup::BIGINT AS keys_duplicated_both_sides,
  lt.e::BIGINT AS left_empty_keys,
  rt.e::BIGINT AS right_empty_keys
FROM m, ${counted('left')} lt, ${counted('right')} rt`;
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

/**
 * The join itself, in the plan's row order: over the loaded tables (input order: by their rowids),
 * or straight over the files (no order).
 */
export function joinSql(plan: MergePlan, from: MergeSources = { kind: 'tables' }): string {
  if (plan.order === 'input' && from.kind !== 'tables') throw new Error('input order needs the loaded tables (their rowids)');
  const order = plan.order === 'input' ? ' ORDER BY l.rowid NULLS LAST, r.rowid NULLS LAST' : '';
  return `SELECT ${selectList(plan, DUCKDB_DIALECT)} FROM ${source(plan, 'left', from)} l ${JOIN_SQL[plan.how]} ${source(plan, 'right', from)} r ON ${joinCondition(plan)}${order}`;
}

/** COPY of the join to a delimited file with a header row; its result is the number of rows written. */
export function copySql(plan: MergePlan, outPath: string, from: MergeSources = { kind: 'tables' }): string {
  return `COPY (${joinSql(plan, from)}) TO ${lit(outPath)} (FORMAT csv, HEADER true, DELIMITER ${lit(plan.outputDelimiter)}, QUOTE '"', ESCAPE '"')`;
}

/** The table of a join kept before its ordered COPY, and its row-order columns. */
export const JOINED = { table: 'fanout_joined', left: '__fanout_left_rowid__', right: '__fanout_right_rowid__' } as const;
/** Its columns holding the left keys as compared (for the statistics). */
const JOINED_KEY = (i: number) => `__fanout_key${i}__`;

/**
 * The join, unordered, into a table with each row's input rowids and left keys: the first step of
 * an ordered merge, which then reads its statistics from this table (joinedStatsSql) and sorts it
 * into the file (copyJoinedSql). So the inputs are joined once, and no query holds both a join and
 * a sort (DuckDB may run out of memory with two blocking operators in one query, where each alone
 * spills).
 */
export function joinedTableSql(plan: MergePlan, from: MergeSources = { kind: 'tables' }): string {
  const keys = plan.left.keys.map((k, i) => `${keyExpr(plan, 'l', k)} AS ${JOINED_KEY(i)}`).join(', ');
  return (
    `CREATE TABLE ${JOINED.table} AS SELECT l.__fanout_row__ AS ${JOINED.left}, r.__fanout_row__ AS ${JOINED.right}, ${keys}, ${selectList(plan, DUCKDB_DIALECT)} ` +
    `FROM ${numbered(plan, 'left', from)} l ${JOIN_SQL[plan.how]} ${numbered(plan, 'right', from)} r ON ${joinCondition(plan)}`
  );
}

/** The last step: the kept join, in the plan's order, to the output file (its result is the rows written). */
export function copyJoinedSql(plan: MergePlan, outPath: string): string {
  const hidden = [JOINED.left, JOINED.right, ...plan.left.keys.map((_, i) => JOINED_KEY(i))].join(', ');
  const order = plan.order === 'input' ? ` ORDER BY ${JOINED.left} NULLS LAST, ${JOINED.right} NULLS LAST` : '';
  return (
    `COPY (SELECT * EXCLUDE (${hidden}) FROM ${JOINED.table}${order}) ` +
    `TO ${lit(outPath)} (FORMAT csv, HEADER true, DELIMITER ${lit(plan.outputDelimiter)}, QUOTE '"', ESCAPE '"')`
  );
}
