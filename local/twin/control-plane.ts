/**
 * The AWS control-plane APIs of a local run that have no emulator, served on 127.0.0.1 from the
 * synthesized app, so the handlers and stages use their real SDK clients and adapters:
 *   Batch SubmitJob (REST JSON, POST /v1/submitjob): the queue and job definition must be the
 *     app's (by ARN, as the handlers send them), the definition's platform the queue's; the job
 *     goes to the local job runner with that definition.
 *   Batch TerminateJob and CancelJob (POST /v1/terminatejob, /v1/canceljob {"jobId","reason"}):
 *     the operator's `fanout cancel --local DIR`; a job not started yet fails at once, a running one
 *     gets SIGTERM (TerminateJob only: CancelJob leaves a started job alone and still succeeds).
 *   SNS Publish (query protocol): the topic must be the app's; the message goes to every
 *     subscription of the topic in the template (Lambda protocol), asynchronously, as SNS does.
 *   SSM GetParameter (JSON 1.1): the app's parameters, with their synthesized values; a missing one
 *     answers 400 ParameterNotFound, as SSM does.
 * A request the real service would refuse for a missing resource gets the service's error.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JobQueueModel, JobDefinitionModel, TwinModel } from './template';

export interface SubmittedJob {
  jobName: string;
  queue: JobQueueModel;
  definition: JobDefinitionModel;
  arraySize?: number;
  dependsOn: string[];
  environment: Record<string, string>;
  parameters: Record<string, string>;
  tags: Record<string, string>;
}

export interface ControlPlaneHandlers {
  submitJob(job: SubmittedJob): Promise<{ jobId: string }>;
  /** TerminateJob; false when there is no such job. */
  terminateJob(jobId: string, reason: string): boolean;
  /** CancelJob; false when there is no such job. */
  cancelJob(jobId: string, reason: string): boolean;
  /** A Lambda subscribed to the topic, with the SNS message (delivered asynchronously). */
  deliverSns(
    functionArn: string,
    message: { topicArn: string; messageId: string; message: string; attributes: Record<string, string> },
  ): void;
}

