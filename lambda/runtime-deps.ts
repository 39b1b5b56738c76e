/**
 * Builds the handlers' dependencies in Lambda, once per execution environment: parses the
 * environment with its schema (runtime/env.ts: fail fast, naming every bad variable) and builds
 * the ports (runtime/ports-factory.ts).
 */
import { handlerEnvSchema, parseEnv, type Env } from '../runtime/env';
import type { AwsClientsOptions } from '../runtime/adapters/clients';
import { createLogger, type Logger } from '../runtime/log';
import { createPorts } from '../runtime/ports-factory';
import type { HandlerDeps } from '../runtime/run/deps';

export interface LambdaDepsOptions extends AwsClientsOptions {
  /** @default JSON lines on stdout (CloudWatch Logs in Lambda) */
  log?: Logger;
  /** Largest email the mail service takes (a local run's SES emulator takes less than SES). @default SES's 40 MiB */
  mailMaxBytes?: number;
}

export function lambdaDeps(env: Env, handlerName: string, opts: LambdaDepsOptions = {}): HandlerDeps {
  const parsed = parseEnv(handlerEnvSchema, env, `Lambda ${handlerName}`);
  const config = parsed.FANOUT_CONFIG;
  const { store, table, jobs, mailer } = createPorts({ ...parsed, FANOUT_MAIL_MAX_BYTES: opts.mailMaxBytes }, env, { onCall: opts.onCall });
  return {
    // The deployment's run-record retention wins over the pipelines config's.
    config: { ...config, runRetentionDays: parsed.FANOUT_RUN_TTL_DAYS ?? config.runRetentionDays },
    store,
    table,
    jobs,
    mailer,
    log: opts.log?.child({ handler: handlerName }) ?? createLogger({ sink: (line) => console.log(line), fields: { handler: handlerName } }),
  };
}
