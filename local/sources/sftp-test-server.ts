/**
 * A real OpenSSH SFTP server for tests and local tries: Debian's `sshd` started unprivileged on
 * a random loopback port with its own config (`-f`, `-D -e`), a generated host key and user key
 * (`ssh-keygen`), and `internal-sftp` serving a temporary folder. A TCP relay in front of it lets
 * a test drop every connection at a moment it chooses.
 *
 * The login user is the user running the tests (root in CI): sshd can only authenticate the
 * user it runs as when it runs unprivileged. StrictModes is off because the key files live in a
 * temporary folder, not in a home directory with sshd's ownership rules.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const SSHD = process.env.FANOUT_SSHD ?? '/usr/sbin/sshd';

export interface SftpTestServer {
  host: string;
  /** Port of the relay (what clients use). */
  port: number;
  user: string;
  /** The folder served; a client sees it under the same absolute path. */
  root: string;
  /** The user's private key (OpenSSH format). */
  privateKey: string;
  /** A well-formed private key the server does not authorize (a wrong user key). */
  unauthorizedKey: string;
  /** `SHA256:...` of the server's host key, as `ssh-keygen -lf` prints it. */
  hostKeySha256: string;
  /** Destroys every open connection through the relay (a dropped connection). */
  dropConnections(): void;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function keygen(file: string): Promise<void> {
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'fanout-test', '-f', file]);
}

/** Resolves once the server sends its SSH banner. */
function waitForBanner(port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    let tries = 0;
    const attempt = () => {
      if (child.exitCode !== null) return reject(new Error(`sshd exited with code ${child.exitCode}: ${stderr()}`));
      const s = connect(port, '127.0.0.1');
      s.once('data', (d) => {
        s.destroy();
        if (d.toString().startsWith('SSH-')) resolve();
        else reject(new Error(`unexpected banner from sshd: ${d.toString().slice(0, 40)}`));
      });
      s.once('error', () => {
        s.destroy();
        if (++tries > 200) return reject(new Error(`sshd did not listen on ${port}: ${stderr()}`));
        setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

export async function startSftpTestServer(opts: { sshd?: string } = {}): Promise<SftpTestServer> {
  const dir = await mkdtemp(join(tmpdir(), 'fanout-sftp-'));
  const root = join(dir, 'served');
  await mkdir(root);
  const hostKey = join(dir, 'host_ed25519');
  const userKey = join(dir, 'user_ed25519');
  const otherKey = join(dir, 'other_ed25519');
  await Promise.all([keygen(hostKey), keygen(userKey), keygen(otherKey)]);
  await writeFile(join(dir, 'authorized_keys'), await readFile(`${userKey}.pub`), { mode: 0o600 });
  const fingerprint = (await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${hostKey}.pub`])).stdout.split(' ')[1]!;
  // Privilege separation needs this folder when sshd starts as root.
  if (process.getuid?.() === 0) await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  const user = userInfo().username;
  const sshdPort = await freePort();
  const config = [
    `ListenAddress 127.0.0.1`,
    `Port ${sshdPort}`,
    `HostKey ${hostKey}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    'StrictModes no',
    'UsePAM no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'PermitRootLogin prohibit-password',
    `AllowUsers ${user}`,
    'Subsystem sftp internal-sftp',
    `ForceCommand internal-sftp -d ${root}`,
    'AllowTcpForwarding no',
    'X11Forwarding no',
    'LogLevel ERROR',
    'MaxStartups 100',
  ];
  const configFile = join(dir, 'sshd_config');
  await writeFile(configFile, `${config.join('\n')}\n`, { mode: 0o600 });
  const child = spawn(opts.sshd ?? SSHD, ['-D', '-e', '-f', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) => reject(new Error(`cannot start ${opts.sshd ?? SSHD}: ${err.message} (install openssh-server)`)));
  });
  try {
    await spawned;
    await waitForBanner(sshdPort, child, () => stderr);
  } catch (err) {
    child.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  // The relay: every client connection is piped to sshd, and can be cut on demand.
  const sockets = new Set<Socket>();
  const relay: Server = createServer((client) => {
    const upstream = connect(sshdPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  const port = (relay.address() as { port: number }).port;

  return {
    host: '127.0.0.1',
    port,
    user,
    root,
    privateKey: await readFile(userKey, 'utf8'),
    unauthorizedKey: await readFile(otherKey, 'utf8'),
    hostKeySha256: fingerprint,
    dropConnections() {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => relay.close(resolve));
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
