/**
 * The IAM check of a local run: every AWS SDK call a handler or job makes is recorded with its
 * principal (the role of that Lambda or job definition in the synthesized app), turned into the
 * IAM request(s) AWS would authorize (action, resource ARN, request context), and evaluated with
 * @cloud-copilot/iam-simulate against that role's identity policies and the resource policy of the
 * bucket, topic or key. Evaluations run while the run goes on (cached per distinct request); the
 * ledger says at the end how many calls were made and which were denied, naming the call, the
 * principal and the missing permission.
 *
 * What this does not model (see also docs/local-twin.md): session policies, permission boundaries,
 * SCPs and RCPs (none in this app); AWS-managed policies attached to a role (their documents are
 * not in the template; no role the runtime uses has one); VPC endpoint policies; S3 object
 * ownership/ACLs; KMS grants; the permissions ECS itself uses (image pull, log delivery), except
 * the secrets a job definition's execution role reads at start; condition keys iam-simulate does
 * not know for an action are treated as absent, as AWS would for a key the service never sets.
 */
import { runSimulation, type Simulation } from '@cloud-copilot/iam-simulate';
import type { SdkCall } from '../../runtime/adapters/clients';
import type { PolicyDocument, TwinModel } from './template';

export interface Principal {
  /** Role ARN in the twin's account. */
  roleArn: string;
  /** Who made the call, for messages: "Lambda on-intake", "job split". */
  label: string;
  /** The pipeline whose run made the call (for the usage report). */
  pipeline?: string;
}

export interface IamRequest {
  action: string;
  resource: string;
  context?: Record<string, string | string[]>;
}

export interface DeniedCall {
  principal: string;
  roleArn: string;
  call: string;
  action: string;
  resource: string;
  result: string;
}

export interface IamSummary {
  calls: number;
  denied: number;
  deniedCalls: DeniedCall[];
  /** role ARN → actions used (allowed) in this run. */
  used: Map<string, Set<string>>;
}

const PREFIX: Record<string, string> = {
  S3Client: 's3',
  DynamoDBClient: 'dynamodb',
  SESv2Client: 'ses',
  BatchClient: 'batch',
  SNSClient: 'sns',
  SSMClient: 'ssm',
  SecretsManagerClient: 'secretsmanager',
  EMRServerlessClient: 'emr-serverless',
  SchedulerClient: 'scheduler',
  CloudFormationClient: 'cloudformation',
};

/** DynamoDB document-client commands and the table actions they are. */
const DOCUMENT_COMMANDS: Record<string, string> = {
  Put: 'PutItem',
  Get: 'GetItem',
  Update: 'UpdateItem',
  Delete: 'DeleteItem',
  Query: 'Query',
  Scan: 'Scan',
  BatchWrite: 'BatchWriteItem',
  BatchGet: 'BatchGetItem',
  TransactWrite: 'TransactWriteItems',
  TransactGet: 'TransactGetItems',
};

const S3_OBJECT_ACTIONS: Record<string, string> = {
  PutObject: 's3:PutObject',
  CreateMultipartUpload: 's3:PutObject',
  UploadPart: 's3:PutObject',
  CompleteMultipartUpload: 's3:PutObject',
  AbortMultipartUpload: 's3:AbortMultipartUpload',
  GetObject: 's3:GetObject',
  HeadObject: 's3:GetObject',
  DeleteObject: 's3:DeleteObject',
  CopyObject: 's3:PutObject',
};

export class UnmappedCallError extends Error {
  override readonly name = 'UnmappedCallError';
}

/** The sender's SES identity: the address's own identity if the app has it, else its domain's. */
function sesIdentity(model: TwinModel, from: string): string {
  const address = (/<([^>]+)>/.exec(from)?.[1] ?? from).trim().toLowerCase();
  const domain = address.split('@')[1] ?? address;
  const { region, account } = model.names;
  return model.emailIdentities.get(address) ?? model.emailIdentities.get(domain) ?? `arn:aws:ses:${region}:${account}:identity/${domain}`;
}

