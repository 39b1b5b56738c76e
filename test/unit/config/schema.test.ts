/** The pipelines config: defaults, and errors that name the field and the bad value. */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadPipelinesConfig, pipelinesConfig } from '../../../config/pipelines';
import { ConfigError, loadConfigFile, normaliseHeader, parseAppConfig, requireShape } from '../../../runtime/config/schema';

const minimal = () => ({
  pipelines: [
    {
      name: 'lookup',
      task: { type: 'http-lookup', url: 'https://api.example.com/x/{Id}', results: [{ column: 'Out', path: 'out' }] },
      input: { columns: [{ name: 'Id' }] },
      recipients: ['a@example.com'],
    },
  ],
});

function problems(raw: unknown): string[] {
  try {
    parseAppConfig(raw, 'test.json');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('pipelines config', () => {
  it('fills the documented defaults', () => {
    const c = parseAppConfig(minimal());
    const p = requireShape(c.pipelines[0]!, 'items');
    assert.equal(p.shape, 'items');
    assert.equal(p.chunkSize, 1000);
    assert.equal(p.concurrency, 'auto');
    assert.equal(p.maxConcurrency, 256);
    assert.equal(p.compute, 'fargate-spot');
    assert.deepEqual(p.retry, { maxAttempts: 5, baseDelayMs: 500, maxDelayMs: 30_000, maxWaitMs: 900_000 });
    assert.equal(p.input.columns[0]!.type, 'text');
    assert.equal(p.input.columns[0]!.required, true);
    assert.equal(c.runRetentionDays, 90);
  });

  it('ships a valid tax-due pipeline', () => {
    const c = loadPipelinesConfig();
    assert.ok(c.pipelines.some((p) => p.name === 'tax-due' && p.shape === 'items' && p.task.type === 'http-lookup'));
    assert.equal(pipelinesConfig.pipelines[0]!.name, 'tax-due');
  });

  it('names the field and the value of a chunk size over 10,000', () => {
    const c = minimal();
    (c.pipelines[0] as Record<string, unknown>).chunkSize = 20_000;
    const [p] = problems(c);
    assert.match(p!, /^pipelines\[0\]\.chunkSize: .*\(got 20000\)$/);
  });

  it('reports every problem at once', () => {
    const c = minimal();
    const p0 = c.pipelines[0] as Record<string, unknown>;
    p0.name = 'Bad Name';
    p0.recipients = ['not-an-email'];
    const list = problems(c);
    assert.ok(list.some((l) => l.startsWith('pipelines[0].name') && l.includes('"Bad Name"')));
    assert.ok(list.some((l) => l.startsWith('pipelines[0].recipients[0]') && l.includes('not-an-email')));
  });

  it('rejects a URL placeholder that is not an input column', () => {
    const c = minimal();
    c.pipelines[0]!.task.url = 'https://api.example.com/x/{Nope}';
    assert.ok(problems(c).some((l) => l.startsWith('pipelines[0].task.url') && l.includes('"Nope"')));
  });

  it('rejects a URL whose host would come from an item value', () => {
    const c = minimal();
    c.pipelines[0]!.task.url = 'https://{Id}/x';
    assert.ok(problems(c).some((l) => l.startsWith('pipelines[0].task.url') && /fixed host/.test(l)));
  });

  it('rejects duplicate pipeline names', () => {
    const c = minimal();
    c.pipelines.push(structuredClone(c.pipelines[0]!));
    assert.ok(problems(c).some((l) => l.startsWith('pipelines[1].name') && /duplicate/.test(l)));
  });

  it('requires an osrm-match pipeline to group by its trip id column', () => {
    const raw = {
      pipelines: [
        {
          name: 'mm',
          task: {
            type: 'osrm-match',
            baseUrl: 'http://osrm:5000',
            columns: { tripId: 'Trip', timestamp: 'T', latitude: 'Lat', longitude: 'Lon' },
          },
          input: { columns: [{ name: 'Trip' }, { name: 'T' }, { name: 'Lat', type: 'number' }, { name: 'Lon', type: 'number' }] },
          recipients: ['a@example.com'],
        },
      ],
    };
    assert.ok(problems(raw).some((l) => l.startsWith('pipelines[0].input.groupBy')));
  });

  it('reads a JSON file and names the file in its errors', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cfg-'));
    const good = join(dir, 'good.json');
    await writeFile(good, JSON.stringify(minimal()));
    assert.equal(loadConfigFile(good).pipelines[0]!.name, 'lookup');
    const bad = join(dir, 'bad.json');
    await writeFile(bad, '{ "pipelines": [');
    assert.throws(
      () => loadConfigFile(bad),
      (err: unknown) => err instanceof ConfigError && err.message.includes(bad) && /not valid JSON/.test(err.message),
    );
  });

  it('matches headers case- and space-insensitively', () => {
    assert.equal(normaliseHeader('  Customer   ID '), normaliseHeader('customer id'));
    assert.notEqual(normaliseHeader('Customer ID'), normaliseHeader('CustomerID'));
  });
});

describe('pipelines config: JSON body templates', () => {
  it('takes {column} placeholders inside a JSON body, not the JSON braces', () => {
    const c = minimal();
    (c.pipelines[0]!.task as Record<string, unknown>).body = '{"id": "{Id}", "opts": {"deep": true}}';
    assert.equal(requireShape(parseAppConfig(c).pipelines[0]!, 'items').task.type, 'http-lookup');
  });

  it('names an unknown placeholder in the body', () => {
    const c = minimal();
    (c.pipelines[0]!.task as Record<string, unknown>).body = '{"id": "{Nope}"}';
    assert.ok(problems(c).some((l) => l.startsWith('pipelines[0].task.body') && l.includes('"Nope"')));
  });
});

describe('pipelines config: job shapes', () => {
  it('reads a pipeline without a shape as an items pipeline, and one that says so the same way', () => {
    const implicit = parseAppConfig(minimal()).pipelines[0]!;
    const raw = minimal();
    const explicit = parseAppConfig({ pipelines: [{ ...raw.pipelines[0]!, shape: 'items' }] }).pipelines[0]!;
    assert.equal(implicit.shape, 'items');
    assert.deepEqual(explicit, implicit);
  });

  it('names the shapes there are when a pipeline names another', () => {
    const raw = minimal();
    const lines = problems({ pipelines: [{ ...raw.pipelines[0]!, shape: 'stream' }] });
    assert.ok(
      lines.some((l) => l.startsWith('pipelines[0].shape') && l.includes("'items'") && l.includes("'dataset'") && l.includes("'files'")),
      lines.join('\n'),
    );
  });

  it('refuses a stage meant for one shape a pipeline of another, naming both', () => {
    const items = parseAppConfig(minimal()).pipelines[0]!;
    assert.throws(() => requireShape(items, 'dataset'), /shape is "items", but this step serves "dataset" pipelines only/);
    assert.equal(requireShape(items, 'items'), items);
  });
});
