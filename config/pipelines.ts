/**
 * The pipelines this app deploys (and that `fanout run` knows without `--config`).
 *
 * Edit this file to add a pipeline; `npx fanout run --config FILE.json` accepts the same
 * shape as JSON (see `examples/pipelines.example.json`). Validated by `runtime/config/schema.ts`.
 */
import { parseAppConfig, type AppConfig, type AppConfigInput } from '../runtime/config/schema';

export const pipelinesConfig = {
  sender: 'batch-fanout@example.com',
  pipelines: [
    {
      name: 'tax-due',
      description: "Looks up each customer's tax due on the tax office's data source.",
      task: {
        type: 'http-lookup',
        url: 'http://127.0.0.1:8787/customers/{Customer ID}/tax-due?year={Tax Year}',
        method: 'GET',
        headers: { accept: 'application/json', authorization: 'Bearer {credential}' },
        credential: { secretName: 'batch-fanout/tax-due/api-token', env: 'TAX_API_TOKEN' },
        timeoutMs: 5_000,
        results: [
          { column: 'Tax Due', path: 'taxDue', type: 'number' },
          { column: 'Currency', path: 'currency', type: 'text' },
          { column: 'Assessed On', path: 'assessedOn', type: 'date' },
          { column: 'Tax Status', path: 'status', type: 'text' },
        ],
      },
      input: {
        columns: [
          { name: 'Customer ID', type: 'text', required: true },
          { name: 'Name', type: 'text', required: true },
          { name: 'Tax Year', type: 'integer', required: true },
          { name: 'Postcode', type: 'text', required: false },
        ],
      },
      chunkSize: 500,
      concurrency: 64,
      retry: { maxAttempts: 5, baseDelayMs: 200, maxDelayMs: 5_000 },
      compute: 'fargate-spot',
      recipients: ['tax-team@example.com'],
    },
  ],
} satisfies AppConfigInput;

/** The validated config; throws a ConfigError naming every bad field. */
export function loadPipelinesConfig(): AppConfig {
  return parseAppConfig(pipelinesConfig, 'config/pipelines.ts');
}
