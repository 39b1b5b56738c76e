/**
 * The `http-lookup` task: one HTTP call per work item (the scraping case), its JSON answer mapped
 * to result columns.
 *
 * - URL template `{column}` placeholders are filled with the URL-encoded value of the item's first
 *   row. Scheme, host and port come only from the template: after filling, the URL's origin must
 *   equal the template's, and no value may form a `.`/`..` path segment, so an item value can
 *   neither reach another host nor climb out of the template's path.
 * - Header values may use `{credential}`, replaced by the credential (a Secrets Manager secret on
 *   AWS, an environment variable locally). The credential never appears in an error message.
 * - An optional JSON body template: a placeholder inside a JSON string gets the JSON-escaped text
 *   (`{"id": "{Customer ID}"}`), a bare one gets the JSON value (`{"year": {Tax Year}}`).
 * - Results: `column <- path` with paths such as `taxDue`, `data.items[0].amount`, `$.a["b c"]`;
 *   a missing value is null; a present one is coerced to the column's type, and a value that cannot
 *   be (a number column answered with "n/a") fails the item with a reason naming the field.
 *
 * One call per attempt: retries, back-off and the rate limit belong to the fan-out stage.
 */
import type { ColumnType, HttpLookupTaskConfig } from '../../runtime/config/schema';
import { ConfigError } from '../../runtime/config/schema';
import { EnvironmentError, PermanentError, TransientError, errorMessage } from '../../runtime/errors';
import type { HttpClient, UrlTarget } from '../http/client';
import type { Cell, Row, WorkItem } from '../../runtime/model';
import { columnLookup, toNumber } from './columns';
import type { Task, TaskOutputShape, TaskResult } from './task';

const SOURCE = 'http-lookup task';

export function describeHttpLookupOutput(config: HttpLookupTaskConfig): TaskOutputShape {
  return { rowColumns: config.results.map((r) => ({ name: r.column, type: r.type })) };
}

export function createHttpLookupTask(config: HttpLookupTaskConfig, deps: { client: HttpClient; credential?: string }): Task {
  const problems: string[] = [];
  const url = compileUrlTemplate(config.url, problems);
  const body = config.body === undefined ? undefined : compileBodyTemplate(config.body, problems);
  const results = config.results.map((r, i) => {
    try {
      return { column: r.column, type: r.type, steps: parseJsonPath(r.path), what: resultWhat(r) };
    } catch (err) {
      problems.push(`results[${i}].path: ${errorMessage(err)}`);
      return { column: r.column, type: r.type, steps: [] as PathStep[], what: resultWhat(r) };
    }
  });
  const credentialHeaders = Object.entries(config.headers)
    .filter(([, v]) => v.includes('{credential}'))
    .map(([name]) => name);
  if (credentialHeaders.length > 0 && config.credential === undefined) {
    problems.push(`headers: ${credentialHeaders.join(', ')} use {credential} but the task has no "credential" setting`);
  }
  if (problems.length > 0) throw new ConfigError(SOURCE, problems);

  const credential = deps.credential;
  if (credentialHeaders.length > 0) {
    const variable = config.credential?.env;
    if (credential === undefined || credential.trim() === '') {
      throw new EnvironmentError(
        `the ${SOURCE} needs a credential for header ${credentialHeaders.join(', ')}, but none was given: ` +
          `set environment variable ${variable}` +
          (config.credential?.secretName ? ` (on AWS, from secret ${config.credential.secretName})` : ''),
      );
    }
    if (/[\r\n\0]/.test(credential)) {
      throw new EnvironmentError(
        `the credential in environment variable ${variable} contains a line break or NUL character and cannot be sent in a header`,
      );
    }
  }

  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(config.headers)) {
    headers[name.toLowerCase()] = credential === undefined ? value : value.split('{credential}').join(credential);
  }
  headers.accept ??= 'application/json';
  if (body !== undefined) headers['content-type'] ??= 'application/json';

  const scrub = makeScrubber(credential);
  const { client } = deps;
  const { method, timeoutMs } = config;
  // The answer's handlers are made once, not per call (this runs thousands of times a second).
  const resultOf = (answer: unknown): TaskResult => {
    const fields: Row = {};
    try {
      for (const r of results) fields[r.column] = coerce(readPath(answer, r.steps), r.type, r.what);
    } catch (err) {
      throw scrubError(err, scrub);
    }
    return { fields };
  };
  const failure = (err: unknown): never => {
    throw scrubError(err, scrub);
  };

  return {
    output: describeHttpLookupOutput(config),
    run(item: WorkItem, ctx) {
      let answer: Promise<unknown>;
      try {
        const row = item.d[0] ?? {};
        answer = client.requestJson({ method, url: url.fill(row), headers, body: body?.fill(row), timeoutMs, signal: ctx.signal });
      } catch (err) {
        return Promise.reject(scrubError(err, scrub));
      }
      return answer.then(resultOf, failure);
    },
  };
}

