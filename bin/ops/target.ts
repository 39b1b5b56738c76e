/**
 * Where the operating commands act: a deployed stack (`--stack <appName>`: the bucket, the run
 * table and the split-done topic from the stacks' CloudFormation outputs, credentials from the
 * SDK's usual chain) or a kept local run (`--local DIR`: the emulators of the `fanout run --keep
 * DIR` process while it lives, otherwise emulators started here on DIR). Both give the same
 * ports on the same SDK clients; only the endpoints differ.
 */
import { CloudFormationClient, DescribeStacksCommand, type Output } from '@aws-sdk/client-cloudformation';
import { createAwsClients, type AwsClients } from '../../runtime/adapters/clients';
import { DynamoRunTable } from '../../runtime/adapters/dynamo-run-table';
import { S3ObjectStore } from '../../runtime/adapters/s3-object-store';
import { SnsSplitDoneNotifier } from '../../runtime/adapters/sns-notifier';
import type { Env } from '../../runtime/env';
import { errorMessage } from '../../runtime/errors';
import type { SplitDoneNotifier } from '../../runtime/ports';
import { STACK_OUTPUTS, stackNames } from '../../lib/stack-output-names';
import { startEmulators } from '../../local/emulators';
import { isKeptDir, readLiveEndpoints } from '../../local/kept-run';
import { OpsError } from './ops-error';

export interface OpsTarget {
  /** For messages: "stack batch-fanout (eu-west-1)" or "local run kept in DIR". */
  describe: string;
  kind: 'stack' | 'local';
  env: Env;
  clients: AwsClients;
  store: S3ObjectStore;
  table: DynamoRunTable;
  /** Split's announcement (SNS on AWS); undefined for a kept local run, whose redrive runs its own stack. */
  notifier?: SplitDoneNotifier;
  /** A local run process is serving this kept folder (its jobs can be terminated). */
  live: boolean;
  /** The kept folder (local only). */
  dir?: string;
  close(): Promise<void>;
}

export interface TargetOptions {
  stack?: string;
  local?: string;
  /** The environment (credentials chain, region). @default process.env */
  env?: Env;
  /** A CloudFormation client (tests capture its requests). */
  cloudFormation?: CloudFormationClient;
}

function outputOf(outputs: Output[] | undefined, key: string, stack: string): string {
  const v = outputs?.find((o) => o.OutputKey === key)?.OutputValue;
  if (!v) {
    throw new OpsError(
      `stack ${stack} has no output ${key}: it was deployed by an older version of batch-fanout; deploy again (npx cdk deploy --all)`,
      2,
    );
  }
  return v;
}

/** Why the SDK could not call AWS, for a person: no credentials, no region, or no such stack. */
export function describeAwsFailure(err: unknown, stack: string, region: string | undefined): OpsError {
  const name = err instanceof Error ? err.name : '';
  const msg = errorMessage(err);
  if (name === 'CredentialsProviderError' || /credential/i.test(msg)) {
    return new OpsError(
      `no AWS credentials found for stack ${stack}: set AWS_PROFILE (or run aws sso login / aws configure), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (${msg})`,
      2,
    );
  }
  if (/region is missing/i.test(msg)) {
    return new OpsError(`no AWS region for stack ${stack}: set AWS_REGION (or a region in your AWS profile)`, 2);
  }
  if (name === 'ValidationError' && /does not exist/i.test(msg)) {
    return new OpsError(
      `stack ${stack} is not deployed in ${region ?? 'this region'} (deploy it with npx cdk deploy --all, or check AWS_REGION / --stack)`,
      2,
    );
  }
  if (name === 'AccessDenied' || name === 'AccessDeniedException') {
    return new OpsError(`the AWS credentials in use may not read stack ${stack}: ${msg}`, 2);
  }
  return new OpsError(`could not read stack ${stack}: ${msg}`, 1);
}

async function stackTarget(appName: string, env: Env, cf?: CloudFormationClient): Promise<OpsTarget> {
  const names = stackNames(appName);
  const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  const client = cf ?? new CloudFormationClient(region ? { region } : {});
  const outputs = async (stack: string) => {
    try {
      const res = await client.send(new DescribeStacksCommand({ StackName: stack }));
      return res.Stacks?.[0]?.Outputs;
    } catch (err) {
      throw describeAwsFailure(err, stack, region ?? (await client.config.region().catch(() => undefined)));
    }
  };
  const [data, compute] = await Promise.all([outputs(names.data), outputs(names.compute)]);
  const bucket = outputOf(data, STACK_OUTPUTS.bucket, names.data);
  const tableName = outputOf(data, STACK_OUTPUTS.table, names.data);
  const topic = outputOf(compute, STACK_OUTPUTS.splitDoneTopic, names.compute);
  const clients = createAwsClients(env);
  return {
    describe: `stack ${appName}${region ? ` (${region})` : ''}`,
    kind: 'stack',
    env,
    clients,
    store: new S3ObjectStore(clients.s3, bucket),
    table: new DynamoRunTable(clients.dynamo, tableName),
    notifier: new SnsSplitDoneNotifier(clients.sns, topic),
    live: true,
    close: async () => client.destroy(),
  };
}

async function localTarget(dir: string): Promise<OpsTarget> {
  const live = readLiveEndpoints(dir);
  if (live) {
    const clients = createAwsClients(live.env);
    return {
      describe: `local run kept in ${dir} (running, pid ${live.pid})`,
      kind: 'local',
      env: live.env,
      clients,
      store: new S3ObjectStore(clients.s3, live.bucket),
      table: new DynamoRunTable(clients.dynamo, live.table),
      live: true,
      dir,
      close: async () => undefined,
    };
  }
  if (!isKeptDir(dir)) {
    throw new OpsError(`${dir} holds no kept local run: start one with npx fanout run <file> --pipeline <name> --keep ${dir}`, 2);
  }
  const emulators = await startEmulators({ dataDir: dir, persist: true });
  const clients = createAwsClients(emulators.env);
  return {
    describe: `local run kept in ${dir}`,
    kind: 'local',
    env: emulators.env,
    clients,
    store: new S3ObjectStore(clients.s3, emulators.bucket),
    table: new DynamoRunTable(clients.dynamo, emulators.table),
    live: false,
    dir,
    close: () => emulators.stop(),
  };
}

export async function openTarget(opts: TargetOptions): Promise<OpsTarget> {
  if (opts.stack && opts.local) throw new OpsError('give --stack or --local, not both', 2);
  if (opts.stack) return stackTarget(opts.stack, opts.env ?? process.env, opts.cloudFormation);
  if (opts.local) return localTarget(opts.local);
  throw new OpsError(
    'say where the run is: --stack <appName> (a deployed stack) or --local DIR (a run kept with fanout run --keep DIR)',
    2,
  );
}
