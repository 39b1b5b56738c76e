/**
 * An operating command that cannot do what was asked, with the exit code `fanout run` would use:
 * 2 for a usage problem (no such run, no such stack, missing credentials), 1 for a failure.
 */
export class OpsError extends Error {
  override readonly name = 'OpsError';
  constructor(
    message: string,
    readonly exitCode: 1 | 2,
  ) {
    super(message);
  }
}
