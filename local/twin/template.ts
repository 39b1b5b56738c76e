/**
 * Reads the synthesized CloudFormation templates of the app (data and compute stacks) into the
 * model a local run is driven by: job definitions, queues and their compute, Lambdas with their
 * environment and role, S3 notification filters, SNS subscriptions, EventBridge rules, SSM
 * parameters, and the IAM identity and resource policies.
 *
 * Intrinsic functions are resolved as CloudFormation would, with the physical names a local run
 * gives the resources: the pipeline bucket and run table are the emulators', every other resource
 * gets an ARN built from its logical id in the twin's account and region. A value the twin cannot
 * resolve, or a resource it cannot interpret, is a TemplateError naming the resource and property.
 */

export class TemplateError extends Error {
  override readonly name = 'TemplateError';
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface CfnResource {
  Type: string;
  Properties?: Record<string, Json>;
  Metadata?: Record<string, Json>;
}

export interface CfnTemplate {
  Resources?: Record<string, CfnResource>;
  Outputs?: Record<string, { Value: Json; Export?: { Name: Json } }>;
}

/** The two stacks of the app, by role. */
export interface AppTemplates {
  data: { stackName: string; template: CfnTemplate };
  compute: { stackName: string; template: CfnTemplate };
}

export interface TwinNames {
  account: string;
  region: string;
  /** Physical name of the data stack's pipeline bucket (the S3 emulator's bucket). */
  bucket: string;
  /** Physical name of the run table (the DynamoDB emulator's table). */
  table: string;
}

/** One `evaluateOnExit` condition, as in the job definition. */
export interface EvaluateOnExit {
  action: 'RETRY' | 'EXIT';
  onStatusReason?: string;
  onReason?: string;
  onExitCode?: string;
}

export interface JobDefinitionModel {
  logicalId: string;
  arn: string;
  /** Construct path (for messages). */
  path: string;
  platform: 'FARGATE' | 'EC2';
  command: string[];
  environment: Record<string, string>;
  /** Secrets by environment name: the Secrets Manager ARN (or name) ECS reads at start. */
  secrets: Record<string, string>;
  attempts: number;
  evaluateOnExit: EvaluateOnExit[];
  /** attemptDurationSeconds; undefined: no timeout. */
  timeoutSeconds?: number;
  vcpus: number;
  memoryMiB: number;
  jobRoleArn?: string;
  executionRoleArn?: string;
}

export interface JobQueueModel {
  logicalId: string;
  arn: string;
  /** The platform of its compute environments (a queue serves one). */
  platform: 'FARGATE' | 'EC2';
  computeEnvironments: string[];
}

export interface LambdaModel {
  logicalId: string;
  arn: string;
  path: string;
  handler: string;
  environment: Record<string, string>;
  roleArn: string;
}

export interface S3NotificationModel {
  bucket: string;
  events: string[];
  prefix: string;
  suffix: string;
  functionArn: string;
}

export interface SnsSubscriptionModel {
  topicArn: string;
  protocol: string;
  endpoint: string;
}

export interface RuleModel {
  logicalId: string;
  pattern: Json;
  targets: string[];
}

export interface PolicyDocument {
  Version?: string;
  Statement: Json[];
}

export interface RoleModel {
  logicalId: string;
  arn: string;
  path: string;
  /** Inline and managed (customer) policies attached to the role. */
  policies: Array<{ name: string; document: PolicyDocument }>;
  /** AWS-managed policy ARNs attached (not evaluated: their documents are not in the template). */
  awsManagedPolicies: string[];
}

export interface TwinModel {
  names: TwinNames;
  jobDefinitions: Map<string, JobDefinitionModel>;
  queues: Map<string, JobQueueModel>;
  lambdas: Map<string, LambdaModel>;
  notifications: S3NotificationModel[];
  subscriptions: SnsSubscriptionModel[];
  topics: Map<string, { arn: string; kmsKeyArn?: string }>;
  rules: RuleModel[];
  /** Scheduled EventBridge rules: read, not run (a local run does not keep time). */
  schedules: Array<{ logicalId: string; expression: string }>;
  parameters: Map<string, string>;
  roles: Map<string, RoleModel>;
  /** Resource policies by the ARN of their resource (bucket, topic, key). */
  resourcePolicies: Map<string, PolicyDocument>;
  /** SES identities by name (address or domain) → ARN. */
  emailIdentities: Map<string, string>;
  /** The stacks' CloudFormation outputs by key, resolved when asked for (stackOutput). */
  outputs: Map<string, () => string>;
}

/** A CloudFormation output of the app's stacks (what `fanout ... --stack` reads); missing is a TemplateError. */
export function stackOutput(model: TwinModel, key: string): string {
  const value = model.outputs.get(key);
  if (!value) throw new TemplateError(`no stack of the app has the output ${key} (outputs: ${[...model.outputs.keys()].join(', ')})`);
  return value();
}

type Stack = { stackName: string; template: CfnTemplate; kind: 'data' | 'compute' };

/** Resolves intrinsic functions of one stack; imports resolve through the other stack's exports. */
class Resolver {
  private readonly exports = new Map<string, { stack: Stack; value: Json }>();

