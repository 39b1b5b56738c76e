/**
 * The network the jobs run in: a new VPC (or an existing one), gateway endpoints for S3 and
 * DynamoDB, a flow log of rejected traffic, and the jobs' security group (no inbound rules).
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { acknowledgeGuard, cfnOf } from './acknowledge';

export interface FanoutNetworkProps {
  /** Existing VPC id, looked up at synth (needs account and region). @default - a new VPC */
  readonly vpcId?: string;
  /** Availability zones of a new VPC. @default 2 */
  readonly maxAzs?: number;
  /**
   * NAT gateways of a new VPC. With 0, jobs run in public subnets with a public IP (the
   * security group still allows no inbound traffic). @default 1
   */
  readonly natGateways?: number;
  /** Add S3 and DynamoDB gateway endpoints. @default true */
  readonly gatewayEndpoints?: boolean;
  /** Retention of the flow log. */
  readonly logRetention: logs.RetentionDays;
  /** Key the flow log group is encrypted with. */
  readonly logKey: kms.IKey;
  /** @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * Defaults: 2 AZs, one NAT gateway, public subnets that do not map public IPs (only the NAT
 * gateway's Elastic IP is public), private subnets with egress for the jobs, free gateway
 * endpoints so S3 and DynamoDB traffic skips the NAT, and a REJECT-only flow log.
 */
export class FanoutNetwork extends Construct {
  readonly vpc: ec2.IVpc;
  /** Subnets the jobs run in. */
  readonly jobSubnets: ec2.SubnetSelection;
  /** Jobs need a public IP (public subnets, no NAT). */
  readonly jobsNeedPublicIp: boolean;
  /** Security group of every job: all outbound, no inbound. */
  readonly jobSecurityGroup: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: FanoutNetworkProps) {
    super(scope, id);
    const natGateways = props.natGateways ?? 1;
    if (props.vpcId !== undefined) {
      this.vpc = ec2.Vpc.fromLookup(this, 'Vpc', { vpcId: props.vpcId });
      this.jobsNeedPublicIp = false;
      this.jobSubnets = { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };
    } else {
      this.jobsNeedPublicIp = natGateways === 0;
      const vpc = new ec2.Vpc(this, 'Vpc', {
        maxAzs: props.maxAzs ?? 2,
        natGateways,
        subnetConfiguration: [
          // Without NAT the jobs live here and need the subnet to give them public IPs.
          { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 20, mapPublicIpOnLaunch: this.jobsNeedPublicIp },
          ...(natGateways > 0 ? [{ name: 'jobs', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 18 }] : []),
        ],
      });
      const flowLogGroup = new logs.LogGroup(this, 'FlowLogs', {
        retention: props.logRetention,
        encryptionKey: props.logKey,
        removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
      });
      vpc.addFlowLog('RejectedTraffic', {
        destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogGroup),
        trafficType: ec2.FlowLogTrafficType.REJECT,
      });
      if (this.jobsNeedPublicIp) {
        for (const subnet of vpc.publicSubnets) {
          acknowledgeGuard(
            cfnOf(subnet),
            'subnet_auto_assign_public_ip_disabled_check',
            'network.natGateways is 0: the jobs run in this subnet and need a public IP to reach ECR, AWS APIs and the data source; their security group allows no inbound traffic.',
          );
        }
      }
      this.vpc = vpc;
      this.jobSubnets = { subnetType: this.jobsNeedPublicIp ? ec2.SubnetType.PUBLIC : ec2.SubnetType.PRIVATE_WITH_EGRESS };
    }
    if (props.gatewayEndpoints ?? true) {
      this.vpc.addGatewayEndpoint('S3Endpoint', { service: ec2.GatewayVpcEndpointAwsService.S3 });
      this.vpc.addGatewayEndpoint('DynamoDbEndpoint', { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB });
    }
    this.jobSecurityGroup = new ec2.SecurityGroup(this, 'JobSecurityGroup', {
      vpc: this.vpc,
      description: 'batch-fanout jobs: outbound only (S3, DynamoDB, SES, SNS, the data source)',
      allowAllOutbound: true,
    });
  }
}
