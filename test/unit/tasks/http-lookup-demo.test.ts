import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTask } from '../../../batch-jobs/tasks/index';
import type { Task } from '../../../batch-jobs/tasks/task';
import { loadPipelinesConfig } from '../../../config/pipelines';
import { requireShape } from '../../../runtime/config/schema';
import { DEMO_TOKEN, startDemoDataSource, taxDueFor, type DemoDataSource } from '../../../local/sources/demo-data-source';
import { runWithRetry } from '../../../runtime/retry';

describe('tax-due pipeline task against the demo data source', () => {
  let source: DemoDataSource;
  let task: Task;
  const signal = new AbortController().signal;

  before(async () => {
    source = await startDemoDataSource({ latencyMs: [0, 2], transientFailureRate: 0.3, seed: 3 });
    const pipeline = requireShape(loadPipelinesConfig().pipelines.find((p) => p.name === 'tax-due')!, 'items');
    assert.equal(pipeline.task.type, 'http-lookup');
    const config = { ...pipeline.task, url: pipeline.task.url.replace('http://127.0.0.1:8787', source.url) };
    task = createTask(config, { env: { TAX_API_TOKEN: DEMO_TOKEN }, concurrency: 4 });
  });
  after(async () => {
    await task.close?.();
    await source.close();
  });

  const lookup = (id: string, year: number) =>
    runWithRetry(
      (attempt) => task.run({ i: 0, r: [2], d: [{ 'Customer ID': id, Name: 'A', 'Tax Year': year, Postcode: null }] }, { attempt, signal }),
      {
        maxAttempts: 10,
        baseDelayMs: 1,
        maxDelayMs: 5,
      },
    );

  it('given a known customer, maps the answer to the pipeline result columns after retries', async () => {
    const expected = taxDueFor('004215', 2021);
    const out = await lookup('004215', 2021);
    assert.ok(out.ok, JSON.stringify(out));
    assert.deepEqual(out.value, {
      fields: { 'Tax Due': expected.taxDue, Currency: 'GBP', 'Assessed On': expected.assessedOn, 'Tax Status': expected.status },
    });
  });

  it('given an unknown customer, fails with the 404 as the reason', async () => {
    const out = await lookup('912345', 2021);
    assert.equal(out.ok, false);
    assert.match(
      !out.ok ? out.error : '',
      /^HTTP 404 Not Found from GET http:\/\/127\.0\.0\.1:\d+\/customers\/912345\/tax-due\?year=2021: \{"error":"unknown customer/,
    );
  });
});