  constructor(
    stacks: Stack[],
    private readonly names: TwinNames,
  ) {
    for (const stack of stacks) {
      for (const output of Object.values(stack.template.Outputs ?? {})) {
        if (output.Export && typeof output.Export.Name === 'string') this.exports.set(output.Export.Name, { stack, value: output.Value });
      }
    }
  }

  private resource(stack: Stack, id: string, where: string): CfnResource {
    const r = stack.template.Resources?.[id];
    if (!r) throw new TemplateError(`${where}: refers to ${id}, which is not a resource of ${stack.stackName}`);
    return r;
  }

  private physicalName(stack: Stack, id: string, r: CfnResource): string {
    const p = r.Properties ?? {};
    switch (r.Type) {
      case 'AWS::S3::Bucket':
        return stack.kind === 'data' && id.startsWith('PipelineBucket')
          ? this.names.bucket
          : typeof p.BucketName === 'string'
            ? p.BucketName
            : id.toLowerCase();
      case 'AWS::DynamoDB::Table':
        return id.startsWith('RunTable') ? this.names.table : typeof p.TableName === 'string' ? p.TableName : id;
      default:
        return id;
    }
  }

  /** The value of `Ref` to a resource, as CloudFormation returns it for its type. */
  ref(stack: Stack, id: string, where: string): string {
    const { account, region } = this.names;
    switch (id) {
      case 'AWS::Region':
        return region;
      case 'AWS::AccountId':
        return account;
      case 'AWS::Partition':
        return 'aws';
      case 'AWS::URLSuffix':
        return 'amazonaws.com';
      case 'AWS::StackName':
        return stack.stackName;
      case 'AWS::NoValue':
        return '';
    }
    const r = this.resource(stack, id, where);
    const name = this.physicalName(stack, id, r);
    switch (r.Type) {
      case 'AWS::Batch::JobDefinition':
        return `arn:aws:batch:${region}:${account}:job-definition/${name}:1`;
      case 'AWS::Batch::JobQueue':
        return `arn:aws:batch:${region}:${account}:job-queue/${name}`;
      case 'AWS::Batch::ComputeEnvironment':
        return `arn:aws:batch:${region}:${account}:compute-environment/${name}`;
      case 'AWS::SNS::Topic':
        return `arn:aws:sns:${region}:${account}:${name}`;
      case 'AWS::SQS::Queue':
        return `https://sqs.${region}.amazonaws.com/${account}/${name}`;
      case 'AWS::SSM::Parameter': {
        const n = r.Properties?.Name;
        return typeof n === 'string' ? n : name;
      }
      case 'AWS::SES::EmailIdentity': {
        const n = r.Properties?.EmailIdentity;
        return typeof n === 'string' ? n : String(this.resolve(stack, n ?? null, `${where} ${id}.EmailIdentity`));
      }
      case 'AWS::Logs::LogGroup':
        return `/twin/${name}`;
      case 'AWS::IAM::ManagedPolicy':
        return `arn:aws:iam::${account}:policy/${name}`;
      default:
        return name;
    }
  }

