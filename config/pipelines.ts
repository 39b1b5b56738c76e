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
    {
      name: 'map-match',
      description: "Snaps the GPS fixes of each trip to the road network with OSRM's match service.",
      task: {
        type: 'osrm-match',
        // On AWS with the managed OSRM service, FANOUT_OSRM_BASE_URL (set by the CDK app) wins.
        baseUrl: 'http://127.0.0.1:5000',
        profile: 'driving',
        columns: { tripId: 'trip_id', timestamp: 'timestamp', latitude: 'latitude', longitude: 'longitude', accuracy: 'accuracy_m' },
        maxPoints: 100,
        overlap: 10,
        defaultRadiusM: 10,
        timeoutMs: 60_000,
        splitGaps: true,
      },
      input: {
        // Point columns are text and optional: one bad fix is reported on its row, not a failed trip.
        columns: [
          { name: 'trip_id', type: 'text', required: true },
          { name: 'timestamp', type: 'text', required: false },
          { name: 'latitude', type: 'text', required: false },
          { name: 'longitude', type: 'text', required: false },
          { name: 'accuracy_m', type: 'text', required: false },
        ],
        groupBy: 'trip_id',
      },
      chunkSize: 500,
      concurrency: 16,
      retry: { maxAttempts: 5, baseDelayMs: 200, maxDelayMs: 5_000 },
      compute: 'ec2-spot',
      recipients: ['mobility-team@example.com'],
    },
  ],
} satisfies AppConfigInput;

/** The validated config; throws a ConfigError naming every bad field. */
export function loadPipelinesConfig(): AppConfig {
  return parseAppConfig(pipelinesConfig, 'config/pipelines.ts');
}