/** How a coercion failure names a result: `response field "taxDue" (column "Tax Due")`. */
function resultWhat(r: { column: string; path: string }): string {
  return `response field "${r.path}" (column "${r.column}")`;
}

// ---------------------------------------------------------------------------------------------
// Item values: placeholders are filled from the item's first row; each placeholder's column
// lookup is made once, at task creation (columns.ts).

type ColumnLookup = ReturnType<typeof columnLookup>;

function cellText(value: Cell): string {
  return value === null ? '' : String(value);
}

// ---------------------------------------------------------------------------------------------
// URL template

const PLACEHOLDER = /\{([^{}]+)\}/g;
/** A path segment that URL parsing would resolve (".", "..", "%2e", ".%2E"...). */
const DOT_SEGMENT = /^(\.|%2e){1,2}$/i;
/** What a path holds before it can have a dot segment. */
const MAYBE_DOT = /\.|%2e/i;
/**
 * Template text that URL parsing leaves as it is after the origin of an http(s) URL (no space,
 * quote, apostrophe, backslash, #, <, >, ^, `, {, }, |, non-ASCII): a URL filled into such a
 * template needs no parsing per item.
 */
const VERBATIM = /^[A-Za-z0-9\-._~!$&()*+,;=:@/?%]*$/;

interface CompiledUrl {
  /** The filled URL, checked (the HTTP client uses it as it is): a parsed URL, or the template's origin and the filled path. */
  fill(row: Row): URL | UrlTarget;
}