  getAtt(stack: Stack, id: string, attribute: string, where: string): string {
    const { account, region } = this.names;
    const r = this.resource(stack, id, where);
    const name = this.physicalName(stack, id, r);
    const key = `${r.Type}.${attribute}`;
    switch (key) {
      case 'AWS::S3::Bucket.Arn':
        return `arn:aws:s3:::${name}`;
      case 'AWS::DynamoDB::Table.Arn':
        return `arn:aws:dynamodb:${region}:${account}:table/${name}`;
      case 'AWS::IAM::Role.Arn':
        return `arn:aws:iam::${account}:role/${name}`;
      case 'AWS::Lambda::Function.Arn':
        return `arn:aws:lambda:${region}:${account}:function:${name}`;
      case 'AWS::KMS::Key.Arn':
        return `arn:aws:kms:${region}:${account}:key/${name}`;
      case 'AWS::SQS::Queue.Arn':
        return `arn:aws:sqs:${region}:${account}:${name}`;
      case 'AWS::Batch::JobQueue.JobQueueArn':
        return this.ref(stack, id, where);
      case 'AWS::Batch::ComputeEnvironment.ComputeEnvironmentArn':
        return this.ref(stack, id, where);
      case 'AWS::SNS::Topic.TopicArn':
        return this.ref(stack, id, where);
      case 'AWS::Logs::LogGroup.Arn':
        return `arn:aws:logs:${region}:${account}:log-group:/twin/${name}:*`;
      case 'AWS::Scheduler::ScheduleGroup.Arn':
        return `arn:aws:scheduler:${region}:${account}:schedule-group/${name}`;
      case 'AWS::Scheduler::Schedule.Arn':
        return `arn:aws:scheduler:${region}:${account}:schedule/default/${name}`;
      case 'AWS::Events::Rule.Arn':
        return `arn:aws:events:${region}:${account}:rule/${name}`;
      case 'AWS::SSM::Parameter.Type':
        return String(r.Properties?.Type ?? 'String');
      case 'AWS::SSM::Parameter.Value':
        return String(this.resolve(stack, r.Properties?.Value ?? null, `${where} ${id}.Value`));
      default:
        throw new TemplateError(`${where}: cannot resolve Fn::GetAtt ${id}.${attribute} (${r.Type}) in the local run`);
    }
  }

  resolve(stack: Stack, value: Json, where: string): Json {
    if (value === null || typeof value !== 'object') return value;
    if (Array.isArray(value)) return value.map((v, i) => this.resolve(stack, v, `${where}[${i}]`));
    const keys = Object.keys(value);
    if (keys.length === 1) {
      const fn = keys[0]!;
      const arg = value[fn]!;
      switch (fn) {
        case 'Ref':
          return this.ref(stack, String(arg), where);
        case 'Fn::GetAtt': {
          const [id, attribute] = Array.isArray(arg) ? arg.map(String) : String(arg).split('.');
          return this.getAtt(stack, id!, attribute!, where);
        }
        case 'Fn::Join': {
          const [sep, parts] = arg as [string, Json[]];
          const resolved = this.resolve(stack, parts, where) as Json[];
          return resolved.map((p) => String(p)).join(sep);
        }
        case 'Fn::Sub': {
          const [text, vars] = typeof arg === 'string' ? [arg, {}] : (arg as [string, Record<string, Json>]);
          return text.replace(/\$\{([^}]+)\}/g, (_, name: string) => {
            if (vars[name] !== undefined) return String(this.resolve(stack, vars[name]!, where));
            if (name.includes('.')) {
              const [id, attribute] = name.split('.') as [string, string];
              return this.getAtt(stack, id, attribute, where);
            }
            return this.ref(stack, name, where);
          });
        }
        case 'Fn::Select': {
          const [index, list] = arg as [Json, Json];
          const items = this.resolve(stack, list, where) as Json[];
          return items[Number(this.resolve(stack, index, where))] ?? null;
        }
        case 'Fn::Split': {
          const [sep, text] = arg as [string, Json];
          return String(this.resolve(stack, text, where)).split(sep);
        }
        case 'Fn::ImportValue': {
          const name = String(this.resolve(stack, arg, where));
          const exported = this.exports.get(name);
          if (!exported) throw new TemplateError(`${where}: imports ${name}, which no stack of the app exports`);
          return this.resolve(exported.stack, exported.value, `${exported.stack.stackName} export ${name}`);
        }
        case 'Fn::GetAZs':
          return [`${this.names.region}a`, `${this.names.region}b`];
        default:
          if (fn.startsWith('Fn::')) throw new TemplateError(`${where}: cannot resolve ${fn} in the local run`);
      }
    }
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(value)) out[k] = this.resolve(stack, v, `${where}.${k}`);
    return out;
  }
}

