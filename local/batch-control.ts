/**
 * The part of the AWS Batch API that operating a run needs (TerminateJob, CancelJob), served on
 * loopback over the local job runner, so that `fanout cancel --local DIR` sends the same SDK
 * calls (BatchClient with AWS_ENDPOINT_URL_BATCH) as against a deployed stack.
 *
 *   POST /v1/terminatejob {"jobId","reason"}  a job not started yet fails at once; a running one
 *                                             gets SIGTERM in its child processes and fails
 *   POST /v1/canceljob    {"jobId","reason"}  only jobs not yet RUNNING are cancelled (as on Batch:
 *                                             a started job is left alone, the call still succeeds)
 * Unknown job ids answer 400 ClientException, as Batch does. Every request is kept in `requests`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LocalJobRunner } from './job-runner';

export interface BatchControlRequest {
  operation: 'TerminateJob' | 'CancelJob';
  jobId: string;
  reason: string;
}

export interface BatchControl {
  /** http://127.0.0.1:<port>, for AWS_ENDPOINT_URL_BATCH. */
  endpoint: string;
  readonly requests: BatchControlRequest[];
  close(): Promise<void>;
}

const OPERATIONS: Record<string, BatchControlRequest['operation']> = {
  '/v1/terminatejob': 'TerminateJob',
  '/v1/canceljob': 'CancelJob',
};

function reply(res: ServerResponse, status: number, body: object, errorType?: string): void {
  res.writeHead(status, { 'content-type': 'application/json', ...(errorType ? { 'x-amzn-errortype': errorType } : {}) });
  res.end(JSON.stringify(body));
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

export async function startBatchControl(runner: LocalJobRunner): Promise<BatchControl> {
  const requests: BatchControlRequest[] = [];
  const server: Server = createServer((req, res) => {
    const operation = req.method === 'POST' ? OPERATIONS[req.url ?? ''] : undefined;
    if (!operation) return reply(res, 404, { message: `not served here: ${req.method} ${req.url}` }, 'ClientException');
    readJson(req).then(
      (body) => {
        const jobId = typeof body.jobId === 'string' ? body.jobId : '';
        const reason = typeof body.reason === 'string' ? body.reason : '';
        if (!jobId || !reason) return reply(res, 400, { message: 'jobId and reason are required' }, 'ClientException');
        requests.push({ operation, jobId, reason });
        const job = runner.list().find((j) => j.jobId === jobId);
        if (!job) return reply(res, 400, { message: `Job ${jobId} not found` }, 'ClientException');
        if (operation === 'TerminateJob' || job.state !== 'RUNNING') runner.terminate(jobId, reason);
        reply(res, 200, {});
      },
      (err: unknown) => reply(res, 400, { message: `bad request body: ${String(err)}` }, 'ClientException'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
