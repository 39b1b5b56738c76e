/**
 * The `dataset` shape: whole input files handed to one engine job (the two-file keyed merge on
 * DuckDB, Spark on EMR Serverless past one machine), then notify and cleanup. Not built yet: the
 * entry has its place in the config and is refused with a clear message.
 */
import type { z } from 'zod';
import { notBuiltYet } from './common';

export const datasetPipelineSchema = notBuiltYet('dataset', 'whole files handed to an engine, such as the two-file merge');
export type DatasetPipelineConfig = z.infer<typeof datasetPipelineSchema>;
