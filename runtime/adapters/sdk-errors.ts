/** What the adapters read from an AWS SDK v3 error, and how they word a failed call. */
import { errorMessage } from '../errors';

interface SdkError {
  name?: string;
  $metadata?: { httpStatusCode?: number };
}

export function sdkErrorName(err: unknown): string | undefined {
  return (err as SdkError | undefined)?.name;
}

export function httpStatus(err: unknown): number | undefined {
  return (err as SdkError | undefined)?.$metadata?.httpStatusCode;
}

/**
 * `<what> failed (<ErrorName>[, HTTP <status>]): <message>`, the error name left out when it says
 * nothing (plain `Error`), the HTTP status only when `withStatus` is set.
 */
export function failedCallMessage(what: string, err: unknown, withStatus = false): string {
  const name = sdkErrorName(err);
  const status = withStatus ? httpStatus(err) : undefined;
  const detail = [name && name !== 'Error' ? name : undefined, status ? `HTTP ${status}` : undefined].filter(Boolean).join(', ');
  return `${what} failed${detail ? ` (${detail})` : ''}: ${errorMessage(err)}`;
}