/** The IAM requests AWS authorizes for one SDK call. */
export function iamRequestsFor(model: TwinModel, call: SdkCall): IamRequest[] {
  const { region, account } = model.names;
  const prefix = PREFIX[call.client];
  const op = call.command.replace(/Command$/, '');
  const input = call.input;
  const s = (k: string) => (typeof input[k] === 'string' ? (input[k] as string) : undefined);
  switch (prefix) {
    case 's3': {
      const bucket = `arn:aws:s3:::${s('Bucket') ?? ''}`;
      if (op === 'ListObjectsV2' || op === 'ListObjects' || op === 'HeadBucket') {
        return [{ action: 's3:ListBucket', resource: bucket, context: s('Prefix') !== undefined ? { 's3:prefix': s('Prefix')! } : {} }];
      }
      if (op === 'DeleteObjects') {
        return ((input.DeleteKeys ?? []) as string[]).map((k) => ({ action: 's3:DeleteObject', resource: `${bucket}/${k}` }));
      }
      const action = S3_OBJECT_ACTIONS[op];
      if (action) return [{ action, resource: `${bucket}/${s('Key') ?? ''}` }];
      break;
    }
    case 'dynamodb': {
      const action = `dynamodb:${DOCUMENT_COMMANDS[op] ?? op}`;
      const tables = s('TableName') !== undefined ? [s('TableName')!] : ((input.RequestItems ?? []) as string[]);
      if (tables.length > 0) return tables.map((t) => ({ action, resource: `arn:aws:dynamodb:${region}:${account}:table/${t}` }));
      break;
    }
    case 'ses':
      if (op === 'SendEmail') return [{ action: 'ses:SendEmail', resource: sesIdentity(model, s('FromEmailAddress') ?? '') }];
      break;
    case 'batch':
      if (op === 'SubmitJob') {
        const out: IamRequest[] = [
          { action: 'batch:SubmitJob', resource: s('jobQueue') ?? '' },
          { action: 'batch:SubmitJob', resource: s('jobDefinition') ?? '' },
        ];
        const tags = (input.tags ?? []) as string[];
        // Tags on SubmitJob are authorized as batch:TagResource on the new job.
        if (tags.length > 0)
          out.push({
            action: 'batch:TagResource',
            resource: `arn:aws:batch:${region}:${account}:job/twin-new-job`,
            context: { 'aws:TagKeys': tags },
          });
        return out;
      }
      break;
    case 'sns':
      if (op === 'Publish') {
        const topic = s('TopicArn') ?? '';
        const key = model.topics.get(topic)?.kmsKeyArn;
        // Publishing to an encrypted topic: SNS asks KMS for a data key with the publisher's permissions.
        const kms: IamRequest[] = key
          ? [
              { action: 'kms:GenerateDataKey', resource: key },
              { action: 'kms:Decrypt', resource: key },
            ]
          : [];
        return [{ action: 'sns:Publish', resource: topic }, ...kms];
      }
      break;
    case 'ssm':
      if (op === 'GetParameter' || op === 'GetParameters') {
        const name = s('Name') ?? '';
        return [{ action: `ssm:${op}`, resource: `arn:aws:ssm:${region}:${account}:parameter${name.startsWith('/') ? '' : '/'}${name}` }];
      }
      break;
    case 'secretsmanager':
      if (op === 'GetSecretValue') {
        const id = s('SecretId') ?? '';
        return [
          {
            action: 'secretsmanager:GetSecretValue',
            resource: id.startsWith('arn:') ? id : `arn:aws:secretsmanager:${region}:${account}:secret:${id}-AbCdEf`,
          },
        ];
      }
      break;
  }
  throw new UnmappedCallError(
    `the local run does not know which IAM action and resource ${call.client} ${call.command} needs: add it to local/twin/iam.ts (input: ${JSON.stringify(input).slice(0, 200)})`,
  );
}

/** The resource policy that applies to a resource ARN (bucket policy for its objects too). */
function resourcePolicyFor(model: TwinModel, resource: string): PolicyDocument | undefined {
  const direct = model.resourcePolicies.get(resource);
  if (direct) return direct;
  const bucket = /^(arn:aws:s3:::[^/]+)\//.exec(resource)?.[1];
  return bucket ? model.resourcePolicies.get(bucket) : undefined;
}

/** An S3 object ARN: `arn:aws:s3:::bucket/key`. */
const S3_OBJECT = /^(arn:aws:s3:::[^/]+)\/./;

/** Policy ARN patterns as regular expressions (`*` any run of characters, `?` one), compiled once. */
const patternCache = new Map<string, RegExp>();
function patternMatches(pattern: string, arn: string): boolean {
  let re = patternCache.get(pattern);
  if (!re) {
    re = new RegExp(
      `^${pattern
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '.*')
        .replace(/\?/g, '.')}$`,
    );
    patternCache.set(pattern, re);
  }
  return re.test(arn);
}

/**
 * What a request's resource stands for in its evaluation. IAM compares an S3 object's ARN with the
 * `Resource`/`NotResource` patterns of the policies (a glob over `bucket/key`) and with nothing
 * else (no resource-derived condition key is supplied), so two keys that match the same patterns
 * of the role's policies and the bucket policy get the same answer: they share one evaluation (a
 * run's many result parts are evaluated once per pattern set, not once each). Other ARNs, and
 * patterns with policy variables, stand for themselves.
 */
export function resourceClass(model: TwinModel, roleArn: string, resource: string): string {
  const bucket = S3_OBJECT.exec(resource)?.[1];
  const role = model.roles.get(roleArn);
  if (!bucket || !role) return resource;
  const patterns: string[] = [];
  for (const doc of [...role.policies.map((p) => p.document), resourcePolicyFor(model, resource)]) {
    for (const statement of doc?.Statement ?? []) {
      const s = statement as Record<string, unknown>;
      for (const field of [s.Resource, s.NotResource]) {
        for (const p of Array.isArray(field) ? field : [field]) if (typeof p === 'string') patterns.push(p);
      }
    }
  }
  if (patterns.some((p) => p.includes('${'))) return resource;
  const matched = [...new Set(patterns.filter((p) => patternMatches(p, resource)))].sort();
  return `${bucket}/<a key matching ${JSON.stringify(matched)}>`;
}