function asArray<T>(v: T | T[] | undefined | null): T[] {
  return v === undefined || v === null ? [] : Array.isArray(v) ? v : [v];
}

function str(v: Json | undefined, where: string): string {
  if (typeof v !== 'string') throw new TemplateError(`${where}: expected a string, got ${JSON.stringify(v)?.slice(0, 200)}`);
  return v;
}

function pathOf(r: CfnResource, id: string): string {
  const p = r.Metadata?.['aws:cdk:path'];
  return typeof p === 'string' ? p : id;
}

function nameValueList(list: Json | undefined, where: string, valueKey: 'Value' | 'ValueFrom'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [i, e] of asArray(list as Json[]).entries()) {
    const entry = e as Record<string, Json>;
    out[str(entry.Name, `${where}[${i}].Name`)] = str(entry[valueKey], `${where}[${i}].${valueKey}`);
  }
  return out;
}

function readJobDefinition(id: string, r: CfnResource, props: Record<string, Json>, arn: string): JobDefinitionModel {
  const where = `job definition ${id} (${pathOf(r, id)})`;
  if (props.Type !== 'container')
    throw new TemplateError(`${where}: Type ${JSON.stringify(props.Type)} is not a container job; the local run runs container jobs only`);
  const c = props.ContainerProperties as Record<string, Json> | undefined;
  if (!c) throw new TemplateError(`${where}: has no ContainerProperties (ECS properties and EKS jobs are not run locally)`);
  const capabilities = asArray(props.PlatformCapabilities as Json[]).map(String);
  const platform = capabilities.includes('FARGATE') ? 'FARGATE' : 'EC2';
  const requirements: Record<string, string> = {};
  for (const req of asArray(c.ResourceRequirements as Json[])) {
    const rr = req as Record<string, Json>;
    requirements[String(rr.Type)] = String(rr.Value);
  }
  const vcpus = Number(requirements.VCPU ?? c.Vcpus);
  const memoryMiB = Number(requirements.MEMORY ?? c.Memory);
  if (!(vcpus > 0) || !(memoryMiB > 0)) throw new TemplateError(`${where}: needs VCPU and MEMORY resource requirements`);
  const command = asArray(c.Command as Json[]).map((v, i) => str(v, `${where} Command[${i}]`));
  if (command.length === 0) throw new TemplateError(`${where}: has no Command`);
  const retry = (props.RetryStrategy ?? {}) as Record<string, Json>;
  const attempts = retry.Attempts === undefined ? 1 : Number(retry.Attempts);
  if (!Number.isInteger(attempts) || attempts < 1 || attempts > 10)
    throw new TemplateError(`${where}: RetryStrategy.Attempts must be 1..10, got ${JSON.stringify(retry.Attempts)}`);
  const evaluateOnExit = asArray(retry.EvaluateOnExit as Json[]).map((e, i): EvaluateOnExit => {
    const cond = e as Record<string, Json>;
    const action = String(cond.Action).toUpperCase();
    if (action !== 'RETRY' && action !== 'EXIT')
      throw new TemplateError(`${where}: EvaluateOnExit[${i}].Action must be RETRY or EXIT, got ${JSON.stringify(cond.Action)}`);
    const out: EvaluateOnExit = { action };
    for (const k of ['OnStatusReason', 'OnReason', 'OnExitCode'] as const) {
      if (cond[k] !== undefined) {
        const v = str(cond[k], `${where} EvaluateOnExit[${i}].${k}`);
        if (k === 'OnExitCode' && !/^\d*\*?$/.test(v))
          throw new TemplateError(`${where}: EvaluateOnExit[${i}].OnExitCode "${v}" may hold only digits and a final *`);
        out[(k[0]!.toLowerCase() + k.slice(1)) as 'onStatusReason' | 'onReason' | 'onExitCode'] = v;
      }
    }
    return out;
  });
  if (evaluateOnExit.length > 5)
    throw new TemplateError(`${where}: EvaluateOnExit has ${evaluateOnExit.length} conditions; AWS Batch takes at most 5`);
  const timeout = (props.Timeout as Record<string, Json> | undefined)?.AttemptDurationSeconds;
  return {
    logicalId: id,
    arn,
    path: pathOf(r, id),
    platform,
    command,
    environment: nameValueList(c.Environment, `${where} Environment`, 'Value'),
    secrets: nameValueList(c.Secrets, `${where} Secrets`, 'ValueFrom'),
    attempts,
    evaluateOnExit,
    timeoutSeconds: timeout === undefined ? undefined : Number(timeout),
    vcpus,
    memoryMiB,
    jobRoleArn: typeof c.JobRoleArn === 'string' ? c.JobRoleArn : undefined,
    executionRoleArn: typeof c.ExecutionRoleArn === 'string' ? c.ExecutionRoleArn : undefined,
  };
}

