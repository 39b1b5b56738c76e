/**
 * Schema pieces every pipeline shape shares (name, recipients) and the list of shapes. Kept apart
 * from schema.ts so that each shape's schema file can use them without an import cycle.
 */
import { z } from 'zod';

/**
 * The job shapes (see docs/architecture.md and ../shared/design.md):
 * - `items`: rows → one task call per work item → result workbook;
 * - `dataset`: whole input files handed to one engine job (the keyed merge on DuckDB or Spark);
 * - `files`: each work item is a file, converted by a per-file task.
 */
export const PIPELINE_SHAPES = ['items', 'dataset', 'files'] as const;
export type PipelineShape = (typeof PIPELINE_SHAPES)[number];

/** A pipeline name: its folder under `intake/` and `results/`. */
export const identifier = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,39}$/, 'must be 1-40 characters of a-z, 0-9 and "-", starting with a letter or digit');

/** Who gets the result and failure emails. */
export const recipientsSchema = z.array(z.email()).min(1, 'name at least one recipient');

/** Where a pipeline's Batch jobs run on AWS. @default 'fargate-spot' */
export const computeSchema = z.enum(['fargate-spot', 'ec2-spot']).default('fargate-spot');
export type ComputeKind = z.infer<typeof computeSchema>;

/**
 * The config entry of a shape that has a place but no stages yet: it parses far enough to name
 * the pipeline, then is refused with a message that says so.
 */
export function notBuiltYet<S extends PipelineShape>(shape: S, what: string) {
  return z
    .object({
      shape: z.literal(shape),
      name: identifier,
      description: z.string().optional(),
      compute: computeSchema,
      recipients: recipientsSchema,
    })
    .superRefine((_, ctx) => {
      ctx.addIssue({
        code: 'custom',
        path: ['shape'],
        message: `shape "${shape}" (${what}) is not built yet: only "items" pipelines run in this version`,
      });
    });
}