export interface ControlPlane {
  url: string;
  /** AWS_ENDPOINT_URL_BATCH, _SNS and _SSM for the SDK clients. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

class ServiceError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function body(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function xml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export async function startControlPlane(model: TwinModel, handlers: ControlPlaneHandlers): Promise<ControlPlane> {
  const submitJob = async (input: Record<string, unknown>) => {
    const queue = model.queues.get(String(input.jobQueue));
    if (!queue) throw new ServiceError(400, 'ClientException', `jobQueue ${String(input.jobQueue)} does not exist in the app`);
    const definition = model.jobDefinitions.get(String(input.jobDefinition));
    if (!definition)
      throw new ServiceError(400, 'ClientException', `jobDefinition ${String(input.jobDefinition)} does not exist in the app`);
    if (definition.platform !== queue.platform) {
      throw new ServiceError(
        400,
        'ClientException',
        `job definition ${definition.logicalId} is for ${definition.platform}, but queue ${queue.logicalId} runs on ${queue.platform} compute`,
      );
    }
    const overrides = (input.containerOverrides ?? {}) as { environment?: Array<{ name: string; value: string }> };
    const array = input.arrayProperties as { size?: number } | undefined;
    const job: SubmittedJob = {
      jobName: String(input.jobName),
      queue,
      definition,
      arraySize: array?.size,
      dependsOn: ((input.dependsOn ?? []) as Array<{ jobId: string }>).map((d) => d.jobId),
      environment: Object.fromEntries((overrides.environment ?? []).map((e) => [e.name, e.value])),
      parameters: (input.parameters ?? {}) as Record<string, string>,
      tags: (input.tags ?? {}) as Record<string, string>,
    };
    const { jobId } = await handlers.submitJob(job);
    return { jobArn: `arn:aws:batch:${model.names.region}:${model.names.account}:job/${jobId}`, jobName: job.jobName, jobId };
  };

  const stopJob = (operation: 'TerminateJob' | 'CancelJob', input: Record<string, unknown>) => {
    const jobId = typeof input.jobId === 'string' ? input.jobId : '';
    const reason = typeof input.reason === 'string' ? input.reason : '';
    if (!jobId || !reason) throw new ServiceError(400, 'ClientException', `${operation}: jobId and reason are required`);
    const known = operation === 'TerminateJob' ? handlers.terminateJob(jobId, reason) : handlers.cancelJob(jobId, reason);
    if (!known) throw new ServiceError(400, 'ClientException', `Job ${jobId} not found`);
    return {};
  };

  const publish = (form: URLSearchParams) => {
    const topicArn = form.get('TopicArn') ?? '';
    if (!model.topics.has(topicArn)) throw new ServiceError(404, 'NotFound', `Topic does not exist: ${topicArn}`);
    const attributes: Record<string, string> = {};
    for (let i = 1; form.has(`MessageAttributes.entry.${i}.Name`); i++) {
      attributes[form.get(`MessageAttributes.entry.${i}.Name`)!] = form.get(`MessageAttributes.entry.${i}.Value.StringValue`) ?? '';
    }
    const messageId = randomUUID();
    for (const s of model.subscriptions.filter((x) => x.topicArn === topicArn)) {
      if (s.protocol !== 'lambda')
        throw new ServiceError(500, 'InternalError', `the local run delivers only lambda subscriptions, not ${s.protocol}`);
      handlers.deliverSns(s.endpoint, { topicArn, messageId, message: form.get('Message') ?? '', attributes });
    }
    return messageId;
  };

  const getParameter = (input: { Name?: string }) => {
    const name = input.Name ?? '';
    const value = model.parameters.get(name);
    if (value === undefined) throw new ServiceError(400, 'ParameterNotFound', `Parameter ${name} not found.`);
    return {
      Parameter: {
        Name: name,
        Type: 'String',
        Value: value,
        Version: 1,
        ARN: `arn:aws:ssm:${model.names.region}:${model.names.account}:parameter${name.startsWith('/') ? '' : '/'}${name}`,
      },
    };
  };

  /** The answer to one request; computed whole before anything is written (a thrown error becomes the service's error answer). */
  const answer = async (req: IncomingMessage, text: string, target: string): Promise<{ type: string; body: string }> => {
    if (req.method === 'POST' && req.url?.startsWith('/v1/submitjob')) {
      return { type: 'application/json', body: JSON.stringify(await submitJob(JSON.parse(text) as Record<string, unknown>)) };
    }
    if (req.method === 'POST' && (req.url?.startsWith('/v1/terminatejob') || req.url?.startsWith('/v1/canceljob'))) {
      const operation = req.url.startsWith('/v1/terminatejob') ? 'TerminateJob' : 'CancelJob';
      return { type: 'application/json', body: JSON.stringify(stopJob(operation, JSON.parse(text || '{}') as Record<string, unknown>)) };
    }
    if (target === 'AmazonSSM.GetParameter') {
      return { type: 'application/x-amz-json-1.1', body: JSON.stringify(getParameter(JSON.parse(text) as { Name?: string })) };
    }
    if (new URLSearchParams(text).get('Action') === 'Publish') {
      const id = publish(new URLSearchParams(text));
      return {
        type: 'text/xml',
        body: `<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>${id}</MessageId></PublishResult><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></PublishResponse>`,
      };
    }
    throw new ServiceError(400, 'UnsupportedOperation', `the local run does not serve ${req.method} ${req.url} ${target}`);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const text = await body(req);
    const target = String(req.headers['x-amz-target'] ?? '');
    try {
      const { type, body: out } = await answer(req, text, target);
      res.writeHead(200, { 'content-type': type }).end(out);
    } catch (err) {
      const e =
        err instanceof ServiceError ? err : new ServiceError(500, 'InternalError', err instanceof Error ? err.message : String(err));
      if (target.startsWith('AmazonSSM')) {
        // JSON 1.1 protocol: the SDK raises an error named by __type (e.g. ParameterNotFound).
        res
          .writeHead(e.status, { 'content-type': 'application/x-amz-json-1.1' })
          .end(JSON.stringify({ __type: e.code, message: e.message }));
      } else if (req.url?.startsWith('/v1/')) {
        res
          .writeHead(e.status, { 'content-type': 'application/json', 'x-amzn-errortype': e.code })
          .end(JSON.stringify({ message: e.message }));
      } else {
        res
          .writeHead(e.status, { 'content-type': 'text/xml' })
          .end(
            `<ErrorResponse><Error><Type>Sender</Type><Code>${xml(e.code)}</Code><Message>${xml(e.message)}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`,
          );
      }
    }
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    env: { AWS_ENDPOINT_URL_BATCH: url, AWS_ENDPOINT_URL_SNS: url, AWS_ENDPOINT_URL_SSM: url },
    stop: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