/** Builds the twin's model from the app's two templates. */
export function readTwinModel(templates: AppTemplates, names: TwinNames): TwinModel {
  const stacks: Stack[] = [
    { ...templates.data, kind: 'data' },
    { ...templates.compute, kind: 'compute' },
  ];
  const resolver = new Resolver(stacks, names);
  const model: TwinModel = {
    names,
    jobDefinitions: new Map(),
    queues: new Map(),
    lambdas: new Map(),
    notifications: [],
    subscriptions: [],
    topics: new Map(),
    rules: [],
    schedules: [],
    parameters: new Map(),
    roles: new Map(),
    resourcePolicies: new Map(),
    emailIdentities: new Map(),
    outputs: new Map(),
  };
  const computeEnvironments = new Map<string, 'FARGATE' | 'EC2'>();
  const policies: Array<{ name: string; document: PolicyDocument; roles: string[] }> = [];

  for (const stack of stacks) {
    for (const [key, output] of Object.entries(stack.template.Outputs ?? {})) {
      model.outputs.set(key, () => String(resolver.resolve(stack, output.Value, `${stack.stackName} output ${key}`)));
    }
    const resources = stack.template.Resources ?? {};
    // Compute environments first: queues need their platform.
    for (const [id, r] of Object.entries(resources)) {
      if (r.Type !== 'AWS::Batch::ComputeEnvironment') continue;
      const type = String((r.Properties?.ComputeResources as Record<string, Json> | undefined)?.Type ?? '');
      computeEnvironments.set(resolver.ref(stack, id, id), type.startsWith('FARGATE') ? 'FARGATE' : 'EC2');
    }
    for (const [id, r] of Object.entries(resources)) {
      const where = `${stack.stackName} ${id} (${r.Type})`;
      const resolve = (v: Json | undefined, prop: string) => resolver.resolve(stack, v ?? null, `${where} ${prop}`);
      switch (r.Type) {
        case 'AWS::Batch::JobDefinition': {
          const arn = resolver.ref(stack, id, where);
          model.jobDefinitions.set(
            arn,
            readJobDefinition(id, r, resolve((r.Properties ?? {}) as Json, 'Properties') as Record<string, Json>, arn),
          );
          break;
        }
        case 'AWS::Batch::JobQueue': {
          const arn = resolver.ref(stack, id, where);
          const envs = asArray(r.Properties?.ComputeEnvironmentOrder as Json[]).map((o) =>
            String(resolve((o as Record<string, Json>).ComputeEnvironment, 'ComputeEnvironmentOrder')),
          );
          const platforms = new Set(envs.map((e) => computeEnvironments.get(e)));
          if (platforms.size !== 1 || platforms.has(undefined))
            throw new TemplateError(`${where}: its compute environments (${envs.join(', ')}) are not all of one known platform`);
          model.queues.set(arn, { logicalId: id, arn, platform: [...platforms][0]!, computeEnvironments: envs });
          break;
        }
        case 'AWS::Lambda::Function': {
          const arn = resolver.getAtt(stack, id, 'Arn', where);
          const p = resolve((r.Properties ?? {}) as Json, 'Properties') as Record<string, Json>;
          const vars = ((p.Environment as Record<string, Json> | undefined)?.Variables ?? {}) as Record<string, Json>;
          model.lambdas.set(arn, {
            logicalId: id,
            arn,
            path: pathOf(r, id),
            handler: str(p.Handler, `${where} Handler`),
            environment: Object.fromEntries(Object.entries(vars).map(([k, v]) => [k, str(v, `${where} Environment.Variables.${k}`)])),
            roleArn: str(p.Role, `${where} Role`),
          });
          break;
        }
        case 'Custom::S3BucketNotifications': {
          const p = resolve((r.Properties ?? {}) as Json, 'Properties') as Record<string, Json>;
          const bucket = str(p.BucketName, `${where} BucketName`);
          const config = (p.NotificationConfiguration ?? {}) as Record<string, Json>;
          for (const kind of ['QueueConfigurations', 'TopicConfigurations', 'EventBridgeConfiguration']) {
            if (config[kind] !== undefined) throw new TemplateError(`${where}: ${kind} notifications are not delivered by the local run`);
          }
          for (const [i, c] of asArray(config.LambdaFunctionConfigurations as Json[]).entries()) {
            const cfg = c as Record<string, Json>;
            const rules = asArray(
              ((cfg.Filter as Record<string, Json> | undefined)?.Key as Record<string, Json> | undefined)?.FilterRules as Json[],
            );
            const rule = (name: string) => {
              const found = rules.find((x) => String((x as Record<string, Json>).Name).toLowerCase() === name) as
                | Record<string, Json>
                | undefined;
              return found ? String(found.Value) : '';
            };
            model.notifications.push({
              bucket,
              events: asArray(cfg.Events as Json[]).map(String),
              prefix: rule('prefix'),
              suffix: rule('suffix'),
              functionArn: str(cfg.LambdaFunctionArn, `${where} LambdaFunctionConfigurations[${i}].LambdaFunctionArn`),
            });
          }
          break;
        }
        case 'AWS::SNS::Topic': {
          const arn = resolver.ref(stack, id, where);
          const key = r.Properties?.KmsMasterKeyId;
          model.topics.set(arn, { arn, kmsKeyArn: key === undefined ? undefined : String(resolve(key, 'KmsMasterKeyId')) });
          break;
        }
        case 'AWS::SNS::Subscription': {
          const p = resolve((r.Properties ?? {}) as Json, 'Properties') as Record<string, Json>;
          model.subscriptions.push({
            topicArn: str(p.TopicArn, `${where} TopicArn`),
            protocol: str(p.Protocol, `${where} Protocol`),
            endpoint: str(p.Endpoint, `${where} Endpoint`),
          });
          break;
        }
        case 'AWS::Events::Rule': {
          const p = resolve((r.Properties ?? {}) as Json, 'Properties') as Record<string, Json>;
          if (p.State !== undefined && p.State !== 'ENABLED') break;
          if (p.EventPattern === undefined) {
            // A schedule (the merge deadline sweep) has no event to match: a local run does not keep
            // time for it (`fanout sweep --local DIR` runs the sweep on a kept run).
            if (p.ScheduleExpression !== undefined) {
              model.schedules.push({ logicalId: id, expression: String(p.ScheduleExpression) });
              break;
            }
            throw new TemplateError(`${where}: has neither an EventPattern nor a ScheduleExpression`);
          }
          const pattern = typeof p.EventPattern === 'string' ? (JSON.parse(p.EventPattern) as Json) : p.EventPattern;
          model.rules.push({
            logicalId: id,
            pattern,
            targets: asArray(p.Targets as Json[]).map((t, i) => str((t as Record<string, Json>).Arn, `${where} Targets[${i}].Arn`)),
          });
          break;
        }
        case 'AWS::SSM::Parameter': {
          const p = resolve((r.Properties ?? {}) as Json, 'Properties') as Record<string, Json>;
          model.parameters.set(resolver.ref(stack, id, where), str(p.Value, `${where} Value`));
          break;
        }
        case 'AWS::IAM::Role': {
          const arn = resolver.getAtt(stack, id, 'Arn', where);
          const p = resolve((r.Properties ?? {}) as Json, 'Properties') as Record<string, Json>;
          const inline = asArray(p.Policies as Json[]).map((x) => {
            const pol = x as Record<string, Json>;
            return { name: String(pol.PolicyName), document: pol.PolicyDocument as unknown as PolicyDocument };
          });
          model.roles.set(arn, {
            logicalId: id,
            arn,
            path: pathOf(r, id),
            policies: inline,
            awsManagedPolicies: asArray(p.ManagedPolicyArns as Json[]).map(String),
          });
          break;
        }
        case 'AWS::IAM::Policy':
        case 'AWS::IAM::ManagedPolicy': {
          const p = resolve((r.Properties ?? {}) as Json, 'Properties') as Record<string, Json>;
          policies.push({
            name: id,
            document: p.PolicyDocument as unknown as PolicyDocument,
            roles: asArray(p.Roles as Json[]).map(String),
          });
          break;
        }
        case 'AWS::S3::BucketPolicy': {
          const p = resolve((r.Properties ?? {}) as Json, 'Properties') as Record<string, Json>;
          model.resourcePolicies.set(`arn:aws:s3:::${str(p.Bucket, `${where} Bucket`)}`, p.PolicyDocument as unknown as PolicyDocument);
          break;
        }
        case 'AWS::SNS::TopicPolicy': {
          const p = resolve((r.Properties ?? {}) as Json, 'Properties') as Record<string, Json>;
          for (const topic of asArray(p.Topics as Json[]))
            model.resourcePolicies.set(String(topic), p.PolicyDocument as unknown as PolicyDocument);
          break;
        }
        case 'AWS::KMS::Key': {
          const p = resolve((r.Properties ?? {}) as Json, 'Properties') as Record<string, Json>;
          model.resourcePolicies.set(resolver.getAtt(stack, id, 'Arn', where), p.KeyPolicy as unknown as PolicyDocument);
          break;
        }
        case 'AWS::SES::EmailIdentity': {
          const name = resolver.ref(stack, id, where);
          model.emailIdentities.set(name.toLowerCase(), `arn:aws:ses:${names.region}:${names.account}:identity/${name}`);
          break;
        }
      }
    }
  }
  // Policies attach to roles by the role's name (Ref): the twin's role names are their logical ids.
  const byName = new Map([...model.roles.values()].map((role) => [role.logicalId, role]));
  for (const policy of policies) {
    for (const roleName of policy.roles) byName.get(roleName)?.policies.push({ name: policy.name, document: policy.document });
  }
  return model;
}

/** The handler entry (`lambda/<name>.ts`) a Lambda of this app runs, from its construct path (`…/OnIntake/Function/Resource`). */
export function handlerEntryOf(lambda: LambdaModel): string | undefined {
  const m = /\/(On[A-Za-z]+)\/Function\/Resource$/.exec(lambda.path);
  if (!m) return undefined;
  return m[1]!.replace(/([a-z])([A-Z])/g, '$1-$2').toLowerCase();
}
