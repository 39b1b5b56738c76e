/**
 * Deployment settings of the CDK app: where it deploys, the network, email, compute limits, job
 * sizes, retention and removal policy. Pipelines themselves live in `config/pipelines.ts`.
 *
 * Edit `deploymentSettings` below, or override any part at synth time with CDK context
 * (`cdk.json` "context": {"fanout": {...}} or `-c fanout='{"operatorEmail":"ops@example.com"}'`).
 * Validated with zod: a bad value fails synth with a message naming the field and the value.
 * Every default is listed in docs/infrastructure.md.
 */
import { z } from 'zod';
import { describeIssues, type AppConfig } from '../runtime/config/schema';
import { STAGES, type Stage } from '../runtime/model';

const minutes = (max: number) => z.int().min(1).max(max);
const days = z.int().min(1).max(3650);
/** Retention periods CloudWatch Logs accepts, in days. */
const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];
const logDays = z.int().refine((d) => LOG_RETENTION_DAYS.includes(d), {
  message: `must be a CloudWatch Logs retention: one of ${LOG_RETENTION_DAYS.join(', ')}`,
});

/** vCPUs per container. Fargate accepts 0.25, 0.5, 1, 2, 4, 8, 16; EC2 rounds up to whole vCPUs. */
const vcpusSchema = z.union([z.literal(0.25), z.literal(0.5), z.literal(1), z.literal(2), z.literal(4), z.literal(8), z.literal(16)]);

/** One job stage's container size, timeout and attempts. */
export interface JobSettings {
  /** vCPUs per container (Fargate sizes: 0.25, 0.5, 1, 2, 4, 8, 16; EC2 rounds up to whole vCPUs). */
  readonly vcpus: 0.25 | 0.5 | 1 | 2 | 4 | 8 | 16;
  /** Memory per container, MiB (a size Fargate allows for the vCPUs). */
  readonly memoryMiB: number;
  /** Per-attempt timeout: Batch stops an attempt that runs longer. */
  readonly timeoutMinutes: number;
  /** Attempts per job (first one included) for infrastructure failures: Spot reclaim, host loss, storage errors. */
  readonly attempts: number;
}

export const DEFAULT_JOBS: Readonly<Record<Stage, JobSettings>> = {
  split: { vcpus: 2, memoryMiB: 4096, timeoutMinutes: 120, attempts: 3 },
  fanout: { vcpus: 1, memoryMiB: 2048, timeoutMinutes: 360, attempts: 5 },
  consolidate: { vcpus: 2, memoryMiB: 8192, timeoutMinutes: 180, attempts: 3 },
  cleanup: { vcpus: 0.25, memoryMiB: 512, timeoutMinutes: 30, attempts: 3 },
};

/** A stage's settings; each field not given takes the stage's default. */
function jobSettingsSchema(stage: Stage) {
  const d = DEFAULT_JOBS[stage];
  return z
    .object({
      vcpus: vcpusSchema.default(d.vcpus),
      memoryMiB: z.int().min(512).max(122_880).default(d.memoryMiB),
      timeoutMinutes: minutes(14 * 24 * 60).default(d.timeoutMinutes),
      attempts: z.int().min(1).max(10).default(d.attempts),
    })
    .superRefine((job, ctx) => {
      const problem = fargateMemoryProblem(job.vcpus, job.memoryMiB);
      if (problem) ctx.addIssue({ code: 'custom', path: ['memoryMiB'], message: problem });
    })
    .prefault({});
}

const jobsShape = Object.fromEntries(STAGES.map((stage) => [stage, jobSettingsSchema(stage)])) as Record<
  Stage,
  ReturnType<typeof jobSettingsSchema>
>;

/** c5.18xlarge-class Spot instances: 72-96 vCPU compute-optimised x86_64, several pools for Spot capacity. */
const DEFAULT_EC2_INSTANCE_TYPES = ['c5.18xlarge', 'c5n.18xlarge', 'c5a.24xlarge', 'c6i.24xlarge', 'c6a.24xlarge'];

