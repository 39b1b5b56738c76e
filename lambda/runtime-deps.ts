/**
 * Builds the handlers' dependencies in Lambda, once per execution environment: parses the
 * environment with its schema (runtime/env.ts: fail fast, naming every bad variable) and builds
 * the ports (runtime/ports-factory.ts).
 */
import { handlerEnvSchema, parseEnv, type Env } from '../runtime/env';
import { createLogger } from '../runtime/log';
import { createPorts } from '../runtime/ports-factory';
import type { HandlerDeps } from '../runtime/run/deps';

export function lambdaDeps(env: Env, handlerName: string): HandlerDeps {
  const parsed = parseEnv(handlerEnvSchema, env, `Lambda ${handlerName}`);
  const config = parsed.FANOUT_CONFIG;
  const { store, table, jobs, mailer } = createPorts(parsed, env);
  return {
    // The deployment's run-record retention wins over the pipelines config's.
    config: { ...config, runRetentionDays: parsed.FANOUT_RUN_TTL_DAYS ?? config.runRetentionDays },
    store,
    table,
    jobs,
    mailer,
    log: createLogger({ sink: (line) => console.log(line), fields: { handler: handlerName } }),
  };
}
