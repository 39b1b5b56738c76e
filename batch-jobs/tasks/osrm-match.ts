/**
 * The `osrm-match` task: map-matches one trip (a work item grouped by trip id) with OSRM's
 * `/match/v1/{profile}/{coordinates}` service. Stub; filled in shortly.
 */
import type { OsrmMatchTaskConfig } from '../../runtime/config/schema';
import type { Env } from '../../runtime/env';
import { PermanentError } from '../../runtime/errors';
import type { Task, TaskOutputShape } from './task';

/** The part of runtime/http/client.ts's HttpClient this task uses. */
export interface HttpClient {
  request(req: {
    method: string;
    url: string;
    headers?: Record<string, string>;
    body?: string | Uint8Array;
    timeoutMs: number;
    signal?: AbortSignal;
  }): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string | Uint8Array }>;
}

export function describeOsrmMatchOutput(config: OsrmMatchTaskConfig): TaskOutputShape {
  void config;
  return {
    rowColumns: [
      { name: 'Matched longitude', type: 'number' },
      { name: 'Matched latitude', type: 'number' },
      { name: 'Match distance (m)', type: 'number' },
      { name: 'Matching index', type: 'integer' },
      { name: 'Dropped because', type: 'text' },
    ],
    itemSheet: {
      name: 'Trips',
      columns: [
        { name: 'Trip id', type: 'text' },
        { name: 'Points', type: 'integer' },
        { name: 'Points matched', type: 'integer' },
        { name: 'Matched distance (m)', type: 'number' },
        { name: 'Duration (s)', type: 'number' },
        { name: 'Mean confidence', type: 'number' },
      ],
    },
  };
}

export function createOsrmMatchTask(config: OsrmMatchTaskConfig, deps: { client: HttpClient; env: Env }): Task {
  void deps;
  return {
    output: describeOsrmMatchOutput(config),
    async run() {
      throw new PermanentError('osrm-match: not implemented yet');
    },
  };
}