const deploymentSchema = z
  .object({
    /** Prefix of the stack names (`<appName>-data`, `<appName>-compute`). @default 'batch-fanout' */
    appName: z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9-]{0,39}$/, 'must be 1-40 letters, digits and "-", starting with a letter')
      .default('batch-fanout'),
    /** AWS account (12 digits). @default - CDK_DEFAULT_ACCOUNT of the CLI profile, or environment-agnostic */
    account: z
      .string()
      .regex(/^\d{12}$/, 'must be a 12-digit AWS account id')
      .optional(),
    /** AWS region. @default - CDK_DEFAULT_REGION of the CLI profile, or environment-agnostic */
    region: z
      .string()
      .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be a region name such as eu-west-1')
      .optional(),
    network: z
      .object({
        /** Existing VPC to use (needs account and region; looked up at synth). @default - a new VPC */
        vpcId: z
          .string()
          .regex(/^vpc-[0-9a-f]{8,17}$/, 'must be a VPC id such as vpc-0abc12345def67890')
          .optional(),
        /** Availability zones of a new VPC. @default 2 */
        maxAzs: z.int().min(1).max(6).default(2),
        /**
         * NAT gateways of a new VPC. Jobs run in private subnets behind them; with 0, jobs run in
         * public subnets with a public IP (no inbound rule) and the VPC costs nothing at rest. @default 1
         */
        natGateways: z.int().min(0).max(6).default(1),
        /** Add S3 and DynamoDB gateway endpoints (free; keeps storage traffic off the NAT). @default true */
        gatewayEndpoints: z.boolean().default(true),
      })
      .prefault({}),
    email: z
      .object({
        /**
         * SES identity mail is sent from: an address or a domain. The pipelines config's `sender` must
         * be this address or an address of this domain. @default - the pipelines config's sender
         */
        identity: z
          .string()
          .regex(/^([^@\s]+@)?([a-z0-9-]+\.)+[a-z]{2,}$/i, 'must be an email address or a domain name')
          .optional(),
        /** The identity exists in SES already (do not create it; only grant sending from it). @default false */
        existingIdentity: z.boolean().default(false),
        /**
         * Also create an SES identity for every pipeline recipient (SES sends each a verification
         * mail) and allow sending to them: needed while the account is in the SES sandbox. @default false
         */
        verifyRecipients: z.boolean().default(false),
      })
      .prefault({}),
    /** Operator address subscribed to the alarm topic. @default - no subscription (subscribe by hand) */
    operatorEmail: z.email().optional(),
    compute: z
      .object({
        /** Largest number of vCPUs the Fargate Spot compute environment runs at once. @default 256 */
        fargateSpotMaxVcpus: z.int().min(1).max(100_000).default(256),
        /** Largest number of vCPUs the EC2 Spot compute environment runs at once. @default 1152 */
        ec2SpotMaxVcpus: z.int().min(1).max(100_000).default(1152),
        /**
         * vCPUs the EC2 Spot compute environment keeps running while idle (warm instances start jobs
         * at once, and cost money at rest). At most ec2SpotMaxVcpus. @default 0 - scales to zero
         */
        ec2SpotMinVcpus: z.int().min(0).max(100_000).default(0),
        /** EC2 Spot instance types (x86_64). @default c5.18xlarge, c5n.18xlarge, c5a.24xlarge, c6i.24xlarge, c6a.24xlarge */
        ec2InstanceTypes: z
          .array(z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/, 'must be an instance type such as c5.18xlarge'))
          .min(1)
          .default(DEFAULT_EC2_INSTANCE_TYPES),
      })
      .prefault({}),
    /** Container size, timeout and attempts per job stage. Defaults in DEFAULT_JOBS. */
    jobs: z.object(jobsShape).prefault({}),
    retention: z
      .object({
        /** Uploaded inputs under `intake/` expire after this many days. @default 365 */
        intakeDays: days.default(365),
        /** Result workbooks under `results/` expire after this many days. @default 365 */
        resultsDays: days.default(365),
        /** Safety net: objects under `work/` (chunks, result parts) expire after this many days; cleanup deletes them sooner. @default 7 */
        workDays: days.default(7),
        /** Run records are kept this many days (DynamoDB TTL). @default 90 */
        runRecordDays: days.default(90),
        /** Lambda, job and flow logs are kept this many days. @default 365 */
        logDays: logDays.default(365),
        /** S3 server access logs are kept this many days. @default 365 */
        accessLogDays: days.default(365),
        /** Replaced or deleted object versions are kept this many days. @default 30 */
        noncurrentVersionDays: days.default(30),
      })
      .prefault({}),
    /** A presigned result link is valid this many days (see docs: capped by the job role's session). @default 7 */
    resultLinkDays: z.int().min(1).max(7).default(7),
    /** What happens to the bucket, table and logs when the stacks are deleted. @default 'retain' */
    removalPolicy: z.enum(['retain', 'destroy']).default('retain'),
    /** Active X-Ray tracing of the Lambda handlers. @default false */
    tracing: z.boolean().default(false),
    /** Managed OSRM server for osrm-match pipelines (lib/osrm-service.ts, docs/map-matching.md). @default - off */
    osrm: z
      .object({
        /** Deploy the server; osrm-match fan-outs get its URL as FANOUT_OSRM_BASE_URL. @default false */
        enabled: z.boolean().default(false),
        /**
         * Key of the map data in the pipeline bucket: an OpenStreetMap extract (`.osm.pbf`, prepared
         * with osrm-extract, osrm-partition and osrm-customize at every start), or a tar (`.tar`,
         * `.tar.gz`, `.tgz`) of files already prepared for MLD (starts in minutes).
         * @default 'osrm/extract.tar'
         */
        extractKey: z
          .string()
          .regex(/^[^/].*\.(osm\.pbf|tar|tar\.gz|tgz)$/, 'must name a .osm.pbf extract or a .tar/.tar.gz/.tgz of MLD-prepared files')
          .default('osrm/extract.tar'),
        /** Lua profile osrm-extract prepares a `.osm.pbf` with (car, bicycle, foot); unused for a prepared archive. @default 'car' */
        profile: z
          .string()
          .regex(/^[a-z0-9_-]+$/)
          .optional(),
        /** vCPU units (1024 = 1 vCPU) of the server's task. @default 2048 */
        cpu: z.int().min(256).max(16_384).optional(),
        /** Memory of the server's task, MiB (the prepared data is served from memory). @default 8192 */
        memoryLimitMiB: z.int().min(1024).max(122_880).optional(),
        /**
         * Idle timeout of the server's load balancer, minutes: the longest a match request may take
         * to answer (the ALB allows at most 4000 s). @default 15
         */
        idleTimeoutMinutes: z.int().min(1).max(66).optional(),
      })
      .prefault({}),
  })
  .superRefine((cfg, ctx) => {
    if (cfg.compute.ec2SpotMinVcpus > cfg.compute.ec2SpotMaxVcpus) {
      ctx.addIssue({
        code: 'custom',
        path: ['compute', 'ec2SpotMinVcpus'],
        message: `must be at most compute.ec2SpotMaxVcpus (${cfg.compute.ec2SpotMaxVcpus}), got ${cfg.compute.ec2SpotMinVcpus}`,
      });
    }
    if (cfg.network.vpcId !== undefined && (cfg.account === undefined || cfg.region === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['network', 'vpcId'],
        message: 'an existing VPC is looked up at synth: set account and region too',
      });
    }
  });