function compileUrlTemplate(template: string, problems: string[]): CompiledUrl {
  const originMatch = /^(https?):\/\/([^/{}?#]+)(?=\/|\?|#|$)/i.exec(template);
  let origin = '';
  if (!originMatch) {
    problems.push(`url: "${template}" must start with http:// or https:// and a fixed host; placeholders may only follow the host`);
  } else {
    try {
      origin = new URL(originMatch[0]).origin;
    } catch {
      problems.push(`url: "${originMatch[0]}" is not a valid origin`);
    }
  }
  const originLength = originMatch?.[0].length ?? 0;
  const queryAt = template.search(/[?#]/);
  const parts: ({ text: string } | { column: string; read: ColumnLookup; inPath: boolean })[] = [];
  let last = 0;
  for (const m of template.matchAll(PLACEHOLDER)) {
    parts.push({ text: template.slice(last, m.index) });
    parts.push({ column: m[1], read: columnLookup(m[1]), inPath: queryAt < 0 || m.index < queryAt });
    last = m.index + m[0].length;
  }
  parts.push({ text: template.slice(last) });

  // Fast: every text after the origin is left as it is by URL parsing, and placeholder values are
  // URL-encoded, so the filled URL is the template's origin (parsed once) and the rest as filled,
  // as URL parsing would give it. An origin always ends before "/", "?", "#" or the end.
  let fastOrigin: URL | undefined;
  if (origin !== '' && parts.every((part, i) => !('text' in part) || VERBATIM.test(i === 0 ? part.text.slice(originLength) : part.text))) {
    fastOrigin = new URL(originMatch![0]);
  }

  return {
    fill(row) {
      let out = '';
      for (const part of parts) {
        if ('text' in part) {
          out += part.text;
          continue;
        }
        const value = part.read(row);
        if (value === undefined) throw new PermanentError(`the item has no column "${part.column}" for the URL`);
        const text = cellText(value);
        if (text === '' && part.inPath) throw new PermanentError(`column "${part.column}" is empty; the URL path needs it`);
        let encoded: string;
        try {
          encoded = encodeURIComponent(text);
        } catch {
          throw new PermanentError(`column "${part.column}" holds text that cannot be URL-encoded`);
        }
        if (part.inPath && DOT_SEGMENT.test(encoded)) {
          throw new PermanentError(`column "${part.column}" value "${text}" would change the URL path`);
        }
        // URL parsing encodes an apostrophe in the query of an http(s) URL.
        if (!part.inPath && encoded.includes("'")) encoded = encoded.replaceAll("'", '%27');
        out += encoded;
      }
      if (fastOrigin !== undefined) {
        const rest = out.slice(originLength);
        const queryAt = rest.indexOf('?');
        if (MAYBE_DOT.test(queryAt < 0 ? rest : rest.slice(0, queryAt)) && hasDotSegment(rest)) {
          throw new PermanentError(`the filled URL has a "." or ".." path segment: ${describeFilled(out)}`);
        }
        return { origin: fastOrigin, path: rest.charCodeAt(0) === 47 ? rest : `/${rest}` };
      }
      let parsed: URL;
      try {
        parsed = new URL(out);
      } catch {
        throw new PermanentError(`the filled URL is not valid: ${describeFilled(out)}`);
      }
      if (parsed.origin !== origin) {
        throw new PermanentError(`the filled URL leaves the configured origin ${origin}: ${describeFilled(out)}`);
      }
      if (hasDotSegment(out.slice(originLength))) {
        throw new PermanentError(`the filled URL has a "." or ".." path segment: ${describeFilled(out)}`);
      }
      return parsed;
    },
  };
}

/** Whether the path of a URL's part after the origin has a "." or ".." segment (which URL parsing would resolve). */
function hasDotSegment(afterOrigin: string): boolean {
  const pathPart = afterOrigin.split(/[?#]/)[0];
  return pathPart.split('/').some((segment) => DOT_SEGMENT.test(segment));
}

function describeFilled(url: string): string {
  return url.length > 200 ? `${url.slice(0, 200)}...` : url;
}

// ---------------------------------------------------------------------------------------------
// JSON body template

interface CompiledBody {
  fill(row: Row): string;
}

function compileBodyTemplate(template: string, problems: string[]): CompiledBody {
  type Placeholder = { column: string; read: ColumnLookup; inString: boolean };
  const parts: ({ text: string } | Placeholder)[] = [];
  let text = '';
  let inString = false;
  for (let i = 0; i < template.length; i++) {
    const ch = template[i];
    if (inString && ch === '\\') {
      text += ch + (template[i + 1] ?? '');
      i++;
      continue;
    }
    if (ch === '"') {
      inString = !inString;
      text += ch;
      continue;
    }
    if (ch === '{') {
      const m = /^\{([^{}"\\\n]+)\}/.exec(template.slice(i));
      if (m && (inString || !/[:,]/.test(m[1]))) {
        parts.push({ text });
        text = '';
        parts.push({ column: m[1].trim(), read: columnLookup(m[1].trim()), inString });
        i += m[0].length - 1;
        continue;
      }
    }
    text += ch;
  }
  parts.push({ text });

  const render = (value: (part: Placeholder) => string) => parts.map((p) => ('text' in p ? p.text : value(p))).join('');
  try {
    JSON.parse(render((p) => (p.inString ? 'x' : '0')));
  } catch (err) {
    problems.push(`body: the template is not valid JSON once its placeholders are filled (${errorMessage(err)})`);
  }

  return {
    fill(row) {
      return render(({ column, read, inString }) => {
        const value = read(row);
        if (value === undefined) throw new PermanentError(`the item has no column "${column}" for the request body`);
        return inString ? JSON.stringify(cellText(value)).slice(1, -1) : JSON.stringify(value);
      });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Response paths

export type PathStep = string | number;

/** `a.b[0].c`, `$.a`, `$`, `a["key with spaces"]`, `['x']` -> steps. Throws on a malformed path. */
export function parseJsonPath(path: string): PathStep[] {
  let rest = path.trim();
  if (rest.startsWith('$')) {
    rest = rest.slice(1);
    if (rest.startsWith('.')) rest = rest.slice(1);
    if (rest === '') return [];
  }
  const steps: PathStep[] = [];
  let first = true;
  while (rest.length > 0) {
    let m: RegExpExecArray | null;
    if ((m = /^\[(\d+)\]/.exec(rest))) {
      steps.push(Number(m[1]));
    } else if ((m = /^\[\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\s*\]/.exec(rest))) {
      steps.push((m[1] ?? m[2]).replace(/\\(.)/g, '$1'));
    } else if ((m = (first ? /^([^.[\]]+)/ : /^\.([^.[\]]+)/).exec(rest))) {
      steps.push(m[1]);
    } else {
      throw new Error(`cannot read "${path}" at "${rest}": use names joined by dots and [index], e.g. data.items[0].amount`);
    }
    rest = rest.slice(m[0].length);
    first = false;
  }
  if (steps.length === 0) throw new Error(`"${path}" names no field`);
  return steps;
}

export function readPath(value: unknown, steps: PathStep[]): unknown {
  let v = value;
  for (const step of steps) {
    if (v === null || typeof v !== 'object') return undefined;
    if (typeof step === 'number') {
      if (!Array.isArray(v)) return undefined;
      v = v[step];
    } else {
      if (Array.isArray(v) || !Object.hasOwn(v, step)) return undefined;
      v = (v as Record<string, unknown>)[step];
    }
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Coercion

/** "YYYY-MM-DD": ten characters, ASCII digits and two dashes. */
function isDateOnlyShape(s: string): boolean {
  if (s.length !== 10 || s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45) return false;
  for (let i = 0; i < 10; i++) {
    if (i === 4 || i === 7) continue;
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** The number written by the ASCII digits s[at, at + count). */
function digitsAt(s: string, at: number, count: number): number {
  let n = 0;
  for (let i = at; i < at + count; i++) n = n * 10 + (s.charCodeAt(i) - 48);
  return n;
}

/** A response value as the column's type; missing (undefined/null) is null. Throws PermanentError when it cannot be. */
export function coerce(value: unknown, type: ColumnType, what: string): Cell {
  if (value === undefined || value === null) return null;
  switch (type) {
    case 'text':
      if (typeof value === 'string') return value;
      if (typeof value === 'number' || typeof value === 'boolean') return String(value);
      return JSON.stringify(value);
    case 'number': {
      const n = toNumber(value);
      return n === undefined ? coercionFailure(value, 'a number', what) : n;
    }
    case 'integer': {
      const n = toNumber(value);
      return n === undefined || !Number.isInteger(n) ? coercionFailure(value, 'a whole number', what) : n;
    }
    case 'boolean': {
      if (typeof value === 'boolean') return value;
      if (value === 1 || value === 0) return value === 1;
      if (typeof value === 'string') {
        const s = value.trim().toLowerCase();
        if (['true', 'yes', 'y', '1'].includes(s)) return true;
        if (['false', 'no', 'n', '0'].includes(s)) return false;
        if (s === '') return null;
      }
      return coercionFailure(value, 'true or false', what);
    }
    case 'date': {
      const iso = toIsoDate(value);
      return iso === undefined ? coercionFailure(value, 'a date', what) : iso;
    }
  }
}

/** Throws the PermanentError of a value that is not of the column's type. */
function coercionFailure(value: unknown, expected: string, what: string): never {
  let shown: string;
  try {
    shown = JSON.stringify(value) ?? String(value);
  } catch {
    shown = String(value);
  }
  if (shown.length > 60) shown = `${shown.slice(0, 57)}...`;
  throw new PermanentError(`${what}: expected ${expected}, got ${shown}`);
}

/**
 * ISO 8601: a date-only value stays a date ("2024-03-31"); a date-time becomes UTC
 * ("2024-03-31T10:00:00.000Z"); a number is epoch seconds (below 1e11) or milliseconds.
 */
function toIsoDate(value: unknown): string | undefined {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return undefined;
    const ms = Math.abs(value) < 1e11 ? value * 1000 : value;
    const d = new Date(ms);
    return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
  }
  if (typeof value !== 'string') return undefined;
  const s = value.trim();
  if (s === '') return undefined;
  if (isDateOnlyShape(s)) {
    // A calendar date, checked by arithmetic (no Date and no match per answer: this runs for every item).
    const year = digitsAt(s, 0, 4);
    const month = digitsAt(s, 5, 2);
    const day = digitsAt(s, 8, 2);
    const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
    const days = month === 2 ? (leap ? 29 : 28) : month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
    return month >= 1 && month <= 12 && day >= 1 && day <= days ? s : undefined;
  }
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : new Date(t).toISOString();
}

// ---------------------------------------------------------------------------------------------
// Keeping the credential out of messages

function makeScrubber(credential: string | undefined): (text: string) => string {
  if (credential === undefined || credential === '') return (text) => text;
  const forms = [...new Set([credential, encodeURIComponent(credential), JSON.stringify(credential).slice(1, -1)])]
    .filter((f) => f.length > 0)
    .sort((a, b) => b.length - a.length);
  return (text) => forms.reduce((t, f) => t.split(f).join('***'), text);
}

function scrubError(err: unknown, scrub: (text: string) => string): unknown {
  if (!(err instanceof Error)) return new Error(scrub(String(err)));
  const message = scrub(err.message);
  if (message === err.message) return err;
  if (err instanceof TransientError) return new TransientError(message, err.retryAfterMs, err.kind);
  if (err instanceof PermanentError) return new PermanentError(message);
  if (err instanceof EnvironmentError) return new EnvironmentError(message);
  const copy = new Error(message);
  copy.name = err.name;
  return copy;
}
