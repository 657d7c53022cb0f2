import net from 'node:net';
import uWS from 'uWebSockets.js';
import { MonitorServerError } from './monitor-server-error.ts';

/** `ListenOptions.LIBUS_LISTEN_EXCLUSIVE_PORT`: declared as an enum in the typings, absent from the module's runtime exports by that name. */
const exclusivePort = 1;

export interface Listening {
  port: number;
  close(): Promise<void>;
}

/** How long open connections get to flush what was written before a close drops them. */
const drainMs = 200;

/** Binds the app; uWS only says `false` on failure, so a node:net probe tells why. */
export async function listen(app: uWS.TemplatedApp, host: string, port: number): Promise<Listening> {
  // Exclusive: by default uWS sets SO_REUSEPORT, and a second run on the same port would silently
  // share it (requests answered by either run). The host+options overload exists at runtime only.
  const exclusive = app as unknown as {
    listen(host: string, port: number, options: number, cb: (socket: uWS.us_listen_socket | false) => void): unknown;
  };
  const socket = await new Promise<uWS.us_listen_socket | false>((resolve) =>
    exclusive.listen(host, port, exclusivePort, resolve),
  );
  if (socket === false) throw new MonitorServerError(await whyNot(host, port));
  return {
    // The listen socket is a socket for this call; the typings only name the general one.
    port: uWS.us_socket_local_port(socket as unknown as uWS.us_socket),
    async close() {
      uWS.us_listen_socket_close(socket);
      // Responses already written (e.g. the 202 of the abort that ended the run) reach their
      // clients before every connection is dropped.
      await new Promise((resolve) => setTimeout(resolve, drainMs));
      // `close()` (drop every open connection, keep-alive ones too) exists in this build but not in its typings.
      const closable = app as unknown as { close?: () => void };
      closable.close?.();
    },
  };
}

async function whyNot(host: string, port: number): Promise<string> {
  const code = await new Promise<string | null>((resolve) => {
    const probe = net.createServer();
    probe.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'unknown'));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(null)));
  });
  if (code === 'EACCES') return `port ${port} on ${host} needs privileges: set DUO_AGENT_MONITOR_PORT or monitor.port above 1023 (0 picks a free port)`;
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return `cannot listen on ${host}: no such local address; set monitor.host (default 127.0.0.1)`;
  }
  return `port ${port} on ${host} is in use: set DUO_AGENT_MONITOR_PORT or monitor.port (0 picks a free port)`;
}
