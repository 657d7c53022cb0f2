import net from 'node:net';
import uWS from 'uWebSockets.js';
import { MonitorServerError } from './monitor-server-error.ts';

/** `ListenOptions.LIBUS_LISTEN_EXCLUSIVE_PORT`: declared as an enum in the typings, absent from the module's runtime exports by that name. */
const exclusivePort = 1;

export interface Listening {
  port: number;
  close(): Promise<void>;
}

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
  if (socket === false) {
    const why = await whyNot(host, port);
    throw new MonitorServerError(why.problem, why.advice);
  }
  return {
    // The listen socket is a socket for this call; the typings only name the general one.
    port: uWS.us_socket_local_port(socket as unknown as uWS.us_socket),
    async close() {
      uWS.us_listen_socket_close(socket);
      // A response written in the uWS callback that led here (the 202 of the abort that ended
      // the run) stays corked until that callback returns, and a close before then drops it.
      // One turn of the event loop lets uWS flush it; what reached the kernel is still sent
      // after the close. (This was a fixed 200 ms wait.)
      await new Promise((resolve) => setImmediate(resolve));
      // `close()` (drop every open connection, keep-alive ones too) exists in this build but not in its typings.
      const closable = app as unknown as { close?: () => void };
      closable.close?.();
    },
  };
}

async function whyNot(host: string, port: number): Promise<{ problem: string; advice: string }> {
  const code = await new Promise<string | null>((resolve) => {
    const probe = net.createServer();
    probe.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'unknown'));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(null)));
  });
  if (code === 'EACCES') return { problem: `port ${port} on ${host} needs privileges`, advice: 'set DUO_AGENT_MONITOR_PORT or monitor.port above 1023 (0 picks a free port)' };
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return { problem: `cannot listen on ${host}`, advice: 'no such local address; set monitor.host (default 127.0.0.1)' };
  }
  return { problem: `port ${port} on ${host} is in use`, advice: 'set DUO_AGENT_MONITOR_PORT or monitor.port (0 picks a free port)' };
}
