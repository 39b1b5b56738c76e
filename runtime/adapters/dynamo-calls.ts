/**
 * How the DynamoDB adapters make a call: any failure becomes a StorageError (exit code TABLE)
 * naming the operation, the table and the subject; a conditional write says whether its
 * condition held instead of throwing.
 */
import { ExitCode, StorageError } from '../errors';
import { failedCallMessage, sdkErrorName } from './sdk-errors';

export class DynamoCalls {
  constructor(private readonly tableName: string) {}

  /** The answer of `send`; any failure becomes a StorageError naming the operation and subject. */
  async call<T>(operation: string, subject: string, send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (err) {
      throw this.failure(operation, subject, err);
    }
  }

  /** Whether the condition of `send`'s write held; any other failure becomes a StorageError. */
  async conditional(operation: string, subject: string, send: () => Promise<unknown>): Promise<boolean> {
    try {
      await send();
      return true;
    } catch (err) {
      if (sdkErrorName(err) === 'ConditionalCheckFailedException') return false;
      throw this.failure(operation, subject, err);
    }
  }

  failure(operation: string, subject: string, err: unknown): StorageError {
    return new StorageError(failedCallMessage(`DynamoDB ${operation} on table ${this.tableName} (${subject})`, err), ExitCode.TABLE, {
      cause: err,
    });
  }
}