/** Evaluates one request for a role: 'Allowed', 'ImplicitlyDenied', 'ExplicitlyDenied' or an error text. */
export async function evaluate(model: TwinModel, roleArn: string, req: IamRequest): Promise<string> {
  const role = model.roles.get(roleArn);
  if (!role) return `no role ${roleArn} in the app`;
  const simulation: Simulation = {
    request: {
      principal: roleArn,
      action: req.action,
      resource: { resource: req.resource, accountId: model.names.account },
      // On AWS the SDK always uses TLS; the local emulators are reached over plain HTTP on loopback.
      contextVariables: {
        'aws:SecureTransport': 'true',
        'aws:PrincipalArn': roleArn,
        'aws:PrincipalAccount': model.names.account,
        ...req.context,
      },
    },
    identityPolicies: role.policies.map((p) => ({ name: p.name, policy: p.document })),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: resourcePolicyFor(model, req.resource),
  };
  const result = await runSimulation(simulation, {});
  if (result.resultType === 'error') return `not evaluable: ${JSON.stringify(result.errors).slice(0, 300)}`;
  return result.overallResult;
}

interface Evaluated {
  principal: Principal;
  call: SdkCall;
  requests: Array<IamRequest & { result: string }>;
}

/** Collects a run's calls and their verdicts. */
export class IamLedger {
  private readonly cache = new Map<string, Promise<string>>();
  private readonly pending: Promise<Evaluated>[] = [];

  constructor(private readonly model: TwinModel) {}

  /** Records one call; its evaluation runs in the background. */
  record(principal: Principal, call: SdkCall): void {
    this.pending.push(this.evaluateCall(principal, call));
  }

  /** Records a request the platform makes with a role (e.g. ECS reading a job's secret with the execution role). */
  recordPlatform(principal: Principal, req: IamRequest, what: string): void {
    const call: SdkCall = { client: 'platform', command: what, input: {} };
    this.pending.push(this.evaluateRequests(principal, call, [req]));
  }

  private async evaluateCall(principal: Principal, call: SdkCall): Promise<Evaluated> {
    let requests: IamRequest[];
    try {
      requests = iamRequestsFor(this.model, call);
    } catch (err) {
      return {
        principal,
        call,
        requests: [{ action: `${call.client} ${call.command}`, resource: '?', result: err instanceof Error ? err.message : String(err) }],
      };
    }
    return this.evaluateRequests(principal, call, requests);
  }

  private async evaluateRequests(principal: Principal, call: SdkCall, requests: IamRequest[]): Promise<Evaluated> {
    const results = await Promise.all(
      requests.map((req) => {
        const key = JSON.stringify([
          principal.roleArn,
          req.action,
          resourceClass(this.model, principal.roleArn, req.resource),
          req.context ?? {},
        ]);
        let p = this.cache.get(key);
        if (!p) {
          p = evaluate(this.model, principal.roleArn, req).catch(
            (err: unknown) => `not evaluable: ${err instanceof Error ? err.message : String(err)}`,
          );
          this.cache.set(key, p);
        }
        return p;
      }),
    );
    return { principal, call, requests: requests.map((r, i) => ({ ...r, result: results[i]! })) };
  }

  /** Waits for every evaluation and sums up. */
  async summary(): Promise<IamSummary> {
    const all = await Promise.all(this.pending);
    const deniedCalls: DeniedCall[] = [];
    const used = new Map<string, Set<string>>();
    let denied = 0;
    for (const e of all) {
      let callDenied = false;
      for (const r of e.requests) {
        if (r.result === 'Allowed') {
          if (!used.has(e.principal.roleArn)) used.set(e.principal.roleArn, new Set());
          used.get(e.principal.roleArn)!.add(r.action);
          continue;
        }
        callDenied = true;
        const call = `${e.call.client.replace(/Client$/, '')} ${e.call.command.replace(/Command$/, '')}`;
        if (!deniedCalls.some((d) => d.roleArn === e.principal.roleArn && d.action === r.action && d.resource === r.resource)) {
          deniedCalls.push({
            principal: e.principal.label,
            roleArn: e.principal.roleArn,
            call,
            action: r.action,
            resource: r.resource,
            result: r.result,
          });
        }
      }
      if (callDenied) denied++;
    }
    return { calls: all.length, denied, deniedCalls, used };
  }
}

/** One line per denied permission: the call, who made it, and what is missing. */
export function describeDenials(denied: DeniedCall[]): string {
  return denied
    .map(
      (d) => `${d.call} by ${d.principal} (${d.roleArn.split('/').pop()}) was denied (${d.result}): missing ${d.action} on ${d.resource}`,
    )
    .join('\n');
}
