/**
 * The `dataset` shape: whole input files handed to one engine job, then notify and cleanup. Its
 * one kind today is the two-file keyed merge (`merge`), on DuckDB in one Batch job or on Spark on
 * EMR Serverless past one machine (see docs/merge.md).
 */
import { z } from 'zod';
import { computeSchema, identifier, recipientsSchema } from './common';
import { MERGE_ENGINES, mergeSpecSchema } from './merge-schema';

export const datasetPipelineSchema = z.object({
  shape: z.literal('dataset'),
  /** Folder name under `intake/` (one sub-folder per batch of inputs) and `results/`. */
  name: identifier,
  description: z.string().optional(),
  /** The keyed merge of two delimited text files. */
  merge: mergeSpecSchema,
  /**
   * Where the merge runs: `duckdb` in one Batch job on Fargate Spot (inputs up to about 50 GB
   * together, see docs/merge.md), `emr-serverless` as a Spark job for inputs past one machine.
   * @default 'duckdb'
   */
  engine: z.enum(MERGE_ENGINES).default('duckdb'),
  /** Where the merge's Batch job runs. Only `fargate-spot` (enlarged ephemeral storage for the spill). @default 'fargate-spot' */
  compute: computeSchema.refine((c) => c === 'fargate-spot', {
    message:
      'a dataset pipeline runs its merge job on Fargate Spot (200 GiB of local storage for the spill); the EC2 Spot queue has no local disk for it. For inputs past one machine, set "engine": "emr-serverless"',
  }),
  /**
   * Hours a batch folder may wait for all its named inputs, counted from its first file. Past them
   * the batch ends FAILED, and the failure email names the input it still lacks (on AWS a sweep
   * every 15 minutes finds it: lambda/handlers/merge-deadline.ts). @default 24
   */
  inputDeadlineHours: z.number().positive().max(720, 'must be at most 720 (30 days)').default(24),
  recipients: recipientsSchema,
});
export type DatasetPipelineConfig = z.infer<typeof datasetPipelineSchema>;
