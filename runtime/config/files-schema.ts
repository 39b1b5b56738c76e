/**
 * The `files` pipeline shape: a work item is one file (a zip entry, a file of an SFTP pull, or a
 * key listed in a manifest), and a per-file task turns it into an output file. Its first task is
 * `xml-to-json`. See docs/files.md.
 */
import { z } from 'zod';
import { computeSchema, identifier, recipientsSchema } from './common';

/** Most files in one chunk (one fan-out child), as for items. */
const MAX_FILES_PER_CHUNK = 10_000;

/** A dotted element path from the document root, e.g. `orders.order.line` or `orders.order.@id`. */
const elementPath = z.string().regex(/^[^.\s]+(\.[^.\s]+)*$/, 'must be a dotted element path from the root, e.g. orders.order.line');

export const xmlToJsonTaskSchema = z.object({
  type: z.literal('xml-to-json'),
  /** Prefix of attribute names in the JSON (`<order id="7">` -> `{"@id": "7"}`). @default '@' */
  attributePrefix: z.string().max(10).default('@'),
  /** Key of an element's text when it also has attributes or children. @default '#text' */
  textKey: z.string().min(1).max(20).default('#text'),
  /**
   * Element paths that are always arrays, even with one element, so every file has the same
   * shape (e.g. `orders.order`, `orders.order.line`). Repeated elements are arrays anyway.
   * @default []
   */
  alwaysArray: z.array(elementPath).default([]),
  /**
   * Element or attribute paths whose values are numbers in the JSON (`orders.order.total`,
   * `orders.order.@count`); every other value stays text, so ids keep their leading zeros.
   * @default []
   */
  numeric: z.array(elementPath).default([]),
  /** Drop namespace prefixes (`ns:order` -> `order`, xmlns attributes removed). @default false */
  removeNamespacePrefixes: z.boolean().default(false),
  /** Largest input file; a larger one fails (only that file). @default 10485760 (10 MiB) */
  maxFileBytes: z
    .int()
    .min(1)
    .max(1024 * 1024 * 1024)
    .default(10 * 1024 * 1024),
  /** Indent the JSON output with two spaces. @default false */
  pretty: z.boolean().default(false),
});
export type XmlToJsonTaskConfig = z.infer<typeof xmlToJsonTaskSchema>;

export const fileTaskSchema = z.discriminatedUnion('type', [xmlToJsonTaskSchema]);
export type FileTaskConfig = z.infer<typeof fileTaskSchema>;

export const filesRetrySchema = z.object({
  /** Attempts per file, first included (only storage hiccups are retried: bad XML is final). @default 3 */
  maxAttempts: z.int().min(1).max(20).default(3),
  /** @default 200 */
  baseDelayMs: z.int().min(0).max(60_000).default(200),
  /** @default 5000 */
  maxDelayMs: z.int().min(0).max(600_000).default(5_000),
});

export const filesPipelineSchema = z.object({
  shape: z.literal('files'),
  /** Folder name under `intake/` and `results/`. */
  name: identifier,
  description: z.string().optional(),
  task: fileTaskSchema,
  /** Files per chunk (one fan-out child per chunk). @default 1000 */
  chunkSize: z.int().min(1).max(MAX_FILES_PER_CHUNK).default(1000),
  /** Files in flight per fan-out child. @default 32 */
  concurrency: z.int().min(1).max(2048).default(32),
  retry: filesRetrySchema.prefault({}),
  /** Where the jobs run on AWS. @default 'fargate-spot' */
  compute: computeSchema,
  /** Batch-level limits of an uploaded zip. */
  zip: z
    .object({
      /** Sum of the entries' inflated sizes above which the zip is refused. @default 10737418240 (10 GiB) */
      maxInflatedBytes: z
        .number()
        .int()
        .min(1)
        .max(1024 ** 4)
        .default(10 * 1024 ** 3),
      /** Most entries in one zip. @default 1000000 */
      maxEntries: z.int().min(1).max(100_000_000).default(1_000_000),
    })
    .prefault({}),
  /** Who gets the summary and failure emails. */
  recipients: recipientsSchema,
});
export type FilesPipelineConfig = z.infer<typeof filesPipelineSchema>;
export type FilesPipelineInput = z.input<typeof filesPipelineSchema>;
