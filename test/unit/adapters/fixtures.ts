/**
 * Test fixtures of the adapter tests: the real emulators in a temporary folder, and a request
 * handler that captures what an SDK client would send (for Batch and SNS, which have no emulator).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAwsClients, type AwsClients } from '../../../runtime/adapters/clients';
import { startEmulators, type LocalEmulators } from '../../../local/emulators';

export interface EmulatorFixture {
  emu: LocalEmulators;
  clients: AwsClients;
  close(): Promise<void>;
}

export async function startEmulatorFixture(): Promise<EmulatorFixture> {
  const dataDir = await mkdtemp(join(tmpdir(), 'fanout-adapters-'));
  const emu = await startEmulators({ dataDir });
  const clients = createAwsClients(emu.env);
  return {
    emu,
    clients,
    async close() {
      clients.s3.destroy();
      clients.dynamo.destroy();
      clients.ses.destroy();
      await emu.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export interface CapturedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

function bodyText(body: unknown): string {
  if (body === undefined || body === null) return '';
  if (typeof body === 'string') return body;
  // A view of the bytes, not Buffer.from(body): the SDK's body may warn on string conversions.
  const bytes = body as Uint8Array;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
}

/**
 * A client `requestHandler` that records each serialized request and answers with a canned
 * HTTP response, so a test can check the request against the API's documented shape.
 */
export function capturingHandler(response: { statusCode?: number; headers?: Record<string, string>; body: string }) {
  const requests: CapturedRequest[] = [];
  const handler = {
    async handle(request: { method: string; path: string; headers: Record<string, string>; body?: unknown }) {
      const body = request.body;
      requests.push({
        method: request.method,
        path: request.path,
        headers: request.headers,
        body: bodyText(body),
      });
      return {
        response: {
          statusCode: response.statusCode ?? 200,
          headers: { 'x-amzn-requestid': 'test-request', ...(response.headers ?? {}) },
          body: Buffer.from(response.body),
        },
      };
    },
    updateHttpClientConfig() {},
    httpHandlerConfigs() {
      return {};
    },
  };
  return { handler, requests };
}

/** Static credentials and region for clients whose requests never leave the process. */
export const offlineClientConfig = {
  region: 'us-east-1',
  credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret' },
} as const;

/**
 * A client of class `Client` whose requests are captured by `capturingHandler(response)`, with
 * offline credentials: nothing leaves the process.
 */
export function capturingClient<C>(
  Client: new (config: typeof offlineClientConfig & { requestHandler: never }) => C,
  response: Parameters<typeof capturingHandler>[0],
): { client: C; requests: CapturedRequest[] } {
  const capture = capturingHandler(response);
  return { client: new Client({ ...offlineClientConfig, requestHandler: capture.handler as never }), requests: capture.requests };
}
