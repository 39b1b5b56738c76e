/**
 * The task registry: the output shape of a pipeline's task (consolidate needs it without running
 * anything) and the task itself, with its HTTP client and credential, for a fan-out child.
 */
import type { TaskConfig } from '../../runtime/config/schema';
import { requireEnv, type Env } from '../../runtime/env';
import { HttpClient } from '../http/client';
import { createHttpLookupTask, describeHttpLookupOutput } from './http-lookup';
import { createOsrmMatchTask, describeOsrmMatchOutput } from './osrm-match';
import type { Task, TaskOutputShape } from './task';

export type { Task, TaskContext, TaskOutputShape, TaskResult } from './task';

export function describeTaskOutput(config: TaskConfig): TaskOutputShape {
  switch (config.type) {
    case 'http-lookup':
      return describeHttpLookupOutput(config);
    case 'osrm-match':
      return describeOsrmMatchOutput(config);
  }
}

/**
 * Builds the pipeline's task with its own HttpClient (`concurrency` keep-alive sockets per origin).
 * Reads the credential from `env[config.credential.env]` and throws an EnvironmentError naming the
 * variable when it is missing. `close()` on the task closes the client.
 */
export function createTask(config: TaskConfig, deps: { env: Env; concurrency: number }): Task {
  const client = new HttpClient({ connections: deps.concurrency });
  let task: Task;
  try {
    switch (config.type) {
      case 'http-lookup': {
        const credential = config.credential
          ? requireEnv(
              deps.env,
              config.credential.env,
              config.credential.secretName
                ? `the data-source credential (on AWS it comes from secret ${config.credential.secretName})`
                : 'the data-source credential',
            )
          : undefined;
        task = createHttpLookupTask(config, { client, credential });
        break;
      }
      case 'osrm-match':
        task = createOsrmMatchTask(config, { client, env: deps.env });
        break;
    }
  } catch (err) {
    void client.close();
    throw err;
  }
  const inner = task;
  return {
    output: inner.output,
    run: (item, ctx) => inner.run(item, ctx),
    async close() {
      try {
        await inner.close?.();
      } finally {
        await client.close();
      }
    },
  };
}
