/**
 * What the example data sources share: a JSON answer, answers delayed by a simulated latency that
 * `close` cancels, and listening on loopback with every open connection dropped at `close`.
 */
import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export interface LoopbackServer {
  /** Runs `fn` after `ms`, unless the server is closed first. */
  later(ms: number, fn: () => void): void;
  /** Listens on 127.0.0.1 (port 0: any free one); answers the base URL and how to stop. */
  listen(port?: number): Promise<{ url: string; close(): Promise<void> }>;
}

export function loopbackServer(server: Server): LoopbackServer {
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  return {
    later(ms, fn) {
      const timer = setTimeout(() => {
        timers.delete(timer);
        fn();
      }, ms);
      timers.add(timer);
    },
    async listen(port = 0) {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
      const { port: bound } = server.address() as AddressInfo;
      return {
        url: `http://127.0.0.1:${bound}`,
        close: () =>
          new Promise<void>((resolve) => {
            for (const t of timers) clearTimeout(t);
            timers.clear();
            server.close(() => resolve());
            for (const s of sockets) s.destroy();
          }),
      };
    },
  };
}
