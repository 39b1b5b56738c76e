/**
 * The jobs of the `files` pipelines (docs/files.md). A files run rides on the items chain's four
 * job definitions, as batch-jobs/stages/files-shape.ts says: the split definition runs `list`, the
 * fan-out runs the pipeline's per-file task, the consolidate definition runs `summary`, then
 * cleanup. So each files pipeline gets a PipelineJobs of its own (the handlers submit its stages
 * by pipeline name, as for items), sharing the split, consolidate and cleanup roles, whose grants
 * already cover list (read the upload, write `work/`) and summary (read `work/`, write the
 * workbook under `results/`, send mail).
 *
 * What differs is the fan-out: a per-file task reads files outside `work/` (a manifest lists keys
 * of `intake/<pipeline>/`, an SFTP pull's files lie in `intake/<pipeline>/<source>/`) and writes
 * its outputs to `results/<pipeline>/<run>/`. Those grants go to a fan-out role of the files
 * pipelines alone, one prefix per pipeline, so the items fan-out keeps no access to intake/ or
 * results/.
 */
import type * as batch from 'aws-cdk-lib/aws-batch';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import type { JobSettings } from '../config/deployment';
import type { FilesPipelineConfig } from '../runtime/config/schema';
import type { JobDefinitionEnvironments } from '../runtime/env';
import type { Stage } from '../runtime/model';
import { acknowledgeGrantWildcards, type WildcardReason } from './acknowledge';
import { PipelineJobs } from './pipeline-jobs';
import type { ComputeKind } from './retry-strategies';

export interface FilesJobsProps {
  /** The files pipelines (at least one). */
  readonly pipelines: readonly FilesPipelineConfig[];
  /** The job queue of each compute kind. */
  readonly queues: Readonly<Record<ComputeKind, batch.IJobQueue>>;
  /** Max vCPUs of each compute kind's queue (FANOUT_MAX_CHILDREN, see PipelineJobsProps). */
  readonly queueMaxVcpus: Readonly<Record<ComputeKind, number>>;
  readonly image: ecs.ContainerImage;
  /** Size, timeout and attempts per stage (the same settings as the items pipelines'). */
  readonly jobs: Readonly<Record<Stage, JobSettings>>;
  /** The stack's job role per stage: split, consolidate and cleanup are shared; fanout is replaced by this construct's. */
  readonly jobRoles: Readonly<Record<Stage, iam.IRole>>;
  /** The stack's log group per stage (streams are prefixed with the pipeline name). */
  readonly logGroups: Readonly<Record<Stage, logs.ILogGroup>>;
  readonly environment: Readonly<JobDefinitionEnvironments>;
  readonly bucket: s3.IBucket;
  readonly table: dynamodb.ITable;
  /** Key prefixes of the bucket: intake/, work/, results/. */
  readonly prefixes: { readonly intake: string; readonly work: string; readonly results: string };
  /** Fargate tasks get a public IP (no NAT). @default false */
  readonly assignPublicIp?: boolean;
  /** Name prefix of each pipeline's job-targets SSM parameter (PipelineJobsProps.targetsParameterPrefix). */
  readonly targetsParameterPrefix: string;
  /** Execution role of the definitions (image pull, logs), shared with the items pipelines. */
  readonly executionRole: iam.IRole;
  /** Why the stack's grant wildcards are acceptable (the stack's own rules). */
  readonly explainWildcard: WildcardReason;
}

export class FilesJobs extends Construct {
  /** The fan-out role of the files pipelines: their per-file tasks' reads and writes. */
  readonly fanoutRole: iam.Role;
  /** One PipelineJobs per files pipeline: split (list), fanout, consolidate (summary), cleanup. */
  readonly pipelineJobs: readonly PipelineJobs[];

  constructor(scope: Construct, id: string, props: FilesJobsProps) {
    super(scope, id);
    if (props.pipelines.length === 0) throw new Error('FilesJobs: give at least one files pipeline');
    const { bucket, prefixes } = props;

    this.fanoutRole = new iam.Role(this, 'FanoutJobRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'batch-fanout fanout jobs of the files pipelines (per-file tasks)',
    });
    // As every fan-out: its chunk and earlier result parts, new result parts, its chunk's progress.
    bucket.grantRead(this.fanoutRole, `${prefixes.work}*`);
    bucket.grantPut(this.fanoutRole, `${prefixes.work}*`);
    props.table.grantReadWriteData(this.fanoutRole);
    for (const pipeline of props.pipelines) {
      // The files of a manifest or an SFTP pull (a zip's entries are extracted under work/), and the outputs.
      bucket.grantRead(this.fanoutRole, `${prefixes.intake}${pipeline.name}/*`);
      bucket.grantPut(this.fanoutRole, `${prefixes.results}${pipeline.name}/*`);
    }
    acknowledgeGrantWildcards(this.fanoutRole, (w) => explainFilesWildcard(w, props));

    const jobRoles = { ...props.jobRoles, fanout: this.fanoutRole };
    this.pipelineJobs = props.pipelines.map(
      (pipeline) =>
        new PipelineJobs(this, `Pipeline-${pipeline.name}`, {
          pipeline,
          queue: props.queues[pipeline.compute],
          queueMaxVcpus: props.queueMaxVcpus[pipeline.compute],
          image: props.image,
          jobs: props.jobs,
          jobRoles,
          logGroups: props.logGroups,
          environment: props.environment,
          assignPublicIp: props.assignPublicIp,
          targetsParameterPrefix: props.targetsParameterPrefix,
          executionRole: props.executionRole,
        }),
    );
  }
}

/** The stack's reasons, and the per-pipeline prefixes of the files fan-out. */
function explainFilesWildcard(w: Parameters<WildcardReason>[0], props: FilesJobsProps): string | undefined {
  const resource = /^Resource::.*PipelineBucket[^/]*\/(.+)\/\*$/.exec(w.finding)?.[1];
  const names = new Set(props.pipelines.map((p) => p.name));
  const [top, name, ...rest] = resource?.split('/') ?? [];
  if (rest.length === 0 && name !== undefined && names.has(name)) {
    if (`${top}/` === props.prefixes.intake) {
      return `Files of the ${name} files pipeline's batches (manifest keys, SFTP-pulled files) under intake/${name}/: named by the uploader or the partner.`;
    }
    if (`${top}/` === props.prefixes.results) {
      return `Outputs of the ${name} files pipeline's per-file task, results/${name}/<run>/<path of the file in its batch>: known only at run time.`;
    }
  }
  return props.explainWildcard(w);
}
