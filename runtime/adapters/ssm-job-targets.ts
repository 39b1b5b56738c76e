/**
 * Where a pipeline's jobs go: its job queue and the job definition of each stage, read from the
 * SSM parameter `<prefix><pipeline>` that the CDK app writes (lib/pipeline-jobs.ts), once per
 * pipeline and process. The handlers' environment holds only the prefix, so a deployment's number
 * of pipelines is not bound by Lambda's 4 KB environment.
 */
import { GetParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { EnvironmentError } from '../errors';
import { failedCallMessage } from './sdk-errors';

/** A pipeline's job queue ARN and its job definition ARN per stage. */
export interface PipelineJobTargets {
  queue: string;
  definitions: Record<string, string>;
}

export interface JobTargets {
  forPipeline(pipeline: string): Promise<PipelineJobTargets>;
}

/** Fixed targets (tests, and callers that know them already). */
export function staticJobTargets(targets: Record<string, PipelineJobTargets>): JobTargets {
  return {
    forPipeline: async (pipeline) => {
      const t = targets[pipeline];
      if (!t) throw new EnvironmentError(`no job targets for pipeline "${pipeline}" (known: ${Object.keys(targets).join(', ') || 'none'})`);
      return t;
    },
  };
}

/** Checks a parameter value's shape; the error names the parameter. */
export function parseJobTargets(value: string, where: string): PipelineJobTargets {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    throw new EnvironmentError(
      `${where} is not JSON (${err instanceof Error ? err.message : String(err)}): expected {"queue": ARN, "definitions": {stage: ARN}}`,
    );
  }
  const t = parsed as Partial<PipelineJobTargets> | null;
  const definitions = t?.definitions;
  if (
    typeof t?.queue !== 'string' ||
    typeof definitions !== 'object' ||
    definitions === null ||
    Object.values(definitions).some((v) => typeof v !== 'string')
  ) {
    throw new EnvironmentError(`${where} must be {"queue": ARN, "definitions": {stage: ARN}}, got ${value.slice(0, 200)}`);
  }
  return { queue: t.queue, definitions: definitions as Record<string, string> };
}

export class SsmJobTargets implements JobTargets {
  private readonly cache = new Map<string, Promise<PipelineJobTargets>>();

  constructor(
    private readonly client: SSMClient,
    /** Parameter name prefix, e.g. `/batch-fanout-compute/job-targets/` (FANOUT_JOB_TARGETS_PREFIX). */
    private readonly prefix: string,
  ) {}

  forPipeline(pipeline: string): Promise<PipelineJobTargets> {
    let p = this.cache.get(pipeline);
    if (!p) {
      p = this.read(pipeline);
      this.cache.set(pipeline, p);
      // A failed read is not kept: the next event tries again.
      p.catch(() => this.cache.delete(pipeline));
    }
    return p;
  }

  private async read(pipeline: string): Promise<PipelineJobTargets> {
    const name = `${this.prefix}${pipeline}`;
    let value: string | undefined;
    try {
      const res = await this.client.send(new GetParameterCommand({ Name: name }));
      value = res.Parameter?.Value;
    } catch (err) {
      if (err instanceof Error && err.name === 'ParameterNotFound') {
        throw new EnvironmentError(
          `no SSM parameter ${name}: pipeline "${pipeline}" is not deployed (FANOUT_JOB_TARGETS_PREFIX ${this.prefix})`,
        );
      }
      throw new Error(failedCallMessage(`SSM GetParameter ${name}`, err), { cause: err });
    }
    if (value === undefined) throw new EnvironmentError(`SSM parameter ${name} has no value`);
    return parseJobTargets(value, `SSM parameter ${name}`);
  }
}
