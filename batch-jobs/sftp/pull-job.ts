/**
 * The `sftp-pull` job (the container command `sftp-pull`, submitted by an EventBridge Scheduler
 * schedule per source): one pull of the source in FANOUT_SOURCE. Exit 0 when every file was
 * copied or skipped; BAD_CONFIG (not retried) when the host key or the user key is refused or
 * the environment is wrong; INTERNAL (retried) when the connection failed or a file could not
 * be copied: the retry copies what is left, the ledger skips what was copied.
 *
 * Environment: FANOUT_BUCKET, FANOUT_TABLE, FANOUT_SOURCE (the source's config as JSON),
 * FANOUT_PIPELINE_SHAPE (items | files), and the source's key variable (a Batch secret).
 */
import { createAwsClients } from '../../runtime/adapters/clients';
import { DynamoSourceLedger } from '../../runtime/adapters/dynamo-source-ledger';
import { S3ObjectStore } from '../../runtime/adapters/s3-object-store';
import { PIPELINE_SHAPES, type PipelineShape } from '../../runtime/config/schema';
import { sftpSourceSchema } from '../../runtime/config/sources-schema';
import { requireEnv, type Env } from '../../runtime/env';
import { EnvironmentError, errorMessage, ExitCode } from '../../runtime/errors';
import { createLogger } from '../../runtime/log';
import { runPull } from './pull';
import { SftpConfigError, SftpSession } from './sftp-session';

export async function runSftpPullJob(env: Env): Promise<number> {
  const log = createLogger({ fields: { stage: 'sftp-pull' } });
  let work: () => Promise<number>;
  try {
    let raw: unknown;
    try {
      raw = JSON.parse(requireEnv(env, 'FANOUT_SOURCE', 'the SFTP source config, set by the job definition'));
    } catch (err) {
      if (err instanceof EnvironmentError) throw err;
      throw new EnvironmentError(`FANOUT_SOURCE is not valid JSON: ${errorMessage(err)}`);
    }
    const parsed = sftpSourceSchema.safeParse(raw);
    if (!parsed.success)
      throw new EnvironmentError(
        `FANOUT_SOURCE is not a valid source: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
      );
    const source = parsed.data;
    const shape = requireEnv(env, 'FANOUT_PIPELINE_SHAPE', 'the shape of the pipeline the source feeds') as PipelineShape;
    if (!PIPELINE_SHAPES.includes(shape))
      throw new EnvironmentError(`FANOUT_PIPELINE_SHAPE "${shape}" is not one of ${PIPELINE_SHAPES.join(', ')}`);
    const privateKey = requireEnv(
      env,
      source.privateKey.env,
      `the private key of SFTP source ${source.name} (secret ${source.privateKey.secretName ?? '-'})`,
    );
    const clients = createAwsClients(env);
    const store = new S3ObjectStore(clients.s3, requireEnv(env, 'FANOUT_BUCKET', 'the pipeline bucket name'));
    const ledger = new DynamoSourceLedger(clients.dynamo, requireEnv(env, 'FANOUT_TABLE', 'the run table name'));
    work = async () => {
      const session = await SftpSession.connect({ ...source, privateKey, label: source.name });
      try {
        const r = await runPull(source, shape, session, { store, ledger, log });
        return r.failed.length > 0 ? ExitCode.INTERNAL : ExitCode.OK;
      } finally {
        session.close();
      }
    };
  } catch (err) {
    log.error('cannot start: bad environment', { error: errorMessage(err) });
    return ExitCode.BAD_CONFIG;
  }
  try {
    return await work();
  } catch (err) {
    log.error('sftp-pull failed', { error: errorMessage(err) });
    return err instanceof SftpConfigError ? ExitCode.BAD_CONFIG : ExitCode.INTERNAL;
  }
}
