import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { configuredEndpoint, createAwsClients } from '../../../runtime/adapters/clients';

async function endpointUrl(config: { endpoint?: () => Promise<{ protocol: string; hostname: string; port?: number; path: string }> }) {
  assert.ok(config.endpoint, 'no endpoint configured');
  const e = await config.endpoint();
  return `${e.protocol}//${e.hostname}${e.port ? `:${e.port}` : ''}${e.path === '/' ? '' : e.path}`;
}

describe('configuredEndpoint', () => {
  it('prefers AWS_ENDPOINT_URL_<SERVICE> over AWS_ENDPOINT_URL', () => {
    const env = { AWS_ENDPOINT_URL: 'http://127.0.0.1:1', AWS_ENDPOINT_URL_DYNAMODB: 'http://127.0.0.1:2' };
    assert.equal(configuredEndpoint(env, 'DynamoDB'), 'http://127.0.0.1:2');
    assert.equal(configuredEndpoint(env, 'S3'), 'http://127.0.0.1:1');
    assert.equal(configuredEndpoint({}, 'S3'), undefined);
  });

  it('uses the service id in upper case, as the SDK does (SESv2 -> AWS_ENDPOINT_URL_SESV2)', () => {
    assert.equal(configuredEndpoint({ AWS_ENDPOINT_URL_SESV2: 'http://127.0.0.1:3' }, 'SESv2'), 'http://127.0.0.1:3');
  });

  it('ignores configured endpoints when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true', () => {
    assert.equal(
      configuredEndpoint({ AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:4', AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: 'true' }, 'S3'),
      undefined,
    );
  });
});

describe('createAwsClients', () => {
  const env = {
    AWS_REGION: 'eu-west-1',
    AWS_ACCESS_KEY_ID: 'AKIDLOCAL',
    AWS_SECRET_ACCESS_KEY: 'secret',
    AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:4568',
    AWS_ENDPOINT_URL_DYNAMODB: 'http://127.0.0.1:4567',
    AWS_ENDPOINT_URL_SESV2: 'http://127.0.0.1:8005',
  };

  it('points each client at the endpoint, region and credentials of the env given (not process.env)', async () => {
    // given env values that process.env does not have
    assert.equal(process.env.AWS_ENDPOINT_URL_S3, undefined);
    const clients = createAwsClients(env);

    // then
    assert.equal(await endpointUrl(clients.s3.config), 'http://127.0.0.1:4568');
    assert.equal(await endpointUrl(clients.dynamo.config), 'http://127.0.0.1:4567');
    assert.equal(await endpointUrl(clients.ses.config), 'http://127.0.0.1:8005');
    assert.equal(await clients.s3.config.region(), 'eu-west-1');
    assert.equal((await clients.dynamo.config.credentials()).accessKeyId, 'AKIDLOCAL');
  });

  it('talks to an S3 emulator path-style, with checksums only where required', async () => {
    const { s3 } = createAwsClients(env);
    assert.equal(s3.config.forcePathStyle, true);
    assert.equal(await s3.config.requestChecksumCalculation(), 'WHEN_REQUIRED');
    assert.equal(await s3.config.responseChecksumValidation(), 'WHEN_REQUIRED');
  });

  it('leaves S3 on its defaults when no endpoint is configured', async () => {
    const { s3 } = createAwsClients({ AWS_REGION: 'eu-west-1' });
    assert.notEqual(s3.config.forcePathStyle, true);
    assert.equal(await s3.config.requestChecksumCalculation(), 'WHEN_SUPPORTED');
  });

  it('creates each client once, on first use', () => {
    const clients = createAwsClients(env);
    assert.equal(clients.s3, clients.s3);
    assert.equal(clients.dynamo, clients.dynamo);
    assert.equal(clients.batch, clients.batch);
    assert.equal(clients.sns, clients.sns);
  });
});
