/**
 * The `files` shape: each work item is a file (a zip entry, a file of an SFTP pull, a manifest
 * line), converted by a per-file task (list → fan-out → summary → cleanup). Not built yet: the
 * entry has its place in the config and is refused with a clear message.
 */
import type { z } from 'zod';
import { notBuiltYet } from './common';

export const filesPipelineSchema = notBuiltYet('files', 'one task per file, such as XML to JSON');
export type FilesPipelineConfig = z.infer<typeof filesPipelineSchema>;
