/**
 * A small structured logger: one JSON object per line (CloudWatch Logs Insights reads the fields).
 * The local CLI swaps the sink so the terminal shows progress bars instead of log lines.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;
export type LogSink = (line: string) => void;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

const order: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function createLogger(opts: { sink?: LogSink; level?: LogLevel; fields?: LogFields } = {}): Logger {
  const sink = opts.sink ?? ((line: string) => process.stderr.write(`${line}\n`));
  const min = order[opts.level ?? 'info'];
  const base = opts.fields ?? {};
  const emit = (level: LogLevel, message: string, fields?: LogFields) => {
    if (order[level] < min) return;
    const entry: LogFields = { time: new Date().toISOString(), level, message, ...base, ...fields };
    for (const [k, v] of Object.entries(entry)) {
      if (v instanceof Error) entry[k] = { name: v.name, message: v.message };
    }
    sink(JSON.stringify(entry));
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger({ sink, level: opts.level, fields: { ...base, ...fields } }),
  };
}

/** A logger that drops everything (tests, quiet runs). */
export const silentLogger: Logger = createLogger({ sink: () => undefined, level: 'error' });

/**
 * Log messages the app's CloudWatch metrics are derived from (lib/observability.ts builds metric
 * filters on them): one place, so the runtime and the dashboard cannot drift apart.
 */
export const LOG_EVENTS = {
  runOpened: 'run opened; split submitted',
  runSucceeded: 'run succeeded',
  runFailed: 'run failed',
  fanoutChildDone: 'fan-out child done',
  /** One per result part: `done`, `failed`, `retries` since the previous one (items done per minute). */
  fanoutProgress: 'fan-out progress',
} as const;
