/**
 * The pipelines config: its schema, its types and its loader.
 *
 * One schema serves the CDK app (`bin/app.ts`), the Lambda handlers, the job stages and the
 * local CLI (`fanout run --config FILE.json`), so a pipeline that loads here behaves the same
 * everywhere. Validation reports every problem at once, each with the field path and the bad value.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { computeSchema, identifier, recipientsSchema, type PipelineShape } from './common';
import { datasetPipelineSchema } from './dataset-schema';
import { filesPipelineSchema } from './files-schema';
import { checkSources, sourcesSchema } from './sources-schema';

export { PIPELINE_SHAPES, type ComputeKind, type PipelineShape } from './common';

/** Hard limit of AWS Batch array jobs, and so of chunks per run. */
export const MAX_ARRAY_SIZE = 10_000;
/** Largest chunk, in work items. */
export const MAX_CHUNK_SIZE = 10_000;

const PLACEHOLDER = /\{([^{}"\\\n:,]+)\}/g;

export const columnTypeSchema = z.enum(['text', 'number', 'integer', 'date', 'boolean']);
export type ColumnType = z.infer<typeof columnTypeSchema>;

export const columnSchema = z.object({
  /** Header text as it appears in the file (matched case- and space-insensitively). */
  name: z.string().trim().min(1, 'a column needs a name'),
  /** How cells are normalised. `text` keeps ids such as 00123 as text. @default 'text' */
  type: columnTypeSchema.default('text'),
  /** A missing column, or an empty cell, in a required column is an input error. @default true */
  required: z.boolean().default(true),
});
export type ColumnConfig = z.infer<typeof columnSchema>;

export const retrySchema = z.object({
  /** Calls per item, first one included. @default 5 */
  maxAttempts: z.int().min(1).max(20).default(5),
  /** First back-off delay; doubles each attempt, with full jitter. @default 500 */
  baseDelayMs: z.int().min(0).max(60_000).default(500),
  /** Cap of one back-off delay (and of an honoured Retry-After). @default 30000 */
  maxDelayMs: z.int().min(0).max(600_000).default(30_000),
  /**
   * With `concurrency: "auto"`, how long an item may keep being refused (429, 503 with
   * Retry-After) before it fails; refusals do not use up attempts. @default 900000 (15 minutes)
   */
  maxWaitMs: z.int().min(0).max(86_400_000).default(900_000),
});
export type RetryConfig = z.infer<typeof retrySchema>;

export const credentialSchema = z.object({
  /** Secrets Manager secret holding the credential (on AWS it is handed to fan-out as a Batch secret). */
  secretName: z.string().min(1).optional(),
  /** Environment variable the credential is read from in the job (locally: set it yourself). */
  env: z.string().regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an environment variable name such as DATA_SOURCE_TOKEN'),
});
export type CredentialConfig = z.infer<typeof credentialSchema>;

export const resultMappingSchema = z.object({
  /** Result column written to the workbook. */
  column: z.string().trim().min(1),
  /** Path into the JSON response: `taxDue`, `data.items[0].amount`, `$.a.b`. */
  path: z.string().trim().min(1),
  /** How the value is written. @default 'text' */
  type: columnTypeSchema.default('text'),
});

export const httpLookupTaskSchema = z.object({
  type: z.literal('http-lookup'),
  /**
   * URL template; `{column}` placeholders are filled with URL-encoded item values. Scheme, host and
   * port come only from this template: placeholders are not allowed before the path.
   */
  url: z.string().min(1),
  /** @default 'GET' */
  method: z.enum(['GET', 'POST', 'PUT']).default('GET'),
  /** Request headers; `{credential}` is replaced by the credential. @default {} */
  headers: z.record(z.string(), z.string()).default({}),
  /** Optional JSON body template; `{column}` placeholders are filled with JSON-escaped values. */
  body: z.string().optional(),
  credential: credentialSchema.optional(),
  /** Per-request timeout. @default 10000 */
  timeoutMs: z.int().min(100).max(900_000).default(10_000),
  /** Response JSON paths mapped to result columns. */
  results: z.array(resultMappingSchema).min(1, 'map at least one response field to a result column'),
});
export type HttpLookupTaskConfig = z.infer<typeof httpLookupTaskSchema>;

export const osrmMatchTaskSchema = z.object({
  type: z.literal('osrm-match'),
  /** Base URL of the OSRM server, e.g. http://osrm.internal:5000 */
  baseUrl: z.string().min(1),
  /** OSRM profile in the URL. @default 'driving' */
  profile: z
    .string()
    .regex(/^[a-z0-9_-]+$/)
    .default('driving'),
  /** Input columns. */
  columns: z.object({
    tripId: z.string().min(1),
    timestamp: z.string().min(1),
    latitude: z.string().min(1),
    longitude: z.string().min(1),
    accuracy: z.string().min(1).optional(),
  }),
  /** Largest number of points the server accepts in one request (osrm-routed --max-matching-size). @default 100 */
  maxPoints: z.int().min(3).max(100_000).default(100),
  /** Points shared by two consecutive windows of a long trip. @default 10 */
  overlap: z.int().min(1).max(1_000).default(10),
  /** Search radius in metres when a row has no accuracy. @default 10 */
  defaultRadiusM: z.number().positive().max(1_000).default(10),
  /** Per-request timeout. @default 60000 */
  timeoutMs: z.int().min(100).max(900_000).default(60_000),
  /** Ask OSRM to split traces at large gaps (`gaps=split`). @default true */
  splitGaps: z.boolean().default(true),
});
export type OsrmMatchTaskConfig = z.infer<typeof osrmMatchTaskSchema>;

export const taskSchema = z.discriminatedUnion('type', [httpLookupTaskSchema, osrmMatchTaskSchema]);
export type TaskConfig = z.infer<typeof taskSchema>;

/** Defaults of `input.limits`. */
export const INPUT_LIMIT_DEFAULTS = { maxCellChars: 1_048_576, maxInflatedMB: 2048, maxCompressionRatio: 100 } as const;

export const inputLimitsSchema = z.object({
  /** Longest cell text read from a workbook, in characters (Excel's own limit is 32,767). @default 1048576 */
  maxCellChars: z.int().min(32_767).max(1_000_000_000).default(INPUT_LIMIT_DEFAULTS.maxCellChars),
  /** Largest inflated size of a workbook's sheet or shared-strings part, in MB. @default 2048 */
  maxInflatedMB: z.int().min(1).max(1_048_576).default(INPUT_LIMIT_DEFAULTS.maxInflatedMB),
  /** Largest inflated-to-zipped ratio of such a part that inflates past 64 MB. @default 100 */
  maxCompressionRatio: z.int().min(10).max(100_000).default(INPUT_LIMIT_DEFAULTS.maxCompressionRatio),
});

/**
 * An `items` pipeline: rows → work items → one task call per item → result workbook
 * (split → fan-out array → consolidate → cleanup). The shape every pipeline had before shapes
 * existed, so `shape` may be left out.
 */
export const itemsPipelineSchema = z.object({
  /** The job shape (see docs/architecture.md). @default 'items' */
  shape: z.literal('items').default('items'),
  /** Folder name under `intake/` and `results/`. */
  name: identifier,
  description: z.string().optional(),
  task: taskSchema,
  input: z.object({
    /** Worksheet to read from a workbook. @default - the first visible sheet that has a header row */
    sheet: z.string().min(1).optional(),
    columns: z.array(columnSchema).min(1, 'declare at least one input column'),
    /** Column whose equal values form one work item (e.g. a trip id). @default - one row per item */
    groupBy: z.string().min(1).optional(),
    /** Non-empty rows at the top of a sheet searched for the header row (docs/records.md). @default 10 */
    headerSearchRows: z.int().min(1).max(1000).default(10),
    /** Limits that refuse a workbook that inflates too far, a decompression bomb (docs/records.md). */
    limits: inputLimitsSchema.prefault({}),
  }),
  /** Work items per chunk (one fan-out child per chunk). @default 1000 */
  chunkSize: z.int().min(1).max(MAX_CHUNK_SIZE).default(1000),
  /**
   * Requests in flight per fan-out child: `"auto"` adapts it to the data source (grows while calls
   * succeed with flat latency, falls when the source pushes back; between 1 and `maxConcurrency`),
   * a number fixes it. @default 'auto'
   */
  concurrency: z.union([z.literal('auto'), z.int().min(1).max(2048)]).default('auto'),
  /** Most requests in flight per fan-out child with `concurrency: "auto"`. @default 256 */
  maxConcurrency: z.int().min(1).max(2048).default(256),
  /**
   * Fleet-wide cap on requests per second to the data source, shared by the fan-out children
   * actually running (through the run table). @default - none
   */
  rateLimitPerSecond: z.number().positive().max(1_000_000).optional(),
  retry: retrySchema.default({ maxAttempts: 5, baseDelayMs: 500, maxDelayMs: 30_000, maxWaitMs: 900_000 }),
  /** Where the pipeline's jobs run on AWS. @default 'fargate-spot' */
  compute: computeSchema,
  recipients: recipientsSchema,
});
export type ItemsPipelineConfig = z.infer<typeof itemsPipelineSchema>;

/** Most requests a fan-out child of this pipeline has in flight: the fixed concurrency, or the auto maximum. */
export function maxInFlight(p: Pick<ItemsPipelineConfig, 'concurrency' | 'maxConcurrency'>): number {
  return p.concurrency === 'auto' ? p.maxConcurrency : p.concurrency;
}

/**
 * A pipeline of any shape, told apart by `shape` (`items` when absent). Stage code that only
 * serves one shape narrows with `requireShape`.
 */
export const pipelineSchema = z.discriminatedUnion('shape', [itemsPipelineSchema, datasetPipelineSchema, filesPipelineSchema]);
export type PipelineConfig = z.infer<typeof pipelineSchema>;
export type PipelineInput = z.input<typeof pipelineSchema>;
export type { DatasetPipelineConfig } from './dataset-schema';
export type { FilesPipelineConfig } from './files-schema';

/** The pipeline of shape `shape`, or a ConfigError naming the pipeline, its shape and the one expected. */
export function requireShape<S extends PipelineShape>(pipeline: PipelineConfig, shape: S): Extract<PipelineConfig, { shape: S }> {
  if (pipeline.shape !== shape) {
    throw new ConfigError(`pipeline ${pipeline.name}`, [`shape is "${pipeline.shape}", but this step serves "${shape}" pipelines only`]);
  }
  return pipeline as Extract<PipelineConfig, { shape: S }>;
}

/** Days a run record is kept when the config does not say (`runRetentionDays`). */
export const DEFAULT_RUN_RETENTION_DAYS = 90;

export const appConfigSchema = z
  .object({
    /** Sender address (an SES verified identity on AWS). @default 'batch-fanout@example.com' */
    sender: z.email().default('batch-fanout@example.com'),
    /**
     * Who hears of uploads that belong to no pipeline (an unknown intake folder).
     * @default - nobody: such uploads are only logged and recorded as failed runs
     */
    operatorRecipients: z.array(z.email()).default([]),
    /** Days a run record is kept in the run table (TTL). @default 90 */
    runRetentionDays: z.int().min(1).max(3650).default(DEFAULT_RUN_RETENTION_DAYS),
    pipelines: z.array(pipelineSchema).min(1, 'declare at least one pipeline'),
    /** Scheduled SFTP pulls into the pipelines' intake folders (runtime/config/sources-schema.ts). @default [] */
    sources: sourcesSchema,
  })
  .superRefine((cfg, ctx) => {
    checkSources(
      cfg.sources,
      cfg.pipelines.map((p) => p.name),
      (path, message) => ctx.addIssue({ code: 'custom', path, message }),
    );
    const seen = new Set<string>();
    cfg.pipelines.forEach((p, i) => {
      if (seen.has(p.name)) {
        ctx.addIssue({ code: 'custom', path: ['pipelines', i, 'name'], message: `duplicate pipeline name "${p.name}"` });
      }
      seen.add(p.name);
      if (p.shape !== 'items') return;
      const columns = new Set(p.input.columns.map((c) => normaliseHeader(c.name)));
      const needColumn = (name: string | undefined, path: (string | number)[]) => {
        if (name !== undefined && !columns.has(normaliseHeader(name))) {
          ctx.addIssue({
            code: 'custom',
            path: ['pipelines', i, ...path],
            message: `"${name}" is not one of the pipeline's input columns (${p.input.columns.map((c) => c.name).join(', ')})`,
          });
        }
      };
      needColumn(p.input.groupBy, ['input', 'groupBy']);
      if (p.task.type === 'http-lookup') {
        const url = p.task.url;
        // A placeholder is {name} where the name holds none of { } " \ : , or a newline (JSON braces are not placeholders).
        for (const m of url.matchAll(PLACEHOLDER)) needColumn(m[1], ['task', 'url']);
        for (const m of (p.task.body ?? '').matchAll(PLACEHOLDER)) needColumn(m[1], ['task', 'body']);
        const origin = /^(https?):\/\/([^/{}?#]+)(\/|$)/.exec(url);
        if (!origin) {
          ctx.addIssue({
            code: 'custom',
            path: ['pipelines', i, 'task', 'url'],
            message: `"${url}" must start with http:// or https:// and a fixed host; placeholders may only follow the host`,
          });
        }
      } else {
        const c = p.task.columns;
        needColumn(c.tripId, ['task', 'columns', 'tripId']);
        needColumn(c.timestamp, ['task', 'columns', 'timestamp']);
        needColumn(c.latitude, ['task', 'columns', 'latitude']);
        needColumn(c.longitude, ['task', 'columns', 'longitude']);
        needColumn(c.accuracy, ['task', 'columns', 'accuracy']);
        if (p.input.groupBy === undefined || normaliseHeader(p.input.groupBy) !== normaliseHeader(c.tripId)) {
          ctx.addIssue({
            code: 'custom',
            path: ['pipelines', i, 'input', 'groupBy'],
            message: `an osrm-match pipeline must group by its trip id column "${c.tripId}"`,
          });
        }
        if (p.task.overlap >= p.task.maxPoints) {
          ctx.addIssue({
            code: 'custom',
            path: ['pipelines', i, 'task', 'overlap'],
            message: `overlap (${p.task.overlap}) must be smaller than maxPoints (${p.task.maxPoints})`,
          });
        }
      }
    });
  });
export type AppConfig = z.infer<typeof appConfigSchema>;
export type AppConfigInput = z.input<typeof appConfigSchema>;

/** Header matching is case- and space-insensitive: "Customer  ID " matches "customer id". */
export function normaliseHeader(header: string): string {
  return header.normalize('NFKC').trim().replace(/\s+/g, ' ').toLowerCase();
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid pipelines config in ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

function describeValue(root: unknown, path: PropertyKey[]): string {
  let v: unknown = root;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return 'missing';
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  if (v === undefined) return 'missing';
  const s = JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/**
 * One line per zod issue: the field path, the message and the value found in `raw`, e.g.
 * `pipelines[0].name: must be 1-40 characters ... (got "Tax Due")`. Shared by every config parser.
 */
export function describeIssues(raw: unknown, issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const path = issue.path
      .map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`))
      .join('')
      .replace(/^\./, '');
    return `${path || '(root)'}: ${issue.message} (got ${describeValue(raw, issue.path)})`;
  });
}

/** Validates a parsed config; throws ConfigError listing every problem with field path and value. */
export function parseAppConfig(raw: unknown, source = 'config'): AppConfig {
  const result = appConfigSchema.safeParse(raw);
  if (result.success) return result.data;
  throw new ConfigError(source, describeIssues(raw, result.error.issues));
}

/** Reads and validates a JSON config file (the schema of `config/pipelines.ts`). */
export function loadConfigFile(path: string): AppConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(path, [`cannot read the file: ${err instanceof Error ? err.message : String(err)}`]);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(path, [`not valid JSON: ${err instanceof Error ? err.message : String(err)}`]);
  }
  return parseAppConfig(raw, path);
}

/** A URL template with its scheme, host and port replaced (e.g. to point a pipeline at a local stand-in). */
export function replaceOrigin(urlTemplate: string, origin: string): string {
  return urlTemplate.replace(/^https?:\/\/[^/]+/, origin.replace(/\/$/, ''));
}

export function findPipeline(config: AppConfig, name: string): PipelineConfig | undefined {
  return config.pipelines.find((p) => p.name === name);
}
