/**
 * EventBridge event pattern matching, for the rules of the synthesized app: a local event is
 * delivered to a rule's targets only when the rule's pattern matches it. Supports what the
 * documented pattern syntax offers for the fields this app matches: literal values (any of a
 * list), nested objects, and the `prefix`, `suffix`, `anything-but`, `exists`, `numeric`,
 * `equals-ignore-case` and `wildcard` operators. An operator it does not know is an error.
 */
export class EventPatternError extends Error {
  override readonly name = 'EventPatternError';
}

type Pattern = { [key: string]: unknown };

function matchesOperator(op: Record<string, unknown>, value: unknown, present: boolean, where: string): boolean {
  const [name, arg] = Object.entries(op)[0] ?? [];
  switch (name) {
    case 'exists':
      return arg ? present : !present;
    case 'prefix':
      return typeof value === 'string' && typeof arg === 'string' && value.startsWith(arg);
    case 'suffix':
      return typeof value === 'string' && typeof arg === 'string' && value.endsWith(arg);
    case 'equals-ignore-case':
      return typeof value === 'string' && typeof arg === 'string' && value.toLowerCase() === arg.toLowerCase();
    case 'wildcard': {
      if (typeof value !== 'string' || typeof arg !== 'string') return false;
      const re = new RegExp(
        `^${arg
          .split('*')
          .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
          .join('.*')}$`,
      );
      return re.test(value);
    }
    case 'anything-but': {
      if (!present) return false;
      const excluded = Array.isArray(arg) ? arg : [arg];
      return !excluded.some((x) =>
        typeof x === 'object' && x !== null ? matchesOperator(x as Record<string, unknown>, value, present, where) : x === value,
      );
    }
    case 'numeric': {
      if (typeof value !== 'number' || !Array.isArray(arg)) return false;
      for (let i = 0; i < arg.length; i += 2) {
        const [cmp, bound] = [arg[i] as string, arg[i + 1] as number];
        const ok =
          cmp === '<'
            ? value < bound
            : cmp === '<='
              ? value <= bound
              : cmp === '>'
                ? value > bound
                : cmp === '>='
                  ? value >= bound
                  : cmp === '='
                    ? value === bound
                    : false;
        if (!ok) return false;
      }
      return true;
    }
    default:
      throw new EventPatternError(`${where}: the local run does not evaluate the "${String(name)}" operator of an event pattern`);
  }
}

function matchesValue(allowed: unknown[], value: unknown, present: boolean, where: string): boolean {
  const values = Array.isArray(value) ? value : [value];
  return allowed.some((a) => {
    if (a !== null && typeof a === 'object') return matchesOperator(a as Record<string, unknown>, value, present, where);
    return present && values.some((v) => v === a);
  });
}

/** True when `event` matches `pattern` (every field of the pattern matches). */
export function matchesEventPattern(pattern: unknown, event: unknown, where = 'event pattern'): boolean {
  if (pattern === null || typeof pattern !== 'object' || Array.isArray(pattern)) {
    throw new EventPatternError(`${where}: a pattern must be an object, got ${JSON.stringify(pattern)}`);
  }
  const e = (event ?? {}) as Record<string, unknown>;
  for (const [key, expected] of Object.entries(pattern as Pattern)) {
    const present = Object.hasOwn(e, key) && e[key] !== undefined;
    const value = e[key];
    if (Array.isArray(expected)) {
      if (!matchesValue(expected, value, present, `${where}.${key}`)) return false;
    } else if (expected !== null && typeof expected === 'object') {
      if (!present || value === null || typeof value !== 'object') return false;
      if (!matchesEventPattern(expected, value, `${where}.${key}`)) return false;
    } else {
      throw new EventPatternError(`${where}.${key}: a pattern value must be a list or an object, got ${JSON.stringify(expected)}`);
    }
  }
  return true;
}
