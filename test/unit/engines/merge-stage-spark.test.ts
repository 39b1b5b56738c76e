/**
 * The merge stage on the emr-serverless engine, against the real S3, run table and mail emulators:
 * Spark cannot run here, so the EMR Serverless client's requests are captured and a stand-in job
 * run writes what a Spark job run writes (statistics as one JSON part, the output as CSV parts
 * with a header each) from the nested-loop reference. Checks the plumbing around the engine: the
 * script and runner uploaded where StartJobRun points, the wait, the manifest, the counts, the
 * email with its workbook, and the run SUCCEEDED.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EMRServerlessClient } from '@aws-sdk/client-emr-serverless';
import { EmrServerlessSpark } from '../../../batch-jobs/engines/emr-serverless';
import { STATEMENT_SEPARATOR } from '../../../batch-jobs/engines/spark-sql';
import { runMerge } from '../../../batch-jobs/stages/merge';
import { DynamoRunTable } from '../../../runtime/adapters/dynamo-run-table';
import { S3ObjectStore } from '../../../runtime/adapters/s3-object-store';
import { SesMailer } from '../../../runtime/adapters/ses-mailer';
import { parseAppConfig, requireShape } from '../../../runtime/config/schema';
import { silentLogger } from '../../../runtime/log';
import { offlineClientConfig, startEmulatorFixture, type EmulatorFixture } from '../adapters/fixtures';
import { referenceMerge, type Rows } from './merge-reference';

const X: Rows = [
  ['7', 'a'],
  ['007', 'b'],
  ['7', 'c'],
  ['', 'd'],
];
const Y: Rows = [
  ['7', 'A'],
  ['7', 'B'],
  ['9', 'C'],
];

let fx: EmulatorFixture;
let tmp: string;
before(async () => {
  fx = await startEmulatorFixture();
  tmp = await mkdtemp(join(tmpdir(), 'merge-spark-stage-'));
});
after(async () => {
  await fx.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('merge stage on EMR Serverless', () => {
  it('uploads the script, starts and waits for the job run, writes the manifest, emails the counts and ends SUCCEEDED', async () => {
    const store = new S3ObjectStore(fx.clients.s3, fx.emu.bucket);
    const table = new DynamoRunTable(fx.clients.dynamo, fx.emu.table);
    const config = parseAppConfig({
      pipelines: [
        {
          shape: 'dataset',
          name: 'merge-big',
          engine: 'emr-serverless',
          merge: { inputs: { left: 'x_list.txt', right: 'y_list.txt' }, keys: { left: ['ID'], right: ['ID'] }, how: 'left' },
          recipients: ['ds@example.com'],
        },
      ],
    });
    const pipeline = requireShape(config.pipelines[0]!, 'dataset');
    const runId = 'b9-0123456789';
    const prefix = 'intake/merge-big/b9/';
    await store.put(`${prefix}x_list.txt`, `ID\tvalue\n${X.map((r) => r.join('\t')).join('\n')}\n`);
    await store.put(`${prefix}y_list.txt`, `ID\tvalue\n${Y.map((r) => r.join('\t')).join('\n')}\n`);
    await table.createRun({
      runId,
      pipeline: pipeline.name,
      inputKey: prefix,
      inputName: 'b9',
      status: 'STARTED',
      config: pipeline,
      sender: 'fanout@example.com',
      createdAt: Date.now(),
      dataset: { batch: 'b9', prefix, inputs: { left: `${prefix}x_list.txt`, right: `${prefix}y_list.txt` }, ignored: [] },
    });

    // A stand-in for EMR Serverless: StartJobRun "runs" the job by writing a Spark job run's files.
    const requests: { method: string; path: string; body: string }[] = [];
    const reference = referenceMerge(X, Y, { how: 'left', leftKeys: [0], rightKeys: [0] });
    const handler = {
      async handle(request: { method: string; path: string; body?: unknown }) {
        const body =
          typeof request.body === 'string' ? request.body : request.body ? Buffer.from(request.body as Uint8Array).toString('utf8') : '';
        requests.push({ method: request.method, path: request.path, body });
        let response: object;
        if (request.method === 'POST') {
          const script = (await store.getBytes(`work/${runId}/spark/merge.sql`)).toString('utf8');
          const out = /INSERT OVERWRITE DIRECTORY 's3:\/\/[^/]+\/(results\/[^']+)' USING csv/.exec(script)![1]!;
          const stats = /INSERT OVERWRITE DIRECTORY 's3:\/\/[^/]+\/(work\/[^']+)' USING json/.exec(script)![1]!;
          const csv = (rows: Rows) => `${['ID_x,value_x,value_y', ...rows.map((r) => r.join(','))].join('\n')}\n`;
          await store.put(`${out}part-00000-abc.csv`, csv(reference.slice(0, 2)));
          await store.put(`${out}part-00001-abc.csv`, csv(reference.slice(2)));
          await store.put(`${out}_SUCCESS`, '');
          await store.put(
            `${stats}part-00000-def.json`,
            `${JSON.stringify({ left_rows: 4, right_rows: 3, matched_pairs: 4, left_unmatched: 2, right_unmatched: 1, keys_duplicated_both_sides: 1, left_empty_keys: 1, right_empty_keys: 0 })}\n`,
          );
          response = {
            applicationId: '00fapp',
            jobRunId: 'jr-1',
            arn: 'arn:aws:emr-serverless:us-east-1:123456789012:/applications/00fapp/jobruns/jr-1',
          };
        } else {
          response = { jobRun: { applicationId: '00fapp', jobRunId: 'jr-1', state: requests.length < 3 ? 'RUNNING' : 'SUCCESS' } };
        }
        return {
          response: { statusCode: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(response)) },
        };
      },
      updateHttpClientConfig() {},
      httpHandlerConfigs() {
        return {};
      },
    };
    const spark = new EmrServerlessSpark(new EMRServerlessClient({ ...offlineClientConfig, requestHandler: handler as never }), {
      applicationId: '00fapp',
      executionRoleArn: 'arn:aws:iam::123456789012:role/spark',
      sleep: async () => undefined,
    });

    const result = await runMerge(
      {
        runId,
        store,
        table,
        mailer: new SesMailer(fx.clients.ses),
        notifier: { publishSplitDone: async () => undefined },
        log: silentLogger,
        env: {},
        arrayIndex: 0,
        attempt: 1,
        tmpDir: tmp,
        signal: new AbortController().signal,
        resultLinkDays: 7,
      },
      { spark },
    );

    // StartJobRun points at the runner and the script the stage uploaded
    const start = JSON.parse(requests[0]!.body);
    assert.equal(requests[0]!.path, '/applications/00fapp/jobruns');
    assert.equal(start.jobDriver.sparkSubmit.entryPoint, `s3://${fx.emu.bucket}/work/${runId}/spark/run_sql.py`);
    assert.deepEqual(start.jobDriver.sparkSubmit.entryPointArguments, [`s3://${fx.emu.bucket}/work/${runId}/spark/merge.sql`]);
    assert.equal(start.clientToken, runId);
    assert.match((await store.getBytes(`work/${runId}/spark/run_sql.py`)).toString(), /spark\.sql\(statement\)/);
    const script = (await store.getBytes(`work/${runId}/spark/merge.sql`)).toString();
    assert.equal(script.split(`\n${STATEMENT_SEPARATOR}\n`).length, 6);
    assert.match(script, /LEFT OUTER JOIN/);
    // waited until SUCCESS
    assert.deepEqual(
      requests.slice(1).map((r) => r.method),
      ['GET', 'GET'],
    );
    // manifest, counts, run record
    assert.equal(result.outputKeys[0], 'results/merge-big/b9/merged.manifest.json');
    const manifest = JSON.parse((await store.getBytes(result.outputKeys[0]!)).toString());
    assert.deepEqual(
      manifest.parts.map((p: { key: string }) => p.key),
      ['results/merge-big/b9/merged/part-00000-abc.csv', 'results/merge-big/b9/merged/part-00001-abc.csv'],
    );
    assert.equal(manifest.rows, reference.length);
    assert.deepEqual(manifest.columns, ['ID_x', 'value_x', 'value_y']);
    assert.equal(result.counts.outputRows, 6); // 4 pairs + 2 unmatched left rows
    const run = await table.getRun(runId);
    assert.equal(run?.status, 'SUCCEEDED');
    assert.equal(run?.dataset?.engineRunId, 'jr-1');
    // the email: the first rows read across the parts, the workbook with every row
    const [mail] = await fx.emu.listMail();
    assert.match(mail!.text ?? '', /Output rows: 6 \(left join\)/);
    assert.match(mail!.text ?? '', /The first 6 \(all\) rows of 6:/);
    assert.ok(mail!.attachments.some((a) => a.filename === 'merged.xlsx'));
  });
});