export type DeploymentConfig = z.infer<typeof deploymentSchema>;
export type DeploymentInput = z.input<typeof deploymentSchema>;

/** Fargate's allowed memory for a vCPU size, MiB: [min, max, step] (0.25 vCPU: 512, 1024 or 2048). */
const FARGATE_MEMORY: Record<number, [number, number, number]> = {
  0.25: [512, 2048, 512],
  0.5: [1024, 4096, 1024],
  1: [2048, 8192, 1024],
  2: [4096, 16_384, 1024],
  4: [8192, 30_720, 1024],
  8: [16_384, 61_440, 4096],
  16: [32_768, 122_880, 8192],
};

function fargateMemoryProblem(vcpus: number, memoryMiB: number): string | undefined {
  const range = FARGATE_MEMORY[vcpus];
  if (!range) return undefined;
  const [min, max, step] = range;
  const quarterVcpuGap = vcpus === 0.25 && memoryMiB === 1536;
  if (memoryMiB < min || memoryMiB > max || memoryMiB % step !== 0 || quarterVcpuGap) {
    return `${memoryMiB} MiB is not a Fargate size for ${vcpus} vCPU: use ${min}..${max} MiB in steps of ${step}${
      vcpus === 0.25 ? ' (512, 1024 or 2048)' : ''
    }`;
  }
  return undefined;
}

export class DeploymentConfigError extends Error {
  override readonly name = 'DeploymentConfigError';
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid deployment config in ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** Validates deployment settings; throws DeploymentConfigError listing every problem with field path and value. */
export function parseDeploymentConfig(raw: unknown, source = 'deployment config'): DeploymentConfig {
  const result = deploymentSchema.safeParse(raw);
  if (result.success) return result.data;
  throw new DeploymentConfigError(source, describeIssues(raw, result.error.issues));
}

/**
 * Checks the deployment settings against the pipelines: the sender must belong to the SES
 * identity. Returns the SES identity to use.
 */
export function checkAgainstPipelines(deployment: DeploymentConfig, pipelines: AppConfig, source = 'deployment config'): string {
  const sender = pipelines.sender.toLowerCase();
  const identity = (deployment.email.identity ?? pipelines.sender).toLowerCase();
  const senderDomain = sender.slice(sender.indexOf('@') + 1);
  const allowed = identity.includes('@') ? sender === identity : senderDomain === identity || senderDomain.endsWith(`.${identity}`);
  if (!allowed) {
    throw new DeploymentConfigError(source, [
      `email.identity: the pipelines config's sender "${pipelines.sender}" is not this identity nor an address of this domain (got "${deployment.email.identity}")`,
    ]);
  }
  return identity;
}

/** Deep merge of plain objects (arrays and scalars from `over` replace those of `base`). */
function mergeSettings(base: unknown, over: unknown): unknown {
  if (over === undefined) return base;
  if (
    base === null ||
    over === null ||
    typeof base !== 'object' ||
    typeof over !== 'object' ||
    Array.isArray(base) ||
    Array.isArray(over)
  ) {
    return over;
  }
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over as Record<string, unknown>)) out[k] = mergeSettings(out[k], v);
  return out;
}

/** The deployment settings of this app (edit here; every field is optional). */
export const deploymentSettings: DeploymentInput = {
  appName: 'batch-fanout',
  removalPolicy: 'retain',
};

/**
 * The validated deployment settings: `deploymentSettings` with `overrides` (CDK context) merged
 * over it, and the CLI profile's account and region when the settings name none.
 */
export function loadDeploymentConfig(
  overrides?: unknown,
  defaults: { account?: string; region?: string } = {},
  source = 'config/deployment.ts',
): DeploymentConfig {
  const merged = mergeSettings({ ...defaults, ...deploymentSettings }, overrides);
  return parseDeploymentConfig(merged, overrides === undefined ? source : `${source} + context "fanout"`);
}
