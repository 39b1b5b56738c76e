/**
 * SFTP sources: partner servers that a schedule pulls new files from into a pipeline's intake
 * folder. The private key is never in config: a Secrets Manager secret on AWS (handed to the
 * `sftp-pull` job as a Batch secret), an environment variable locally. See docs/sftp.md.
 */
import { z } from 'zod';
import { identifier } from './common';

/** EventBridge Scheduler expressions: `rate(15 minutes)` or a six-field `cron(...)`. */
const SCHEDULE = /^(rate\(\s*\d+\s+(minute|minutes|hour|hours|day|days)\s*\)|cron\(\s*\S+(\s+\S+){5}\s*\))$/;

export const afterCopySchema = z.union([
  z.literal('keep'),
  z.literal('delete'),
  z.object({
    /** Remote folder a copied file is moved into (created by the partner; it must exist). */
    moveTo: z
      .string()
      .min(1)
      .regex(/^[^\0]+$/),
  }),
]);
export type AfterCopy = z.infer<typeof afterCopySchema>;

export const sftpSourceSchema = z.object({
  /** Source name: the folder under `intake/<pipeline>/` its files land in, and the schedule's name. */
  name: identifier,
  type: z.literal('sftp').default('sftp'),
  host: z
    .string()
    .min(1)
    .regex(/^[A-Za-z0-9.-]+$|^\[[0-9a-fA-F:]+\]$/, 'must be a host name or an IP address'),
  /** @default 22 */
  port: z.int().min(1).max(65_535).default(22),
  user: z.string().min(1),
  /** Where the private key (OpenSSH or PEM text) comes from. */
  privateKey: z.object({
    /** Secrets Manager secret holding the key; on AWS it is handed to the job as a Batch secret. */
    secretName: z.string().min(1).optional(),
    /** Environment variable the job reads the key from (locally: set it yourself). */
    env: z.string().regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an environment variable name such as PARTNER_SFTP_KEY'),
  }),
  /** The server's host key fingerprint as `ssh-keygen -lf` prints it: `SHA256:` and 43 base64 characters. */
  hostKeySha256: z
    .string()
    .regex(/^SHA256:[A-Za-z0-9+/]{43}=?$/, 'must be SHA256:<43 base64 characters>, as `ssh-keygen -lf key.pub` prints it'),
  /** Remote folder to list. */
  folder: z.string().min(1),
  /** File names to take, a glob (`*`, `?`, `[abc]`, `{xml,zip}`); subfolders are not walked. @default '*' */
  glob: z.string().min(1).default('*'),
  /** Pipeline whose intake folder the files are copied into. */
  pipeline: identifier,
  /** What happens to a remote file once it is copied. @default 'keep' */
  afterCopy: afterCopySchema.default('keep'),
  /** A file younger than this (by its modification time) is left for the next pull: it may still be written. @default 120 */
  minAgeSeconds: z
    .int()
    .min(0)
    .max(7 * 86_400)
    .default(120),
  /** When to pull: `rate(15 minutes)` or `cron(0 6 * * ? *)` (EventBridge Scheduler syntax, UTC). */
  schedule: z.string().regex(SCHEDULE, 'must be rate(<n> minutes|hours|days) or cron(<6 fields>)'),
  /** Connection and per-operation timeout. @default 30000 */
  timeoutMs: z.int().min(1000).max(600_000).default(30_000),
  /** Files copied at once. @default 4 */
  concurrency: z.int().min(1).max(64).default(4),
});
export type SftpSourceConfig = z.infer<typeof sftpSourceSchema>;
export type SftpSourceInput = z.input<typeof sftpSourceSchema>;

export const sourcesSchema = z.array(sftpSourceSchema).default([]);

/** Checks that only the app config can make: names unique, pipelines known. */
export function checkSources(
  sources: readonly SftpSourceConfig[],
  pipelineNames: readonly string[],
  addIssue: (path: (string | number)[], message: string) => void,
): void {
  const seen = new Set<string>();
  sources.forEach((s, i) => {
    if (seen.has(s.name)) addIssue(['sources', i, 'name'], `duplicate source name "${s.name}"`);
    seen.add(s.name);
    if (!pipelineNames.includes(s.pipeline)) {
      addIssue(['sources', i, 'pipeline'], `"${s.pipeline}" is not a pipeline of this config (${pipelineNames.join(', ')})`);
    }
  });
}

/**
 * Whether a file name matches a glob: `*` (any run of characters), `?` (one), `[abc]` / `[!abc]`
 * (a class), `{a,b}` (alternatives). Case-sensitive, as SFTP servers are.
 */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  let inClass = false;
  let alternatives = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (inClass) {
      if (c === ']') inClass = false;
      re += c === '\\' ? '\\\\' : c;
      continue;
    }
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      inClass = true;
      re += '[';
      if (glob[i + 1] === '!') {
        re += '^';
        i++;
      }
    } else if (c === '{') {
      alternatives++;
      re += '(?:';
    } else if (c === '}' && alternatives > 0) {
      alternatives--;
      re += ')';
    } else if (c === ',' && alternatives > 0) re += '|';
    else re += c.replace(/[.+^$()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}
