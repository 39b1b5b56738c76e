/**
 * A managed OSRM server for osrm-match pipelines: osrm-routed on ECS Fargate behind an internal
 * Application Load Balancer, serving data prepared from an OpenStreetMap extract kept in S3.
 *
 * Off by default; the compute stack creates it when the deployment enables it and hands `url`
 * to the osrm-match fan-out jobs as FANOUT_OSRM_BASE_URL.
 */
import { Duration, RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { acknowledgeGuard, acknowledgeNag, cfnOf } from './acknowledge';
import { allowCloudWatchLogs, denyGrantsExceptForAwsResources } from './key-policies';

/** The OSRM backend image: the project's official build (osrm/osrm-backend's successor registry). */
export const DEFAULT_OSRM_IMAGE = 'ghcr.io/project-osrm/osrm-backend:v5.27.1';
/** The AWS CLI image that fetches the extract from S3 before osrm-routed starts. */
export const DEFAULT_FETCH_IMAGE = 'public.ecr.aws/aws-cli/aws-cli:2.17.0';
/** Memory of the container that fetches the extract, MiB (the rest of the task's goes to OSRM). */
const FETCH_MEMORY_MIB = 512;
/** Port osrm-routed listens on in the container. */
export const OSRM_CONTAINER_PORT = 5000;

export interface OsrmServiceProps {
  /** VPC of the service and its load balancer (the jobs' VPC). */
  readonly vpc: ec2.IVpc;
  /** Bucket holding the extract; the service may read only `extractKey` from it. */
  readonly dataBucket: s3.IBucket;
  /**
   * Key of the map data in `dataBucket`: an OpenStreetMap extract (`*.osm.pbf`, prepared at
   * start with osrm-extract, osrm-partition and osrm-customize), or a tar archive (`*.tar`,
   * `*.tar.gz`, `*.tgz`) of files already prepared for the MLD algorithm (`<name>.osrm.*`),
   * which starts in minutes whatever the region's size.
   */
  readonly extractKey: string;
  /** Lua profile of osrm-extract, one of the image's `/opt/<profile>.lua` (car, bicycle, foot). @default 'car' */
  readonly profile?: string;
  /** vCPU units of the task (1024 = 1 vCPU). @default 2048 */
  readonly cpu?: number;
  /** Memory of the task, MiB; preparing an extract needs several times its .osm.pbf size. @default 8192 */
  readonly memoryLimitMiB?: number;
  /** Task storage for the extract and the prepared files, GiB (21-200). @default 50 */
  readonly ephemeralStorageGiB?: number;
  /**
   * Idle timeout of the load balancer: the longest a match request may take to answer. The
   * ALB default of 60 s broke long requests in the original set-up. At most 4000 s.
   * @default Duration.minutes(15)
   */
  readonly idleTimeout?: Duration;
  /** osrm-routed --max-matching-size: coordinates per match request (the task's maxPoints). @default 100 */
  readonly maxMatchingSize?: number;
  /** Time the task has to prepare the data and start answering before health checks count. @default Duration.minutes(30) */
  readonly startupGracePeriod?: Duration;
  /** Number of OSRM tasks. @default 1 */
  readonly desiredCount?: number;
  /** Who may call the load balancer. @default - the VPC's CIDR block */
  readonly allowFrom?: readonly ec2.IPeer[];
  /** Subnets of the tasks and the internal load balancer. @default - private subnets with egress */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /** Give the tasks a public IP (only for public subnets without NAT, to pull images). @default false */
  readonly assignPublicIp?: boolean;
  /** Serve HTTPS on 443 with this certificate instead of HTTP on 80. @default - HTTP inside the VPC */
  readonly certificate?: elbv2.IListenerCertificate;
  /** Name the certificate is for, pointing at the load balancer (used in `url`). @default - the load balancer's DNS name */
  readonly domainName?: string;
  /**
   * Bucket for the load balancer's access logs (S3-managed encryption, as ALB requires).
   * @default - no access logs; osrm-routed logs each request in the service's log group
   */
  readonly accessLogBucket?: s3.IBucket;
  /** Prefix of the access logs in `accessLogBucket`. @default 'osrm-alb' */
  readonly accessLogPrefix?: string;
  /** Key the log group is encrypted with (its policy must let CloudWatch Logs use it). @default - a new key with rotation */
  readonly logKey?: kms.IKey;
  /** Retention of the service's logs. @default logs.RetentionDays.ONE_YEAR */
  readonly logRetention?: logs.RetentionDays;
  /** What happens to the log group (and a created key) on delete. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
  /** The OSRM backend image. @default - DEFAULT_OSRM_IMAGE from ghcr.io */
  readonly image?: ecs.ContainerImage;
  /** The image that copies the extract from S3 (needs the `aws` CLI). @default - DEFAULT_FETCH_IMAGE */
  readonly fetchImage?: ecs.ContainerImage;
}

const SAFE_FILE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const PREPARED = /\.(tar|tar\.gz|tgz)$/;

/** The container's start script: prepare (or unpack) the data in /data, then run osrm-routed. */
export function osrmStartScript(file: string, profile: string, maxMatchingSize: number): string {
  const routed = `exec osrm-routed --algorithm mld --port ${OSRM_CONTAINER_PORT} --max-matching-size ${maxMatchingSize}`;
  if (PREPARED.test(file)) {
    return [
      'set -eu',
      'cd /data',
      `tar -xf '${file}'`,
      `rm -f '${file}'`,
      'base="$(ls ./*.osrm.mldgr 2>/dev/null | head -n 1)"',
      `[ -n "$base" ] || { echo "'${file}' holds no MLD-prepared .osrm files (osrm-partition and osrm-customize output)" >&2; exit 2; }`,
      `${routed} "\${base%.mldgr}"`,
    ].join('\n');
  }
  const base = file.replace(/\.osm\.pbf$/, '.osrm');
  return [
    'set -eu',
    'cd /data',
    `osrm-extract -p '/opt/${profile}.lua' '${file}'`,
    `rm -f '${file}'`,
    `osrm-partition '${base}'`,
    `osrm-customize '${base}'`,
    `${routed} '${base}'`,
  ].join('\n');
}

/**
 * OSRM on ECS Fargate behind an internal ALB. Defaults:
 * - one task of 2 vCPU / 8 GiB / 50 GiB storage, x86_64, in private subnets, no public IP;
 * - start: an init container (AWS CLI) copies `s3://<bucket>/<extractKey>` to a task volume;
 *   then the OSRM container prepares it (osrm-extract -p /opt/<profile>.lua, osrm-partition,
 *   osrm-customize) or unpacks a prepared archive, and runs
 *   `osrm-routed --algorithm mld --max-matching-size 100`;
 * - the task role may read only that one object (and decrypt it with the bucket's key);
 * - an internal ALB, HTTP on 80 (HTTPS on 443 with `certificate`), idle timeout 15 minutes,
 *   invalid headers dropped, open to the VPC's CIDR only; health check
 *   `GET /nearest/v1/driving/0,0` (200, or 400 from OSRM itself), 30 minutes' grace for startup;
 * - deployment circuit breaker with rollback; Container Insights on the cluster;
 * - logs of both containers in a KMS-encrypted log group kept one year.
 */
export class OsrmService extends Construct {
  /** Base URL for osrm-match pipelines (FANOUT_OSRM_BASE_URL), e.g. http://internal-osrm-123.eu-west-1.elb.amazonaws.com */
  readonly url: string;
  readonly loadBalancer: elbv2.ApplicationLoadBalancer;
  readonly listener: elbv2.ApplicationListener;
  readonly service: ecs.FargateService;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly cluster: ecs.Cluster;
  readonly logGroup: logs.LogGroup;
  /** Security group rules of the load balancer: `osrm.connections.allowFrom(jobs, port)` to narrow further. */
  readonly connections: ec2.Connections;

  constructor(scope: Construct, id: string, props: OsrmServiceProps) {
    super(scope, id);
    const profile = props.profile ?? 'car';
    const cpu = props.cpu ?? 2048;
    const memoryLimitMiB = props.memoryLimitMiB ?? 8192;
    const ephemeralStorageGiB = props.ephemeralStorageGiB ?? 50;
    const idleTimeout = props.idleTimeout ?? Duration.minutes(15);
    const maxMatchingSize = props.maxMatchingSize ?? 100;
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const file = props.extractKey.slice(props.extractKey.lastIndexOf('/') + 1);

    const problems: string[] = [];
    if (props.extractKey.startsWith('/') || !SAFE_FILE.test(file) || !(file.endsWith('.osm.pbf') || PREPARED.test(file))) {
      problems.push(
        `extractKey "${props.extractKey}" must name a .osm.pbf extract or a .tar/.tar.gz/.tgz of prepared files (letters, digits, ".", "_", "-")`,
      );
    }
    if (!/^[a-z0-9_-]+$/.test(profile)) problems.push(`profile "${profile}" must be the name of a Lua profile such as car`);
    const idleS = idleTimeout.toSeconds();
    if (idleS < 1 || idleS > 4000) problems.push(`idleTimeout must be 1-4000 seconds (the ALB's range), got ${idleS}`);
    if (!Number.isInteger(maxMatchingSize) || maxMatchingSize < 2)
      problems.push(`maxMatchingSize must be a whole number >= 2, got ${maxMatchingSize}`);
    if (!Number.isInteger(ephemeralStorageGiB) || ephemeralStorageGiB < 21 || ephemeralStorageGiB > 200) {
      problems.push(`ephemeralStorageGiB must be 21-200, got ${ephemeralStorageGiB}`);
    }
    if (props.domainName !== undefined && props.certificate === undefined) problems.push('domainName needs a certificate');
    if (!Number.isInteger(memoryLimitMiB) || memoryLimitMiB < 2 * FETCH_MEMORY_MIB) {
      problems.push(`memoryLimitMiB must be a whole number >= ${2 * FETCH_MEMORY_MIB}, got ${memoryLimitMiB}`);
    }
    if (problems.length > 0) throw new Error(`OsrmService ${this.node.path}: ${problems.join('; ')}`);

    const vpcSubnets = props.vpcSubnets ?? { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };

    let logKey = props.logKey;
    if (logKey === undefined) {
      const key = new kms.Key(this, 'LogKey', {
        description: `Encrypts the logs of the OSRM service ${this.node.path}`,
        enableKeyRotation: true,
        removalPolicy,
      });
      allowCloudWatchLogs(key);
      denyGrantsExceptForAwsResources(key);
      logKey = key;
    }
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_YEAR,
      encryptionKey: logKey,
      removalPolicy,
    });

    this.cluster = new ecs.Cluster(this, 'Cluster', {
      vpc: props.vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });

    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'Task', {
      cpu,
      memoryLimitMiB,
      ephemeralStorageGiB,
      runtimePlatform: { cpuArchitecture: ecs.CpuArchitecture.X86_64, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX },
      // Task storage: the map data, and a scratch /tmp (root filesystems are read-only).
      volumes: [{ name: 'data' }, { name: 'tmp' }],
    });
    // Read of exactly one object; no listing, no other keys.
    this.taskDefinition.taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: [props.dataBucket.arnForObjects(props.extractKey)] }),
    );
    props.dataBucket.encryptionKey?.grantDecrypt(this.taskDefinition.taskRole);

    const fetch = this.taskDefinition.addContainer('fetch-extract', {
      image: props.fetchImage ?? ecs.ContainerImage.fromRegistry(DEFAULT_FETCH_IMAGE),
      essential: false,
      command: [
        's3',
        'cp',
        '--only-show-errors',
        '--region',
        Stack.of(this).region,
        `s3://${props.dataBucket.bucketName}/${props.extractKey}`,
        `/data/${file}`,
      ],
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'fetch' }),
      memoryLimitMiB: FETCH_MEMORY_MIB,
      readonlyRootFilesystem: true,
    });
    const mountPoints: ecs.MountPoint[] = [
      { containerPath: '/data', sourceVolume: 'data', readOnly: false },
      { containerPath: '/tmp', sourceVolume: 'tmp', readOnly: false },
    ];
    fetch.addMountPoints(...mountPoints);

    const osrm = this.taskDefinition.addContainer('osrm', {
      image: props.image ?? ecs.ContainerImage.fromRegistry(DEFAULT_OSRM_IMAGE),
      essential: true,
      entryPoint: ['/bin/sh', '-c'],
      command: [osrmStartScript(file, profile, maxMatchingSize)],
      portMappings: [{ containerPort: OSRM_CONTAINER_PORT, protocol: ecs.Protocol.TCP }],
      logging: ecs.LogDrivers.awsLogs({ logGroup: this.logGroup, streamPrefix: 'osrm' }),
      stopTimeout: Duration.seconds(30),
      memoryLimitMiB: memoryLimitMiB - FETCH_MEMORY_MIB,
      readonlyRootFilesystem: true,
    });
    osrm.addMountPoints(...mountPoints);
    osrm.addContainerDependencies({ container: fetch, condition: ecs.ContainerDependencyCondition.SUCCESS });

    const serviceSecurityGroup = new ec2.SecurityGroup(this, 'ServiceSecurityGroup', {
      vpc: props.vpc,
      description: 'OSRM tasks: inbound only from their load balancer',
      allowAllOutbound: true,
    });
    this.service = new ecs.FargateService(this, 'Service', {
      cluster: this.cluster,
      taskDefinition: this.taskDefinition,
      desiredCount: props.desiredCount ?? 1,
      vpcSubnets,
      assignPublicIp: props.assignPublicIp ?? false,
      securityGroups: [serviceSecurityGroup],
      healthCheckGracePeriod: props.startupGracePeriod ?? Duration.minutes(30),
      circuitBreaker: { enable: true, rollback: true },
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
    });

    const albSecurityGroup = new ec2.SecurityGroup(this, 'LoadBalancerSecurityGroup', {
      vpc: props.vpc,
      description: 'OSRM load balancer: match requests from inside the VPC',
      allowAllOutbound: false,
    });
    this.loadBalancer = new elbv2.ApplicationLoadBalancer(this, 'LoadBalancer', {
      vpc: props.vpc,
      internetFacing: false,
      vpcSubnets,
      securityGroup: albSecurityGroup,
      idleTimeout,
      dropInvalidHeaderFields: true,
    });
    this.connections = this.loadBalancer.connections;
    if (props.accessLogBucket !== undefined) {
      this.loadBalancer.logAccessLogs(props.accessLogBucket, props.accessLogPrefix ?? 'osrm-alb');
    }
    const https = props.certificate !== undefined;
    const port = https ? 443 : 80;
    for (const peer of props.allowFrom ?? [ec2.Peer.ipv4(props.vpc.vpcCidrBlock)]) {
      albSecurityGroup.addIngressRule(peer, ec2.Port.tcp(port), `OSRM match requests on ${port}`);
    }
    this.listener = this.loadBalancer.addListener('Listener', {
      port,
      protocol: https ? elbv2.ApplicationProtocol.HTTPS : elbv2.ApplicationProtocol.HTTP,
      certificates: https ? [props.certificate!] : undefined,
      sslPolicy: https ? elbv2.SslPolicy.RECOMMENDED_TLS : undefined,
      open: false,
    });
    this.listener.addTargets('Osrm', {
      port: OSRM_CONTAINER_PORT,
      protocol: elbv2.ApplicationProtocol.HTTP,
      targets: [this.service.loadBalancerTarget({ containerName: 'osrm', containerPort: OSRM_CONTAINER_PORT })],
      deregistrationDelay: Duration.seconds(Math.min(idleS, 900)),
      healthCheck: {
        path: '/nearest/v1/driving/0,0',
        healthyHttpCodes: '200,400',
        interval: Duration.seconds(30),
        timeout: Duration.seconds(10),
        healthyThresholdCount: 2,
        unhealthyThresholdCount: 5,
      },
    });
    this.url = `${https ? 'https' : 'http'}://${props.domainName ?? this.loadBalancer.loadBalancerDnsName}`;

    this.acknowledgeFindings({
      https,
      accessLogs: props.accessLogBucket !== undefined,
      accessLogBucketIsToken: props.accessLogBucket !== undefined && Token.isUnresolved(props.accessLogBucket.bucketName),
      cidrToken: props.allowFrom === undefined && Token.isUnresolved(props.vpc.vpcCidrBlock),
      publicIp: props.assignPublicIp ?? false,
      albSecurityGroup,
    });
  }

  /** Findings this construct knowingly leaves, each on its own resource with the reason. */
  private acknowledgeFindings(o: {
    https: boolean;
    accessLogs: boolean;
    accessLogBucketIsToken: boolean;
    cidrToken: boolean;
    publicIp: boolean;
    albSecurityGroup: ec2.SecurityGroup;
  }): void {
    const alb = cfnOf(this.loadBalancer);
    const task = cfnOf(this.taskDefinition);
    if (!o.accessLogs) {
      const reason =
        'No access log bucket given: osrm-routed logs every request (path, status, time) to the encrypted log group; pass accessLogBucket to add ALB logs.';
      acknowledgeNag(alb, 'AwsSolutions-ELB2', reason);
      acknowledgeGuard(alb, 'elbv2_logging_enabled_check', reason);
    } else if (o.accessLogBucketIsToken) {
      acknowledgeGuard(
        alb,
        'elbv2_logging_enabled_check',
        'Access logs are on (access_logs.s3.enabled); the bucket is a reference the rule cannot resolve at synth.',
      );
    }
    acknowledgeGuard(
      alb,
      'elbv2_deletion_protection_enabled_check',
      'Stateless internal load balancer of a re-creatable service; deletion protection would only block tear-down of the stack.',
    );
    acknowledgeGuard(
      task,
      'ecs_task_definition_nonroot_user_check',
      'Both containers write the map data to the task volume, which Fargate mounts owned by root; root filesystems are read-only.',
    );
    if (o.publicIp) {
      acknowledgeGuard(
        cfnOf(this.service),
        'ecs_service_assign_public_ip_disabled_check',
        'assignPublicIp was asked for: the tasks run in public subnets without NAT and need a public IP to pull their images and reach AWS APIs; their security group admits only the load balancer.',
      );
    }
    if (o.cidrToken) {
      acknowledgeNag(
        cfnOf(o.albSecurityGroup),
        'AwsSolutions-EC23',
        "The only ingress rule is the VPC's own CIDR block, a reference cdk-nag cannot resolve at synth.",
      );
    }
    if (!o.https) {
      acknowledgeGuard(
        cfnOf(this.listener),
        'alb_http_to_https_redirection_check',
        'Internal listener reachable only from inside the VPC; pass `certificate` (and domainName) to serve HTTPS instead.',
      );
    }
  }
}
