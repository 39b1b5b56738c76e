/**
 * Loads the managed OSRM server construct (lib/osrm-service.ts, issue 4) only when a deployment
 * enables it, so the app builds in checkouts that do not have it yet.
 */
import type { Construct } from 'constructs';
import type { OsrmServiceFactory, OsrmServiceLike, OsrmServicePropsLike } from './compute-stack';

type OsrmServiceClass = new (scope: Construct, id: string, props: OsrmServicePropsLike) => OsrmServiceLike;

/** The factory over `OsrmService`, or an error saying the module is missing. */
export async function loadOsrmFactory(): Promise<OsrmServiceFactory> {
  const specifier = './osrm-service';
  let mod: { OsrmService?: OsrmServiceClass };
  try {
    mod = (await import(specifier)) as { OsrmService?: OsrmServiceClass };
  } catch (err) {
    throw new Error(`osrm.enabled: cannot load lib/osrm-service.ts (${err instanceof Error ? err.message : String(err)})`);
  }
  const OsrmService = mod.OsrmService;
  if (typeof OsrmService !== 'function') throw new Error('osrm.enabled: lib/osrm-service.ts does not export class OsrmService');
  return (scope, id, props) => new OsrmService(scope, id, props);
}
