/**
 * One SFTP connection to a partner's server (ssh2), with the server's host key pinned: a server
 * that presents another key is refused before authentication, and the error names both
 * fingerprints. Lists a folder, streams a file, deletes or moves it.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Client, type SFTPWrapper } from 'ssh2';
import { errorMessage } from '../../runtime/errors';

/** Why a connection was refused; a retry cannot help (the config or the partner must change). */
export class SftpConfigError extends Error {
  override readonly name = 'SftpConfigError';
}

/** The connection failed or dropped; a later pull may succeed. */
export class SftpConnectionError extends Error {
  override readonly name = 'SftpConnectionError';
}

export interface SftpConnectOptions {
  host: string;
  port: number;
  user: string;
  /** OpenSSH or PEM private key text. */
  privateKey: string;
  /** `SHA256:<base64>` as `ssh-keygen -lf` prints it. */
  hostKeySha256: string;
  timeoutMs: number;
  /** For messages: the source's name. */
  label: string;
}

export interface RemoteFile {
  /** Name inside the folder. */
  name: string;
  /** Full remote path. */
  path: string;
  size: number;
  /** Modification time, epoch seconds. */
  mtime: number;
}

/** `SHA256:` and the unpadded base64 of the key blob's SHA-256, as OpenSSH prints it. */
export function sha256Fingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

const join = (folder: string, name: string) => `${folder.replace(/\/+$/, '')}/${name}`;

export class SftpSession {
  private constructor(
    private readonly conn: Client,
    private readonly sftp: SFTPWrapper,
    private readonly label: string,
  ) {}

  static async connect(o: SftpConnectOptions): Promise<SftpSession> {
    const pinned = o.hostKeySha256.replace(/=+$/, '');
    const conn = new Client();
    let presented: string | undefined;
    const where = `${o.label} (${o.user}@${o.host}:${o.port})`;
    let settled = false;
    await new Promise<void>((resolve, reject) => {
      conn.once('ready', () => {
        settled = true;
        resolve();
      });
      // Kept for the connection's life: a reset after a refusal, or a drop mid-transfer, must not
      // surface as an uncaught error (a transfer in progress fails through its own stream).
      conn.on('error', (err: Error & { level?: string }) => {
        if (settled) return;
        settled = true;
        conn.end();
        if (presented !== undefined && presented !== pinned) {
          reject(
            new SftpConfigError(
              `host key mismatch for ${where}: the server presented ${presented}, but the source pins ${pinned}. ` +
                'Refusing to connect. If the partner changed its key, confirm the new fingerprint with them out of band and update hostKeySha256.',
            ),
          );
        } else if (err.level === 'client-authentication') {
          reject(
            new SftpConfigError(
              `the server ${where} refused the private key for user "${o.user}". Check that the key's public half is in the partner's authorized keys for that user.`,
            ),
          );
        } else {
          reject(new SftpConnectionError(`cannot connect to ${where}: ${err.message}`));
        }
      });
      try {
        conn.connect({
          host: o.host,
          port: o.port,
          username: o.user,
          privateKey: o.privateKey,
          readyTimeout: o.timeoutMs,
          keepaliveInterval: Math.min(10_000, o.timeoutMs),
          keepaliveCountMax: 3,
          tryKeyboard: false,
          hostVerifier: (key: Buffer) => {
            presented = sha256Fingerprint(key);
            return presented === pinned;
          },
        });
      } catch (err) {
        // A key ssh2 cannot parse is thrown synchronously.
        reject(new SftpConfigError(`the private key for ${where} cannot be read: ${errorMessage(err)}`));
      }
    });
    const sftp = await new Promise<SFTPWrapper>((resolve, reject) =>
      conn.sftp((err, s) => (err ? reject(new SftpConnectionError(`${where} has no SFTP subsystem: ${err.message}`)) : resolve(s))),
    );
    return new SftpSession(conn, sftp, where);
  }

  /** The regular files of a folder (subfolders and links are not followed). */
  list(folder: string): Promise<RemoteFile[]> {
    return new Promise((resolve, reject) =>
      this.sftp.readdir(folder, (err, entries) => {
        if (err) return reject(new SftpConnectionError(`cannot list ${folder} on ${this.label}: ${err.message}`));
        resolve(
          entries
            .filter((e) => (e.attrs.mode & 0o170000) === 0o100000)
            .map((e) => ({ name: e.filename, path: join(folder, e.filename), size: e.attrs.size, mtime: e.attrs.mtime })),
        );
      }),
    );
  }

  /** A file's bytes, streamed (64 KiB reads, several in flight are not needed for bounded memory). */
  read(path: string): Readable {
    return this.sftp.createReadStream(path, { highWaterMark: 256 * 1024 });
  }

  remove(path: string): Promise<void> {
    return new Promise((resolve, reject) =>
      this.sftp.unlink(path, (err) =>
        err ? reject(new SftpConnectionError(`cannot delete ${path} on ${this.label}: ${err.message}`)) : resolve(),
      ),
    );
  }

  /** Moves a file into `folder` under its own name; refuses to overwrite (the server's rename does). */
  move(path: string, folder: string): Promise<string> {
    const name = path.split('/').pop()!;
    const to = join(folder, name);
    return new Promise((resolve, reject) =>
      this.sftp.rename(path, to, (err) =>
        err ? reject(new SftpConnectionError(`cannot move ${path} to ${to} on ${this.label}: ${err.message}`)) : resolve(to),
      ),
    );
  }

  close(): void {
    this.conn.end();
  }
}
